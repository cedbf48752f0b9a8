"""Container-image functions against real peers: buildah builds, Debian's docker-registry on loopback holds the
images, the moto server is ECR's control plane, perfdesk's emulator pulls and runs them; boto3 and the AWS CLI as
clients."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from perfdesk.lambda_pkg import images
from perfdesk.lambda_pkg.emulator import images as emu_images

from .conftest import ROLE, lambda_client

HANDLERS = Path(__file__).parent / "handlers"


# -- unpacking layers ---------------------------------------------------------------------------------------------
def _layer(entries: list[tuple]) -> io.BytesIO:
    """A tar layer from (kind, name, data-or-target) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "file":
                info.size, info.mode = len(data), 0o4755 if name.endswith("suid") else 0o644
                tar.addfile(info, io.BytesIO(data))
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, data
                tar.addfile(info)
    buf.seek(0)
    return buf


def test_layers_apply_in_order_with_whiteouts_and_links_stay_inside(tmp_path):
    root, outside = tmp_path / "rootfs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    lower = _layer(
        [
            ("dir", "etc", None),
            ("file", "etc/keep", b"lower"),
            ("file", "etc/gone", b"lower"),
            ("dir", "data", None),
            ("file", "data/old", b"lower"),
            ("link", "escape", str(outside)),  # an absolute link: resolved inside the root, never on the host
            ("link", "up", "../../../.."),
            ("file", "bin-suid", b"x"),
            ("hard", "etc/keep-hard", "etc/keep"),
        ]
    )
    upper = _layer(
        [
            ("file", "etc/.wh.gone", b""),
            ("dir", "data", None),
            ("file", "data/.wh..wh..opq", b""),
            ("file", "data/new", b"upper"),
            ("file", "escape/planted", b"no"),
            ("file", "up/planted-too", b"no"),
            ("file", "../../dotdot", b"no"),
        ]
    )
    for layer in (lower, upper):
        emu_images._apply_layer(root, layer, created=set())
    assert (root / "etc" / "keep").read_bytes() == b"lower"
    assert (root / "etc" / "keep-hard").read_bytes() == b"lower"
    assert not (root / "etc" / "gone").exists()  # the upper layer's whiteout removed it
    assert sorted(p.name for p in (root / "data").iterdir()) == ["new"]  # opaque: the lower contents are gone
    assert list(outside.iterdir()) == []  # nothing was written through a link out of the root
    assert (root / str(outside).lstrip("/") / "planted").read_bytes() == b"no"
    assert (root / "planted-too").read_bytes() == b"no"  # '..' stops at the root, as in a chroot
    assert (root / "dotdot").exists() and not (tmp_path.parent / "dotdot").exists()
    assert (root / "bin-suid").stat().st_mode & 0o6000 == 0  # no set-uid bits in the cache


def test_image_uri_parsing_and_registry_mapping():
    assert images.split_image_uri("1.dkr/r/x:t") == ("1.dkr", "r/x", "t")
    assert images.split_image_uri("h:5000/r@sha256:ab") == ("h:5000", "r", "sha256:ab")
    assert images.parse_registry("127.0.0.1:5000") == ("127.0.0.1:5000", False)
    assert images.parse_registry("https://reg.example:443") == ("reg.example:443", True)
    src = emu_images.ImageSource(registry="127.0.0.1:5000", cache=emu_images.ImageCache("/nonexistent"))
    ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/perfdesk/x:tag"
    assert src.registry_for(ecr) == ("http://127.0.0.1:5000", "perfdesk/x", "tag")
    with pytest.raises(emu_images.ApiError, match="is not valid. Provide a valid source image"):
        src.registry_for("docker.io/library/python:3.12")  # Lambda takes images from ECR only
    bare = emu_images.ImageSource(registry=None, cache=emu_images.ImageCache("/nonexistent"))
    bare.registry = None
    with pytest.raises(emu_images.ApiError, match="no registry for ECR"):
        bare.registry_for(ecr)


def test_size_limit_has_aws_reason():
    images.check_image_size(images.MAX_IMAGE_BYTES, "ok")
    with pytest.raises(images.ImageTooLarge, match="Uncompressed container image size exceeds 10 GiB limit"):
        images.check_image_size(images.MAX_IMAGE_BYTES + 1, "big")


# -- real peers ---------------------------------------------------------------------------------------------------
def _need_tools() -> None:
    if shutil.which("buildah") is None or images.registry_executable() is None:
        pytest.skip("buildah and docker-registry are needed (scripts/install.sh --test installs them)")
    if os.geteuid() != 0:
        pytest.skip("buildah builds as root here")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    _need_tools()
    with images.LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def builder():
    _need_tools()
    return images.BuildahBuilder()


@pytest.fixture(scope="module")
def tiny_image(builder, tmp_path_factory):
    """The tiny test handler as an image on perfdesk's stand-in base (python3.12); built once per module."""
    base = images.ensure_base(builder, images.STANDIN, "3.12", "x86_64")
    context = images.write_function_context(
        tmp_path_factory.mktemp("ctx"),
        base=base,
        handler="image_app.look",
        files={"tiny.py": HANDLERS / "tiny.py", "image_app.py": HANDLERS / "image_app.py"},
        python_version="3.12",
    )
    ref, size = images.build_function_image(builder, "test-tiny", "x86_64", context=context)
    return ref, size, context


def _ecr(moto_server):
    import boto3

    return boto3.client(
        "ecr", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


def test_build_is_reproducible_and_checked(builder, tiny_image, tmp_path):
    ref, size, context = tiny_image
    assert builder.exists(ref)
    assert size is not None and 50 * 2**20 < size < images.MAX_IMAGE_BYTES  # the base's Python and runtime
    again, _ = images.build_function_image(builder, "test-tiny", "x86_64", context=context)
    assert again == ref  # same context, same image: not built again
    other, _ = images.build_function_image(builder, "test-tiny-again", "x86_64", context=context)  # built anew
    assert builder.image_id(other) == builder.image_id(ref)  # byte for byte the same image
    builder.remove(other)
    with pytest.raises(images.ImageTooLarge, match="exceeds 10 GiB limit"):
        images.build_function_image(builder, "test-tiny", "x86_64", context=context, limit=size - 1)


def test_push_to_ecr_then_the_emulator_pulls_it(builder, tiny_image, registry, moto_server, tmp_path):
    ecr = _ecr(moto_server)
    ref = tiny_image[0]
    session = f"img-{time.time_ns()}"
    store = images.EcrImages(ecr, session, "us-east-1", registry=registry.url)
    pushed = store.push(builder, ref, "tiny")
    repo = ecr.describe_repositories(repositoryNames=[pushed["repository"]])["repositories"][0]
    tags = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]}
    assert tags == {"perfdesk:session": session, "perfdesk:managed": "true"}
    assert pushed["image_uri"] == f"{repo['repositoryUri']}@{pushed['digest']}"

    source = emu_images.ImageSource(registry=registry.url, cache=emu_images.ImageCache(tmp_path / "cache"))
    image, client = source.resolve(pushed["image_uri"])
    assert image.digest == pushed["digest"]
    run = image.run_config()
    assert run.argv == ["/lambda-entrypoint.sh", "image_app.look"] and run.working_dir == "/var/task"
    assert run.env_dict["LAMBDA_TASK_ROOT"] == "/var/task"
    unpacked = source.unpack(image, client)
    assert (unpacked.rootfs / "var" / "task" / "tiny.py").read_bytes() == (HANDLERS / "tiny.py").read_bytes()
    assert (unpacked.rootfs / "var" / "lang" / "bin" / "python3.12").is_file()
    assert source.unpack(image, client).rootfs == unpacked.rootfs  # cached by digest

    # the cache keeps the images used last: an old one beyond `keep`, unused for longer than `busy_s`, goes
    stale = tmp_path / "cache" / ("sha256-" + "0" * 64)
    (stale / "rootfs").mkdir(parents=True)
    (stale / "image.json").write_text("{}")
    os.utime(stale / "image.json", (time.time() - 7200, time.time() - 7200))
    assert emu_images.ImageCache(tmp_path / "cache", keep=1).evict() == [stale]
    assert unpacked.rootfs.is_dir()

    missing = pushed["image_uri"].split("@")[0] + ":no-such-tag"
    with pytest.raises(emu_images.ApiError, match=r"Source image .*:no-such-tag does not exist"):
        source.resolve(missing)

    assert store.remove() == [f"ECR repository {pushed['repository']}"]
    assert not [r for r in ecr.describe_repositories()["repositories"] if r["repositoryName"] == pushed["repository"]]


def test_a_registry_that_refuses_the_push_is_a_clear_error(builder, tiny_image, moto_server, tmp_path):
    down = images.LocalRegistry(tmp_path / "down").start()
    url = down.url
    down.stop()  # nothing listens there now
    store = images.EcrImages(_ecr(moto_server), f"img-down-{time.time_ns()}", "us-east-1", registry=url)
    with pytest.raises(images.ImageError, match=r"the registry refused the push .* Is the registry http://127"):
        store.push(builder, tiny_image[0], "tiny", timeout_s=120)
    store.remove()


def test_a_local_ecr_without_a_registry_is_refused_with_what_to_do(moto_server, monkeypatch):
    monkeypatch.delenv(images.REGISTRY_ENV, raising=False)
    store = images.EcrImages(_ecr(moto_server), "img-noreg", "us-east-1")
    with pytest.raises(images.ImageError, match="name the local registry"):
        store.registry("123456789012.dkr.ecr.us-east-1.amazonaws.com/perfdesk/x")


# -- the emulator's control plane for image functions -----------------------------------------------------------------
@pytest.fixture(scope="module")
def pushed_tiny(builder, tiny_image, registry, moto_server):
    """The tiny image pushed to a session repository in moto's ECR, backed by the loopback registry."""
    store = images.EcrImages(_ecr(moto_server), f"img-fn-{time.time_ns()}", "us-east-1", registry=registry.url)
    pushed = store.push(builder, tiny_image[0], "tiny")
    yield pushed
    store.remove()


@pytest.fixture(scope="module")
def image_emulator(registry, tmp_path_factory):
    from perfdesk.lambda_pkg.emulator import Emulator

    emu = Emulator(
        work_dir=tmp_path_factory.mktemp("emu-img"), idle_s=60, account_concurrency=4, registry=registry.url
    ).start()
    emu.images.source.cache = emu_images.ImageCache(tmp_path_factory.mktemp("image-cache"))
    yield emu
    emu.stop()


def test_create_image_function_through_boto3_reports_as_aws(image_emulator, pushed_tiny):
    lam = lambda_client(image_emulator.url)
    uri = pushed_tiny["image_uri"].split("@")[0] + ":" + pushed_tiny["tag"]
    created = lam.create_function(
        FunctionName="img-boto3", PackageType="Image", Code={"ImageUri": uri}, Role=ROLE, MemorySize=256, Timeout=10
    )
    assert created["PackageType"] == "Image" and "Runtime" not in created and "Handler" not in created
    assert created["State"] in ("Pending", "Active")
    lam.get_waiter("function_active_v2").wait(FunctionName="img-boto3", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    got = lam.get_function(FunctionName="img-boto3")
    assert got["Configuration"]["State"] == "Active"
    assert got["Code"] == {
        "RepositoryType": "ECR",
        "ImageUri": uri,
        "ResolvedImageUri": pushed_tiny["image_uri"],
    }
    assert got["Configuration"]["CodeSha256"] == pushed_tiny["digest"].split(":")[1]


def test_an_image_over_the_size_limit_fails_as_on_aws(image_emulator, pushed_tiny):
    lam = lambda_client(image_emulator.url)
    cache = image_emulator.images.source.cache
    small = emu_images.ImageCache(cache.root.with_name("small-cache"), limit=1024 * 1024)  # 1 MiB "Lambda"
    image_emulator.images.source.cache = small
    try:
        lam.create_function(
            FunctionName="img-big", PackageType="Image", Code={"ImageUri": pushed_tiny["image_uri"]}, Role=ROLE
        )
        for _ in range(120):
            cfg = lam.get_function_configuration(FunctionName="img-big")
            if cfg["State"] != "Pending":
                break
            time.sleep(0.5)
    finally:
        image_emulator.images.source.cache = cache
    assert cfg["State"] == "Failed" and cfg["StateReasonCode"] == "InvalidImage"
    assert cfg["StateReason"] == "SizeLimitExceeded: Uncompressed container image size exceeds 10 GiB limit"
    with pytest.raises(lam.exceptions.ResourceConflictException, match="following state: Failed"):
        lam.invoke(FunctionName="img-big", Payload=b"{}")
    assert not any(small.root.glob("sha256-*"))  # nothing half-unpacked is kept
    lam.delete_function(FunctionName="img-big")


def test_an_image_that_does_not_exist_is_refused_at_create(image_emulator, pushed_tiny):
    from botocore.exceptions import ClientError

    lam = lambda_client(image_emulator.url)
    missing = pushed_tiny["image_uri"].split("@")[0] + ":no-such-tag"
    with pytest.raises(ClientError) as info:
        lam.create_function(FunctionName="img-missing", PackageType="Image", Code={"ImageUri": missing}, Role=ROLE)
    err = info.value.response["Error"]
    assert err["Code"] == "InvalidParameterValueException"
    assert err["Message"] == f"Source image {missing} does not exist. Provide a valid source image."
    with pytest.raises(ClientError, match="Please don't provide Handler or Runtime or Layer"):
        lam.create_function(
            FunctionName="img-handler",
            PackageType="Image",
            Code={"ImageUri": pushed_tiny["image_uri"]},
            Role=ROLE,
            Handler="x.y",
        )
    assert "img-missing" not in image_emulator.functions


def test_perfdesk_teardown_finds_the_session_repositories_by_ledger_and_tags(moto_server, tmp_path, monkeypatch):
    """A session killed after creating its repository (and another left untagged, named only in the ledger):
    ``perfdesk teardown``'s sweep removes both, and an image tag in a repository the profile named, not the rest."""
    from perfdesk.lambda_pkg.functions import Ledger
    from perfdesk.lambda_pkg.teardown import sweep

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "t")
    ecr = _ecr(moto_server)
    session = f"img-sweep-{time.time_ns()}"
    ledger = Ledger(tmp_path, region="us-east-1", target="fn")
    store = images.EcrImages(ecr, session, "us-east-1", ledger=ledger)
    tagged = store.ensure_repository(store.repository_name("fn")).split("/", 1)[1]
    ledger.add("ecr-repository", name=f"perfdesk/{session}/untagged")  # killed between the ledger and the tags
    ecr.create_repository(repositoryName=f"perfdesk/{session}/untagged")
    ecr.create_repository(repositoryName=f"kept-{session}")
    manifest = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}'
    for tag in ("mine", "theirs"):
        ecr.put_image(
            repositoryName=f"kept-{session}",
            imageManifest=manifest.replace("{}", f'{{"t":"{tag}"}}'),
            imageTag=tag,
            imageManifestMediaType="application/vnd.oci.image.manifest.v1+json",
        )
    ledger.add("ecr-image", repository=f"kept-{session}", tag="mine")

    removed = sweep(session, entries=Ledger.read(tmp_path), region=None)
    assert f"ECR repository {tagged}" in removed and f"ECR repository perfdesk/{session}/untagged" in removed
    assert f"ECR image kept-{session}:mine" in removed
    names = {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
    assert not {tagged, f"perfdesk/{session}/untagged"} & names and f"kept-{session}" in names
    left = {i["imageTag"] for i in ecr.list_images(repositoryName=f"kept-{session}")["imageIds"]}
    assert left == {"theirs"}
    assert sweep(session, entries=Ledger.read(tmp_path), region=None) == []  # safe to repeat


# -- running image functions ------------------------------------------------------------------------------------------
def _look(payload: bytes) -> dict:
    return json.loads(payload)


def test_an_image_function_answers_in_its_own_root(image_emulator, pushed_tiny):
    """Created through boto3 and invoked: the image's own Python runs as Lambda's user, in its task root (read-only),
    with a writable /tmp, Lambda's variables over the image's Env, and nothing of this machine importable."""
    lam = lambda_client(image_emulator.url)
    lam.create_function(
        FunctionName="img-run",
        PackageType="Image",
        Code={"ImageUri": pushed_tiny["image_uri"]},
        Role=ROLE,
        MemorySize=512,
        Timeout=20,
        Environment={"Variables": {"MY_SETTING": "on"}},
    )
    lam.get_waiter("function_active_v2").wait(FunctionName="img-run", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    resp = lam.invoke(FunctionName="img-run", Payload=json.dumps({"hello": 1}), LogType="Tail")
    assert "FunctionError" not in resp, resp["Payload"].read()
    seen = _look(resp["Payload"].read())
    assert seen["event"] == {"hello": 1}
    assert seen["python"].startswith("3.12.") and seen["executable"] == "/var/lang/bin/python3.12"
    assert seen["uid"] != 0 and seen["cwd"] == "/var/task"
    assert seen["task_writable"] is False and seen["tmp_writable"] is True and seen["host_visible"] is False
    assert seen["memory_limit_mb"] == 512
    assert seen["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "img-run" and seen["env"]["MY_SETTING"] == "on"
    assert seen["env"]["LAMBDA_TASK_ROOT"] == "/var/task" and seen["env"]["_HANDLER"] == "image_app.look"
    assert seen["env"]["PATH"].startswith("/var/lang/bin")  # the image's Env
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "REPORT RequestId:" in log and "Init Duration" in log  # a cold start
    warm = lam.invoke(FunctionName="img-run", Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(warm["LogResult"]).decode()  # the same environment, warm

    # UpdateFunctionCode to the image by its tag: InProgress while pulled, then the new code serves (cold again)
    by_tag = pushed_tiny["image_uri"].split("@")[0] + ":" + pushed_tiny["tag"]
    lam.update_function_code(FunctionName="img-run", ImageUri=by_tag)
    lam.get_waiter("function_updated_v2").wait(FunctionName="img-run", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    got = lam.get_function(FunctionName="img-run")
    assert got["Code"]["ImageUri"] == by_tag and got["Code"]["ResolvedImageUri"] == pushed_tiny["image_uri"]
    after = lam.invoke(FunctionName="img-run", Payload=b"{}", LogType="Tail")
    assert "FunctionError" not in after and "Init Duration" in base64.b64decode(after["LogResult"]).decode()
    lam.delete_function(FunctionName="img-run")


def _aws_cli() -> list[str]:
    local = Path(sys.executable).parent / "aws"
    found = str(local) if local.exists() else shutil.which("aws")
    if not found:
        pytest.fail("the AWS CLI is not installed: pip install awscli (it is in perfdesk's test extra)")
    return [found]


def test_the_aws_cli_creates_invokes_and_updates_an_image_function(image_emulator, pushed_tiny, tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }

    def aws(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*_aws_cli(), "--endpoint-url", image_emulator.url, "lambda", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert (proc.returncode == 0) == ok, proc.stderr
        return proc

    uri = pushed_tiny["image_uri"]
    created = json.loads(
        aws(
            "create-function",
            "--function-name",
            "img-cli",
            "--package-type",
            "Image",
            "--code",
            f"ImageUri={uri}",
            "--role",
            ROLE,
            "--timeout",
            "20",
        ).stdout
    )
    assert created["PackageType"] == "Image"
    aws("wait", "function-active-v2", "--function-name", "img-cli")
    out = tmp_path / "out.json"
    meta = json.loads(aws("invoke", "--function-name", "img-cli", "--payload", '{"via": "cli"}', str(out)).stdout)
    assert meta["StatusCode"] == 200 and "FunctionError" not in meta
    assert json.loads(out.read_text())["event"] == {"via": "cli"}

    # ImageConfig overrides the image's CMD: the tiny echo handler instead
    aws("update-function-configuration", "--function-name", "img-cli", "--image-config", "Command=tiny.echo")
    aws("wait", "function-updated-v2", "--function-name", "img-cli")
    aws("invoke", "--function-name", "img-cli", "--payload", '{"n": 2}', str(out))
    assert json.loads(out.read_text())["event"] == {"n": 2} and "invocations" in json.loads(out.read_text())

    # UpdateFunctionCode to an image that does not exist: refused as AWS refuses it, the function unchanged
    missing = uri.split("@")[0] + ":gone"
    proc = aws("update-function-code", "--function-name", "img-cli", "--image-uri", missing, ok=False)
    assert f"Source image {missing} does not exist" in proc.stderr
    got = json.loads(aws("get-function", "--function-name", "img-cli").stdout)
    assert got["Code"]["ResolvedImageUri"] == uri and got["Configuration"]["ImageConfigResponse"] == {
        "ImageConfig": {"Command": ["tiny.echo"]}
    }
    proc = aws(
        "create-function",
        "--function-name",
        "img-cli-missing",
        "--package-type",
        "Image",
        "--code",
        f"ImageUri={missing}",
        "--role",
        ROLE,
        ok=False,
    )
    assert "InvalidParameterValueException" in proc.stderr and "does not exist" in proc.stderr
    aws("delete-function", "--function-name", "img-cli")


# -- the function targets: packaging = "image" ------------------------------------------------------------------------
def _onnx_workload():
    from perfdesk.controllers.workload import WorkloadSpec

    return WorkloadSpec(
        name="mnv2", model="mobilenet_v2", runtime="onnx", images="synthetic", synthetic_size=(96, 96), image_count=1
    )


@pytest.mark.slow
def test_local_lambda_deploys_an_image_and_tears_it_down(builder, tmp_path):
    """packaging = "image" on a local-lambda target: the image is built here on the stand-in base, pushed to a
    registry the target starts (its repository in the target's own local ECR), run by the emulator; teardown
    leaves no repository and no registry process."""
    import psutil

    from perfdesk.controllers.results import OK
    from perfdesk.controllers.target import TargetContext, target_class
    from perfdesk.controllers.workload import build_payloads

    ctx = TargetContext(session_id="t-img", emit=lambda e: None, work_dir=str(tmp_path))
    cls = target_class("local-lambda")
    spec = cls.spec_model(name="fn", kind="local-lambda", packaging="image", python="3.12", memory_mb=1769)
    target = cls(spec, ctx)
    workload = _onnx_workload()
    try:
        target.deploy(workload)
        facts = target.describe()
        assert facts["packaging"] == "image" and facts["image"]["base"].startswith("localhost/perfdesk/lambda-python:")
        assert facts["image"]["uri"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/perfdesk/t-img/")
        assert 0 < facts["image"]["uncompressed_bytes"] < facts["image"]["limit_bytes"]
        assert target.send(build_payloads(workload)[0]).status == OK
        registry_pid = target.registry.proc.pid
        ecr = target._ecr_client()
        assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == [
            facts["image"]["repository"]
        ]
    finally:
        target.teardown()
    assert not psutil.pid_exists(registry_pid) or psutil.Process(registry_pid).status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "lambda" / "fn" / "registry" / "data").exists()  # its images went with the session


@pytest.mark.slow
def test_a_lambda_target_on_local_stand_ins_deploys_an_image(builder, registry, moto_server, tmp_path, monkeypatch):
    """A kind = "lambda" target the way a LocalStack user runs it: AWS's endpoint variables send IAM, S3 and ECR to
    the moto server and Lambda to the emulator; PERFDESK_ECR_REGISTRY names the registry behind moto's ECR, and the
    emulator pulls the function's ECR image URI from it. Teardown removes the repository."""
    from perfdesk.controllers.results import OK
    from perfdesk.controllers.target import TargetContext, target_class
    from perfdesk.controllers.workload import build_payloads
    from perfdesk.lambda_pkg.emulator import Emulator

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    emu = Emulator(work_dir=tmp_path / "emu", idle_s=60, registry=registry.url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", emu.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv(images.REGISTRY_ENV, registry.url)
    ctx = TargetContext(session_id=f"t-aws-img-{time.time_ns()}", emit=lambda e: None, work_dir=str(tmp_path / "s"))
    cls = target_class("lambda")
    target = cls(cls.spec_model(name="fn", kind="lambda", packaging="image", python="3.12", memory_mb=1769), ctx)
    workload = _onnx_workload()
    try:
        target.deploy(workload)
        image = target.describe()["image"]
        assert image["base"].startswith("localhost/perfdesk/")  # Lambda is not AWS's here: the stand-in base
        got = target.manager.lam.get_function(FunctionName=target.function)
        assert got["Configuration"]["PackageType"] == "Image" and got["Code"]["ImageUri"] == image["uri"]
        assert target.send(build_payloads(workload)[0]).status == OK
        ecr = _ecr(moto_server)
        assert image["repository"] in {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
    finally:
        target.teardown()
        emu.stop()
    assert image["repository"] not in {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
