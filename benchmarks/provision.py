"""Provisioning time on a fresh host against re-provisioning a ready one, over a real sshd on 127.0.0.1.

Run: python benchmarks/provision.py [--real-venv PACKAGE ...]
Without --real-venv the host reuses this interpreter (venv = its path): the probe, code upload, stamp and checks run
for real, the pip install does not. With --real-venv, a fresh venv (--system-site-packages) gets the packages.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "remote"))

import conftest  # the sshd fixture, used as a context

from perfdesk.remote.provision import Provisioner, ProvisionOptions


class _Factory:
    def mktemp(self, name):
        return Path(tempfile.mkdtemp(prefix=name))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real-venv", nargs="*", default=None, help="packages to pip install into a fresh venv")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    gen = conftest.sshd.__wrapped__(_Factory())
    sshd = next(gen)
    try:
        fresh, again = [], []
        for _ in range(args.repeat if args.real_venv is None else 1):
            root = tempfile.mkdtemp(prefix="host")
            if args.real_venv is None:
                opts = ProvisionOptions(remote_dir=root, venv=sys.executable)
            else:
                opts = ProvisionOptions(
                    remote_dir=root,
                    python=sys.executable,
                    venv="venv",
                    system_site_packages=True,
                    packages=args.real_venv,
                )
            with sshd.transport() as t:
                t.connect()
                t0 = time.perf_counter()
                Provisioner(t, opts).provision("torch")
                fresh.append(time.perf_counter() - t0)
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    report = Provisioner(t, opts).provision("torch")
                    again.append(time.perf_counter() - t0)
                    assert report.skipped_all, report.steps
        print(f"fresh provision:  median {statistics.median(fresh):.2f} s over {len(fresh)}")
        print(f"re-provision:     median {statistics.median(again):.2f} s over {len(again)} (all steps skipped)")
    finally:
        gen.close()


if __name__ == "__main__":
    main()
