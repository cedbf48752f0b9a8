"""``perfdesk teardown``: find every EC2 resource a session created, by its tags, and remove it.

Runs after a failed or interrupted session too: it needs nothing but the session id (or none: every resource
tagged ``perfdesk:managed``) and the region. Order matters: instances first (a security group in use cannot be
deleted), then elastic IPs, security groups and key pairs.
"""

from __future__ import annotations

from collections.abc import Callable

from perfdesk.remote.ec2 import TAG_SESSION, Ec2Lifecycle, clients, session_filters


def teardown_session(
    session_id: str | None,
    region: str,
    endpoint_url: str | None = None,
    *,
    ec2=None,
    poll_s: float = 5.0,
    on_line: Callable[[str], None] | None = None,
) -> list[str]:
    """Remove what perfdesk created in ``region`` (for one session, or all with ``None``); return what was removed.

    Each entry reads like ``instance i-0abc (session 2025-01-01T12-00-00)``. Errors on one resource do not stop the
    others; they are reported through ``on_line`` and the exception raised at the end names them.
    """
    if ec2 is None:
        ec2, _ = clients(region, endpoint_url)
    say = on_line or (lambda line: None)
    filters = session_filters(session_id)
    removed: list[str] = []
    problems: list[str] = []

    def sess(tags: list[dict] | None) -> str:
        for t in tags or []:
            if t["Key"] == TAG_SESSION:
                return f" (session {t['Value']})"
        return ""

    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    instances = [
        i
        for r in ec2.describe_instances(Filters=filters + [{"Name": "instance-state-name", "Values": live}])[
            "Reservations"
        ]
        for i in r["Instances"]
    ]
    if instances:
        ids = [i["InstanceId"] for i in instances]
        say(f"terminating {', '.join(ids)}")
        try:
            Ec2Lifecycle(region, session_id or "-", ec2=ec2, ssm=object(), poll_s=poll_s).terminate_instances(ids)
            removed += [f"instance {i['InstanceId']}{sess(i.get('Tags'))}" for i in instances]
        except Exception as exc:  # noqa: BLE001
            problems.append(f"instances {ids}: {exc}")

    for addr in ec2.describe_addresses(Filters=filters)["Addresses"]:
        try:
            if addr.get("AssociationId"):
                ec2.disassociate_address(AssociationId=addr["AssociationId"])
            ec2.release_address(AllocationId=addr["AllocationId"])
            removed.append(f"elastic IP {addr.get('PublicIp')} {addr['AllocationId']}{sess(addr.get('Tags'))}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"elastic IP {addr['AllocationId']}: {exc}")

    for sg in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]:
        try:
            ec2.delete_security_group(GroupId=sg["GroupId"])
            removed.append(f"security group {sg['GroupId']} {sg['GroupName']}{sess(sg.get('Tags'))}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"security group {sg['GroupId']}: {exc}")

    for kp in ec2.describe_key_pairs(Filters=filters)["KeyPairs"]:
        try:
            ec2.delete_key_pair(KeyName=kp["KeyName"])
            removed.append(f"key pair {kp['KeyName']}{sess(kp.get('Tags'))}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"key pair {kp['KeyName']}: {exc}")

    for line in removed:
        say("removed " + line)
    if problems:
        raise RuntimeError(
            "teardown left resources behind: "
            + "; ".join(problems)
            + " (run `perfdesk teardown` again, or remove them in the EC2 console)"
        )
    return removed
