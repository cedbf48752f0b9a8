"""EC2 lifecycle and teardown against the moto server on 127.0.0.1 (no traffic leaves the machine)."""

from __future__ import annotations

import boto3
import pytest

from perfdesk.controllers.target import TargetError
from perfdesk.remote.ec2 import Ec2Lifecycle, LaunchSpec, hourly_price
from perfdesk.remote.teardown import teardown_session

REGION = "us-east-1"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGt2lHhKXgkDQ4b0aEpEXWjyKk6XsKpdO3Z3n2n6b4z4 test@perfdesk"


@pytest.fixture
def aws(moto_endpoint):
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=moto_endpoint)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ssm.put_parameter(Name="/perfdesk-test/ubuntu/ami-id", Value=ami, Type="String", Overwrite=True)
    return ec2, ssm, ami, moto_endpoint


def lifecycle(aws, session: str) -> Ec2Lifecycle:
    ec2, ssm, _, _ = aws
    return Ec2Lifecycle(REGION, session, ec2=ec2, ssm=ssm, caller=lambda: "198.51.100.7", poll_s=0.1)


def left(ec2, session: str) -> dict[str, list]:
    f = [{"Name": "tag:perfdesk:session", "Values": [session]}]
    live = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=f)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {
        "instances": live,
        "addresses": ec2.describe_addresses(Filters=f)["Addresses"],
        "groups": ec2.describe_security_groups(Filters=f)["SecurityGroups"],
        "keys": ec2.describe_key_pairs(Filters=f)["KeyPairs"],
    }


def test_launch_from_ssm_parameter_with_elastic_ip_then_teardown_leaves_nothing(aws):
    ec2, _, ami, endpoint = aws
    lines: list[str] = []
    lc = lifecycle(aws, "s1")
    lc.on_line = lines.append
    inst = lc.launch(
        LaunchSpec(
            name="box",
            instance_type="t2.small",
            ssm_parameter="/perfdesk-test/ubuntu/ami-id",
            public_key=PUBKEY,
            agent_port=8750,
            elastic_ip=True,
        )
    )
    assert inst.ami == ami and inst.instance_type == "t2.small"
    desc = ec2.describe_instances(InstanceIds=[inst.instance_id])["Reservations"][0]["Instances"][0]
    assert desc["State"]["Name"] == "running" and desc["KeyName"] == inst.key_name
    tags = {t["Key"]: t["Value"] for t in desc["Tags"]}
    assert tags["perfdesk:session"] == "s1" and tags["perfdesk:managed"] == "true"
    # the key pair is the user's public key
    kp = ec2.describe_key_pairs(KeyNames=[inst.key_name])["KeyPairs"][0]
    assert {t["Key"] for t in kp.get("Tags", [])} >= {"perfdesk:session"}
    # SSH and the agent port, from the caller's /32 only
    sg = ec2.describe_security_groups(GroupIds=[inst.security_group_id])["SecurityGroups"][0]
    rules = {(p["FromPort"], r["CidrIp"]) for p in sg["IpPermissions"] for r in p["IpRanges"]}
    assert rules == {(22, "198.51.100.7/32"), (8750, "198.51.100.7/32")}
    # the elastic IP is attached and tagged
    addr = ec2.describe_addresses(AllocationIds=[inst.allocation_id])["Addresses"][0]
    assert addr["InstanceId"] == inst.instance_id and inst.public_ip == addr["PublicIp"]
    assert any("admits tcp 22, 8750 from 198.51.100.7/32 only" in line for line in lines)

    removed = teardown_session("s1", REGION, endpoint, poll_s=0.1)
    kinds = sorted(r.split()[0] for r in removed)
    assert kinds == ["elastic", "instance", "key", "security"], removed
    assert left(ec2, "s1") == {"instances": [], "addresses": [], "groups": [], "keys": []}
    assert teardown_session("s1", REGION, endpoint, poll_s=0.1) == []  # idempotent


def test_teardown_of_one_session_spares_the_others(aws):
    ec2, _, ami, endpoint = aws
    a = lifecycle(aws, "keep").launch(LaunchSpec(name="a", ami=ami, public_key=PUBKEY))
    lifecycle(aws, "drop").launch(LaunchSpec(name="b", ami=ami, public_key=PUBKEY))
    removed = teardown_session("drop", REGION, endpoint, poll_s=0.1)
    assert len(removed) == 3 and all("(session drop)" in r for r in removed)
    assert left(ec2, "keep")["instances"] == [a.instance_id]
    teardown_session("keep", REGION, endpoint, poll_s=0.1)


def test_failed_launch_removes_what_it_made(aws):
    ec2, _, _, _ = aws
    with pytest.raises(TargetError, match="find the AMI.*check ssm_parameter"):
        lifecycle(aws, "bad").launch(LaunchSpec(name="x", ssm_parameter="/no/such/param", public_key=PUBKEY))
    with pytest.raises(TargetError, match="launch t3.medium"):
        lifecycle(aws, "bad").launch(
            LaunchSpec(name="x", ami="ami-00000000", public_key=PUBKEY, subnet_id="subnet-nope")
        )
    assert left(ec2, "bad") == {"instances": [], "addresses": [], "groups": [], "keys": []}


def test_cli_teardown(aws, capsys, monkeypatch, tmp_path):
    from perfdesk.cli import main

    ec2, _, ami, endpoint = aws
    lifecycle(aws, "cli").launch(LaunchSpec(name="c", ami=ami, public_key=PUBKEY))
    assert main(["teardown", "--region", REGION]) == 2  # no session and no --all
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # AWS's own variable, as a LocalStack user sets it
    monkeypatch.chdir(tmp_path)  # no ./sessions folder here: every kind searches by the session's tags
    argv = ["teardown", "cli", "--region", REGION]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "removed instance" in out and "removed security group" in out and "removed key pair" in out
    assert main(argv) == 0 and "nothing to remove" in capsys.readouterr().out


def test_price_table():
    price, as_of = hourly_price("us-east-1", "t2.small")
    assert price == pytest.approx(0.023) and as_of
    assert hourly_price("us-east-1", "x9.huge")[0] is None


@pytest.mark.slow
def test_ec2_target_launches_provisions_serves_and_leaves_nothing(aws, sshd, tmp_path):
    """The ec2 kind end to end: launched on the moto server, "reached" at the local sshd (the address function is
    the one injected seam), provisioned, served, torn down: instance, security group and key pair gone."""
    import sys

    from perfdesk.controllers.results import OK
    from perfdesk.controllers.target import TargetContext
    from perfdesk.controllers.workload import WorkloadSpec, build_payloads
    from perfdesk.remote.ec2_target import Ec2Spec, Ec2Target

    ec2, ssm, ami, endpoint = aws
    pub = tmp_path / "id.pub"
    pub.write_text(PUBKEY + "\n")
    spec = Ec2Spec(
        name="cloud",
        kind="ec2",
        region=REGION,
        instance_type="t2.small",
        ami=ami,
        public_key=str(pub),
        identity_file=sshd.identity_file,
        user=sshd.user,
        use_ssh_agent=False,
        ssh_config="",
        venv=sys.executable,
        remote_dir=str(tmp_path / "host"),
        endpoint_url=endpoint,
        elastic_ip=True,
    )
    ctx = TargetContext(session_id="e2e", emit=lambda e: None, work_dir=str(tmp_path))
    target = Ec2Target(spec, ctx, lifecycle=lifecycle(aws, "e2e"), address=lambda inst: (sshd.host, sshd.port))
    wl = WorkloadSpec(
        name="m", model="mobilenet_v2", images="synthetic", synthetic_size=(96, 96), image_count=1, threads=1
    )
    try:
        target.deploy(wl)
        assert target.send(build_payloads(wl)[0]).status == OK
        info = target.describe()
        assert info["instance_id"].startswith("i-") and info["hourly_usd"] == pytest.approx(0.023)
        assert info["launch_to_first_answer_s"] > 0 and info["elastic_ip"] is True
        assert (tmp_path / "known_hosts").read_text().strip()  # TOFU into the session's own known_hosts
    finally:
        target.teardown()
    assert left(ec2, "e2e") == {"instances": [], "addresses": [], "groups": [], "keys": []}
    assert target.describe()["instance_id"]  # still in the manifest after teardown
