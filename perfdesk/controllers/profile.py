"""Profiles: a TOML file read with tomllib into a strict, documented schema.

Sections: ``[session]``, ``[[targets]]`` (one per target; the ``kind`` picks the schema), ``[[workloads]]``,
``[[trials]]`` (the ``kind`` picks the schema), and the optional ``[thresholds]``, ``[prices]`` and ``[load]``.

Every error is for people: :class:`ProfileError` names the file, the key path and the line where TOML has it,
suggests the closest key for a typo, and the CLI prints it without a traceback and exits 2.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfdesk.controllers.distributed import LoadSection
from perfdesk.controllers.target import TargetSpec, known_kinds, target_class
from perfdesk.controllers.traffic import TrafficSection
from perfdesk.controllers.workload import WorkloadSpec

if TYPE_CHECKING:
    from perfdesk.controllers.trials import TrialSpec

M = TypeVar("M", bound=BaseModel)


class ProfileError(Exception):
    """A profile that cannot be run; ``str()`` is the message shown to the user."""

    def __init__(self, path: str | Path, problems: list[tuple[str, int | None, str]]):
        self.path = str(path)
        self.problems = problems
        lines = []
        for key, line, msg in problems:
            where = f"{self.path}:{line}" if line else self.path
            lines.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
        super().__init__("\n".join(lines))


class SessionSection(BaseModel):
    """``[session]``: where and under which name results are written."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        "session", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Session name (folder prefix)."
    )
    output: str = Field("sessions", description="Folder that receives session folders (relative to the working dir).")
    metrics_interval_s: float = Field(1.0, gt=0, le=60, description="Seconds between resource samples.")
    baseline: str | None = Field(None, description="Session folder to gate this run against (see [thresholds]).")


@dataclass
class Profile:
    path: Path
    raw: dict[str, Any]
    session: SessionSection
    targets: list[TargetSpec]
    workloads: list[WorkloadSpec]
    trials: list[TrialSpec]
    thresholds: dict[str, float] = field(default_factory=dict)
    prices: dict[str, Any] = field(default_factory=dict)
    traffic: TrafficSection | None = None  # [traffic]: what replay trials send and the verdict projects
    load: LoadSection = field(default_factory=lambda: LoadSection())

    @property
    def base_dir(self) -> Path:
        return self.path.parent


TOP_KEYS = ("session", "targets", "workloads", "trials", "thresholds", "prices", "traffic", "load")


# -- locating keys in the TOML text ---------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _split_key(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in text.split(".")]


def key_lines(text: str) -> dict[tuple, int]:
    """Map key paths (``("targets", 1, "memory_mb")``) to 1-based line numbers, as far as a line scan can tell."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counters: dict[tuple, int] = {}
    in_multiline = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _HEADER.match(line)
        if m and not _KEY.match(line):
            parts = tuple(_split_key(m.group(2)))
            if m.group(1) == "[[":
                idx = counters.get(parts, -1) + 1
                counters[parts] = idx
                table = parts + (idx,)
            else:
                # a sub-table of the latest array element: [targets.extra] after [[targets]]
                resolved: tuple = ()
                for p in parts:
                    resolved += (p,)
                    if resolved in counters:
                        resolved += (counters[resolved],)
                table = resolved
            lines.setdefault(table, lineno)
            continue
        m = _KEY.match(line)
        if m:
            path = table + tuple(_split_key(m.group(1)))
            lines.setdefault(path, lineno)
            rest = line[m.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
    return lines


def _line_for(lines: dict[tuple, int], path: tuple) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def format_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _suggest(key: str, choices) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(choices))}"


class _Collector:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = key_lines(text)
        self.problems: list[tuple[str, int | None, str]] = []

    def add(self, path: tuple, msg: str) -> None:
        self.problems.append((format_path(path), _line_for(self.lines, path), msg))

    def kind(self, table: dict, where: tuple, known: list[str], what: str) -> str | None:
        """The table's ``kind`` if it is a known one; else the problem is recorded (closest kind suggested)."""
        kind = table.get("kind")
        if kind in known:
            return kind
        close = difflib.get_close_matches(str(kind), known, n=1) if kind is not None else []
        hint = f"did you mean '{close[0]}'? " if close else ""
        problem = "missing" if kind is None else f"unknown {what} kind {kind!r}"
        self.add(where + ("kind",), f"{problem}; {hint}known kinds: {', '.join(known)}")
        return None

    def validate(self, model: type[M], data: Any, prefix: tuple, context: dict) -> M | None:
        if not isinstance(data, dict):
            self.add(prefix, f"must be a table, not {type(data).__name__}")
            return None
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("function-after", "union")))
                path = prefix + loc
                if err["type"] == "extra_forbidden":
                    msg = "unknown key" + _suggest(str(loc[-1]), model.model_fields)
                else:
                    msg = err["msg"].removeprefix("Value error, ")
                    if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], dict):
                        msg += f" (got {err['input']!r})"
                self.add(path, msg)
            return None


def _split_worker_hosts(c: _Collector, load: LoadSection, targets: list[TargetSpec], trials: list) -> list:
    """Targets named in ``[load] worker_hosts`` are load machines, not measured: they leave the target list."""
    load.attach_targets(targets)
    hosts = set(load.worker_hosts)
    for spec in targets:
        if spec.name in hosts and spec.kind not in ("ssh", "ec2"):
            c.add(("load", "worker_hosts"), f"{spec.name!r} is a {spec.kind} target; name an ssh or ec2 target")
    for i, trial in enumerate(trials):
        for tname in set(getattr(trial, "targets", None) or []) & hosts:
            c.add(("trials", i, "targets"), f"{tname!r} is a worker host ([load] worker_hosts), not measured")
    measured = [t for t in targets if t.name not in hosts]
    if targets and not measured:
        c.add(("load", "worker_hosts"), "every target is a worker host; at least one target must be measured")
    return measured


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile; raises :class:`ProfileError` with every problem found."""
    from perfdesk.controllers.trials import known_trial_kinds, trial_spec_model

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(path, [("", None, "no such profile file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, [("", None, f"cannot read the profile: {exc}")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ProfileError(path, [("", int(m.group(1)) if m else None, f"not valid TOML: {exc}")]) from None

    c = _Collector(path, text)
    context: dict[str, Any] = {"base_dir": path.parent.resolve()}
    for key in raw:
        if key not in TOP_KEYS:
            c.add((key,), "unknown section" + _suggest(key, TOP_KEYS))

    session = c.validate(SessionSection, raw.get("session", {}), ("session",), context)

    targets: list[TargetSpec] = []
    seen: dict[str, int] = {}
    raw_targets = raw.get("targets", [])
    if not isinstance(raw_targets, list) or not raw_targets:
        c.add(("targets",), "at least one [[targets]] table is needed")
        raw_targets = raw_targets if isinstance(raw_targets, list) else []
    for i, t in enumerate(raw_targets):
        where = ("targets", i)
        if not isinstance(t, dict):
            c.add(where, "must be a table")
            continue
        kind = c.kind(t, where, known_kinds(), "target")
        if kind is None:
            continue
        spec = c.validate(target_class(kind).spec_model, t, where, context)
        if spec is None:
            continue
        if spec.name in seen:
            c.add(where + ("name",), f"duplicate target name {spec.name!r} (first used by targets[{seen[spec.name]}])")
            continue
        seen[spec.name] = i
        targets.append(spec)

    workloads: list[WorkloadSpec] = []
    raw_workloads = raw.get("workloads", [{"name": "resnet50"}])
    if not isinstance(raw_workloads, list) or not raw_workloads:
        c.add(("workloads",), "at least one [[workloads]] table is needed")
        raw_workloads = []
    wnames: set[str] = set()
    for i, w in enumerate(raw_workloads):
        if isinstance(w, dict) and "name" not in w and isinstance(w.get("model", "resnet50"), str):
            w = {**w, "name": f"{w.get('model', 'resnet50')}-{w.get('runtime', 'torch')}"}
        spec = c.validate(WorkloadSpec, w, ("workloads", i), context)
        if spec is not None:
            if spec.name in wnames:
                c.add(("workloads", i, "name"), f"duplicate workload name {spec.name!r}")
            wnames.add(spec.name)
            workloads.append(spec)

    traffic = c.validate(TrafficSection, raw["traffic"], ("traffic",), context) if "traffic" in raw else None
    context["traffic"] = traffic  # a replay trial sends it

    trials: list[TrialSpec] = []
    raw_trials = raw.get("trials", [])
    if not isinstance(raw_trials, list) or not raw_trials:
        c.add(("trials",), "at least one [[trials]] table is needed")
        raw_trials = []
    tnames: set[str] = set()
    for i, t in enumerate(raw_trials):
        where = ("trials", i)
        if not isinstance(t, dict):
            c.add(where, "must be a table")
            continue
        kind = c.kind(t, where, known_trial_kinds(), "trial")
        if kind is None:
            continue
        if "name" not in t:
            t = {**t, "name": kind}
        spec = c.validate(trial_spec_model(kind), t, where, context)
        if spec is None:
            continue
        if spec.name in tnames:
            c.add(where + ("name",), f"duplicate trial name {spec.name!r}")
        tnames.add(spec.name)
        for tname in getattr(spec, "targets", None) or []:
            if tname not in seen:
                c.add(where + ("targets",), f"no target named {tname!r}; targets: {', '.join(seen)}")
        trials.append(spec)

    from perfdesk.controllers.sections import PricesSection, Thresholds

    thresholds = raw.get("thresholds", {})
    if c.validate(Thresholds, thresholds, ("thresholds",), context) is None:
        thresholds = {}
    prices = raw.get("prices", {})
    if c.validate(PricesSection, prices, ("prices",), context) is None:
        prices = {}

    load = c.validate(LoadSection, raw.get("load", {}), ("load",), context)
    if load is not None and load.worker_hosts:
        targets = _split_worker_hosts(c, load, targets, trials)

    if c.problems:
        raise ProfileError(path, c.problems)
    assert session is not None and load is not None  # validate() returns None only after recording a problem
    return Profile(
        path, raw, session, targets, workloads, trials, dict(thresholds), dict(prices), traffic=traffic, load=load
    )
