"""``perfdesk teardown``: find everything a session created in the cloud, and remove it.

Runs after a failed, interrupted or killed session too. :func:`teardown` works from what the user names: a session
folder (its manifest says which target kinds it used, its ledger what they created) or a session id (its folder is
looked for under ``./sessions``; without it, every kind searches by tags), or every perfdesk session (``None``).
Each target kind removes its own through :meth:`perfdesk.controllers.target.Target.sweep`: EC2 here
(:func:`teardown_session`), functions, layers, roles and S3 in the function package.

EC2 resources are found by their tags alone. Order matters: instances first (a security group in use cannot be
deleted), then elastic IPs, security groups and key pairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from perfdesk.controllers.target import Target, known_kinds, target_class
from perfdesk.remote.ec2 import TAG_SESSION, Ec2Lifecycle, clients, session_filters

#: Where sessions are looked for when the user gives an id (the profiles' default ``[session] output``).
SESSIONS_DIR = Path("sessions")


def find_session(ref: str | None, sessions_dir: Path = SESSIONS_DIR) -> tuple[str | None, Path | None]:
    """(session id, session folder or None) from what the user typed: a session folder, or a session id."""
    if ref is None:
        return None, None
    path = Path(ref).expanduser()
    if path.is_dir() and ((path / "manifest.json").is_file() or (path / "requests.csv").is_file()):
        try:
            return json.loads((path / "manifest.json").read_text())["session_id"], path.resolve()
        except (OSError, ValueError, KeyError):
            return path.name, path.resolve()
    folder = sessions_dir / ref
    return ref, folder.resolve() if folder.is_dir() else None


def teardown(
    ref: str | None,
    *,
    region: str | None = None,
    on_line: Callable[[str], None] | None = None,
    sessions_dir: Path = SESSIONS_DIR,
) -> list[str]:
    """Remove what the session ``ref`` (a folder or an id; ``None``: every perfdesk session) left in the cloud,
    kind by kind; return what was removed. Raises RuntimeError naming what is left (after trying everything)."""
    say = on_line or (lambda line: None)
    session_id, folder = find_session(ref, sessions_dir)
    targets: dict[str, dict] = {}
    if folder is not None and (folder / "manifest.json").is_file():
        try:
            targets = json.loads((folder / "manifest.json").read_text()).get("targets") or {}
        except (OSError, ValueError):
            targets = {}
    kinds = sorted({str(t["kind"]) for t in targets.values() if t.get("kind")}) if targets else known_kinds()
    groups: dict[object, tuple[type[Target], list[dict]]] = {}  # kinds that share one sweep run it once
    for kind in kinds:
        try:
            cls = target_class(kind)
        except (KeyError, ImportError):
            continue
        key = getattr(cls.sweep, "__func__", cls.sweep)
        facts = [t for t in targets.values() if t.get("kind") == kind]
        if key in groups:
            groups[key][1].extend(facts)
        else:
            groups[key] = (cls, facts)
    removed: list[str] = []
    problems: list[str] = []
    for cls, facts in groups.values():
        try:
            removed += cls.sweep(session_id, session_dir=folder, region=region, facts=facts, say=say)
        except RuntimeError as exc:
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - credentials, endpoints: report, and go on with the other kinds
            problems.append(f"{cls.kind}: {exc.__class__.__name__}: {exc}")
    if problems:
        raise RuntimeError("; ".join(problems))
    return removed


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
