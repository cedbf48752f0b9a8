"""What perfdesk ships to hosts and functions: the contract between perfdesk and what it deploys.

* :mod:`perfdesk.shipped.inference`: the inference engine (models, weights, images, runtimes, per-phase timings);
* :mod:`perfdesk.shipped.wire`: the wire format (encode and parse requests and responses, a sample image);
* :class:`perfdesk.shipped.inference.EngineConfig`: the engine options, with their encodings (argv for the agent,
  environment variables for a function);
* :mod:`perfdesk.shipped.agent`: the Flask inference agent (gunicorn, psutil metrics);
* :mod:`perfdesk.shipped.handler`: the Lambda handler.

Nothing here imports the client side (``perfdesk.controllers``, the targets, the verdict, the front ends); a test
checks it in a fresh interpreter.
"""

from pathlib import Path

#: Suffixes of the files that are shipped (code and label lists).
SHIPPED_SUFFIXES = (".py", ".txt", ".json")


def package_root() -> Path:
    """The folder that holds the ``perfdesk`` package (a checkout or site-packages)."""
    return Path(__file__).resolve().parents[2]


def shipped_files(root: Path | None = None) -> list[str]:
    """Exactly the files deployed to a host or a function, relative to ``root`` (sorted): ``perfdesk/__init__.py``
    and this package, nothing else of perfdesk."""
    root = root or package_root()
    pkg = root / "perfdesk" / "shipped"
    if not (pkg / "__init__.py").is_file():
        raise FileNotFoundError(f"{pkg} is missing: reinstall perfdesk")
    files = {"perfdesk/__init__.py"}
    for path in pkg.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in SHIPPED_SUFFIXES:
            files.add(path.relative_to(root).as_posix())
    return sorted(files)
