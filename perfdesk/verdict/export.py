"""Exporting sessions: copy each session's files to a destination and write combined.csv (every request of every
session given, with the session's summary figures of its trial x target x level joined on)."""

from __future__ import annotations

import shutil
from pathlib import Path

SESSION_FILES = ("requests.csv", "trials.csv", "metrics.csv", "manifest.json", "log.txt")


def check_session(path: Path) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such session folder")
    if not (path / "requests.csv").exists():
        raise ValueError(f"{path}: not a session folder (no requests.csv)")
    return path


def export_sessions(sessions: list[Path], dest: Path) -> list[Path]:
    """Copy the sessions' files under ``dest/<session>/`` and write ``dest/combined.csv``; returns what was written."""
    import pandas as pd

    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    frames = []
    for session in sessions:
        check_session(session)
        out = dest / session.name
        out.mkdir(exist_ok=True)
        for name in SESSION_FILES:
            if (session / name).exists():
                shutil.copy2(session / name, out / name)
                written.append(out / name)
        requests = pd.read_csv(session / "requests.csv")
        trials_path = session / "trials.csv"
        if trials_path.exists():
            trials = pd.read_csv(trials_path)
            keys = ["session", "workload", "trial", "target", "level"]
            summary_cols = ["status", "throughput_rps", "p50_ms", "p90_ms", "p99_ms"]
            trials = trials[trials["level"].notna()][keys + summary_cols].drop_duplicates(keys)
            trials = trials.rename(columns={c: f"level_{c}" for c in summary_cols})
            requests["level"] = requests["level"].astype(str)
            trials["level"] = trials["level"].astype(str)
            requests = requests.merge(trials, on=keys, how="left")
        frames.append(requests)
    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    combined.to_csv(dest / "combined.csv", index=False)
    written.append(dest / "combined.csv")
    return written
