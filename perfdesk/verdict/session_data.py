"""Read a finished session folder back (requests.csv, trials.csv, manifest.json) for the verdict.

The verdict (cost model, break-even, compare, gate, report) works on saved sessions only, never on in-memory
state, so a report can be rebuilt from any folder, including one from a killed run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfdesk.controllers.results import REQUEST_COLUMNS, TRIAL_COLUMNS

#: A trial x target x level, the unit every verdict figure is computed for.
GROUP_KEYS = ["workload", "trial", "target", "level"]


class SessionError(Exception):
    """A session folder cannot be read; the message names the folder, the file and what to do."""


@dataclass
class Session:
    """One session folder, loaded. ``requests`` and ``trials`` have a normalised ``level`` (see :func:`level_key`)."""

    path: Path
    manifest: dict[str, Any]
    requests: pd.DataFrame
    trials: pd.DataFrame

    @property
    def session_id(self) -> str:
        return str(self.manifest.get("session_id") or self.path.name)

    @property
    def profile(self) -> dict[str, Any]:
        return self.manifest.get("profile") or {}

    def target_facts(self, name: str) -> dict[str, Any]:
        """What is known of a target: the profile's spec, overlaid with its describe() from the manifest."""
        facts: dict[str, Any] = {}
        for spec in self.profile.get("targets") or []:
            if isinstance(spec, dict) and spec.get("name") == name:
                facts.update(spec)
        facts.update((self.manifest.get("targets") or {}).get(name) or {})
        return facts

    def target_kinds(self) -> dict[str, str]:
        """target name -> target_kind, from the rows (and the profile for targets with no row)."""
        kinds: dict[str, str] = {}
        for spec in self.profile.get("targets") or []:
            if isinstance(spec, dict) and spec.get("name"):
                kinds[spec["name"]] = str(spec.get("kind", ""))
        for frame in (self.trials, self.requests):
            if len(frame):
                pairs = frame[["target", "target_kind"]].dropna().drop_duplicates()
                kinds.update(dict(zip(pairs["target"].astype(str), pairs["target_kind"].astype(str))))
        return kinds


def level_key(value: Any) -> str:
    """One spelling per level so sessions match: 4, 4.0 and "4" -> "4"; a missing level -> ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            return text
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return ""
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _as_bool(series: pd.Series) -> pd.Series:
    return series.astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes"])


def _read_csv(path: Path, columns: list[str], required: bool) -> pd.DataFrame:
    if not path.exists():
        if required:
            raise SessionError(f"{path.parent}: no {path.name} in this folder (is it a perfdesk session folder?)")
        return pd.DataFrame(columns=columns)
    try:
        frame = pd.read_csv(path, dtype={"level": str, "trial": str, "target": str, "workload": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=columns)
    except Exception as exc:  # pandas raises several parser error types
        raise SessionError(f"{path}: cannot be read as CSV ({exc}); the file may be truncated or edited") from exc
    missing = [c for c in ("trial", "target", "level") if c not in frame.columns]
    if missing:
        raise SessionError(f"{path}: missing column(s) {', '.join(missing)}; expected the columns of {path.name}")
    for col in columns:
        if col not in frame.columns:
            frame[col] = np.nan
    return frame


def load_session(path: str | Path) -> Session:
    """Load a session folder; raises :class:`SessionError` with a message for people."""
    folder = Path(path)
    if not folder.is_dir():
        raise SessionError(f"{folder}: not a folder; pass the session folder perfdesk printed at the end of a run")
    manifest_path = folder / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise SessionError(f"{manifest_path}: not valid JSON ({exc})") from exc
    requests = _read_csv(folder / "requests.csv", REQUEST_COLUMNS, required=True)
    trials = _read_csv(folder / "trials.csv", TRIAL_COLUMNS, required=False)
    for frame in (requests, trials):
        frame["level"] = frame["level"].map(level_key)
        frame["workload"] = frame["workload"].fillna("").astype(str)
        for col in ("trial", "target", "trial_kind", "target_kind"):
            frame[col] = frame[col].fillna("").astype(str)
    requests["cold"] = _as_bool(requests["cold"])
    requests["status"] = requests["status"].fillna("").astype(str)
    for col in (
        "latency_ms",
        "billed_ms",
        "init_ms",
        "restore_ms",
        "billed_restore_ms",
        "duration_ms",
        "memory_size_mb",
        "receive",
        "actual_send",
        "intended_send",
        "service_ms",
    ):
        requests[col] = pd.to_numeric(requests[col], errors="coerce")
    for col in ("throughput_rps", "duration_s", "count", "ok", "errors"):
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    return Session(path=folder, manifest=manifest, requests=requests, trials=trials)
