"""SnapStart on lambda and local-lambda targets (``snapstart = true``): enable, publish, invoke the version.

Lambda applies SnapStart to published versions only: the target turns it on (``SnapStart.ApplyOn =
PublishedVersions``), publishes a version (its init runs then, once, and is snapshotted), waits for the version to be
Active and invokes that version (``Qualifier``). A cold start of the version is a restore: its REPORT line has
``Restore Duration`` and ``Billed Restore Duration`` and no ``Init Duration``. A change of configuration (a forced
cold start, another memory size) is a new version, so a new snapshot, as on AWS.

Refused before anything is deployed, with AWS's own errors: Python runtimes before 3.12 and container images.
"""

from __future__ import annotations

from typing import Any

#: Lambda's Python runtimes with SnapStart.
SNAPSTART_PYTHONS = ("3.12", "3.13")


def check(python: str, packaging: str) -> str | None:
    """Why SnapStart cannot apply (AWS's error for it), or None."""
    if packaging == "image":
        return "SnapStart is not supported for functions with package type Image (snapstart needs packaging 'zip')."
    if python not in SNAPSTART_PYTHONS:
        return f"python{python} is not supported for SnapStart enabled functions (Python 3.12 or later)."
    return None


def publish(manager: Any, function: str, say=None) -> dict[str, Any]:
    """Turn SnapStart on (once) and publish a version of $LATEST; wait until its snapshot is taken (Active).
    Returns the version's configuration."""
    lam = manager.lam
    config = lam.get_function_configuration(FunctionName=function)
    if (config.get("SnapStart") or {}).get("ApplyOn") != "PublishedVersions":
        lam.update_function_configuration(FunctionName=function, SnapStart={"ApplyOn": "PublishedVersions"})
        lam.get_waiter("function_updated_v2").wait(FunctionName=function, WaiterConfig=manager._waiter_config())
    version = lam.publish_version(FunctionName=function, Description="perfdesk snapstart")
    number = version["Version"]
    if say:
        say(f"published {function}:{number} with SnapStart; waiting for its snapshot")
    lam.get_waiter("published_version_active").wait(
        FunctionName=function, Qualifier=number, WaiterConfig=manager._waiter_config()
    )
    return lam.get_function_configuration(FunctionName=function, Qualifier=number)


def delete_version(manager: Any, function: str, number: str | None) -> None:
    """Drop an older version (its snapshot's cache is billed while it exists)."""
    if number:
        try:
            manager.lam.delete_function(FunctionName=function, Qualifier=number)
        except Exception:  # noqa: BLE001 - best effort: teardown removes the function and all its versions
            pass
