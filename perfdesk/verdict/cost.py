"""The cost model: what each trial cost on each target, and the break-even rate between servers and functions.

Two billing models, as each target describes itself in the manifest (``billing``, see
:attr:`perfdesk.controllers.target.Target.billing`):

- **function** (Lambda, the local Lambda emulator priced as Lambda): every request pays
  ``billed_ms / 1000 * memory_mb / 1024`` GB-seconds at the architecture's GB-second price, plus the per-request
  fee; a cold request also pays its INIT phase when the price table's ``bill_init`` is true (see :func:`row_costs`).
  Throttled and cancelled requests never ran and cost nothing. A SnapStart function (manifest ``snapstart``)
  pays its Billed Restore Duration as GB-seconds and a fee per GB restored on each restored cold start, and the
  snapshot's cache per GB-second of memory for as long as the version exists (in the monthly projection).
- **server** (local process, SSH host, EC2 instance): an instance costs its hourly price for as long as the trial
  ran; carrying a sustained rate takes ``ceil(rate / saturation throughput)`` instances, the saturation throughput
  being the highest ``throughput_rps`` over the target's concurrency levels.

Prices come from ``prices.json`` next to this module (dated, editable) merged with the profile's ``[prices]``
section (:class:`PricesSection`). Everything here returns plain dataclasses; printing and charts are front ends.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfdesk.controllers.sections import PricesSection
from perfdesk.verdict.session_data import GROUP_KEYS, Session
from perfdesk.verdict.slo import Capacity, capacities, cold_share_at_capacity

PRICE_TABLE = Path(__file__).with_name("prices.json")

FUNCTION, SERVER = "function", "server"
#: Lambda Managed Instances: instances at their EC2 price plus the management fee, plus the request fee (paradigms.py).
MANAGED = "managed-instances"
#: Request statuses that never ran on the target, so were not billed.
NOT_BILLED = ("throttled", "cancelled")
_ARCH_ALIASES = {"x86": "x86_64", "x86-64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm": "arm64"}


class PriceError(Exception):
    """A price the cost model needs is not in the table; the message says which and where to add it."""


def load_price_table(path: str | Path | None = None) -> dict[str, Any]:
    """The shipped (or given) price table as a dict."""
    return json.loads(Path(path or PRICE_TABLE).read_text())


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def normalise_arch(arch: str | None) -> str:
    text = (arch or "x86_64").strip().lower()
    return _ARCH_ALIASES.get(text, text)


class PriceBook:
    """The price table merged with a profile's ``[prices]`` section; lookups raise :class:`PriceError`."""

    def __init__(self, table: dict[str, Any], override: dict[str, Any] | None = None):
        if override:
            # validate (raises pydantic.ValidationError naming the key) and drop unset keys before merging
            override = PricesSection.model_validate(override).model_dump(by_alias=True, exclude_none=True)
        self.table = _deep_merge(table, override or {})

    @classmethod
    def for_session(cls, session: Session, table: dict[str, Any] | None = None) -> PriceBook:
        return cls(table if table is not None else load_price_table(), session.profile.get("prices"))

    as_of = property(lambda self: str(self.table.get("as_of", "unknown date")))
    region = property(lambda self: str(self.table.get("region") or "us-east-1"))
    hours_per_month = property(lambda self: float(self.table.get("hours_per_month") or 730.0))
    bill_init = property(lambda self: bool(self.table.get("bill_init", True)))

    @property
    def cold_start_fraction(self) -> float | None:
        value = self.table.get("cold_start_fraction")
        return None if value is None else float(value)

    def target(self, name: str) -> dict[str, Any]:
        return dict((self.table.get("targets") or {}).get(name) or {})

    def lambda_rates(self, region: str, architecture: str) -> tuple[float, float]:
        """(USD per GB-second, USD per request) of Lambda in ``region`` for ``architecture``."""
        regions = self.table.get("lambda") or {}
        if region not in regions:
            raise PriceError(
                f"no Lambda prices for region {region!r} (known: {', '.join(sorted(regions))}); "
                f"add [prices.lambda.{region}.x86_64] gb_second/request to the profile"
            )
        archs = regions[region]
        arch = normalise_arch(architecture)
        if arch not in archs:
            raise PriceError(f"no Lambda prices for architecture {arch!r} in {region} (known: {', '.join(archs)})")
        rate = archs[arch]
        return float(rate["gb_second"]), float(rate["request"])

    def snapstart_rates(self, region: str) -> tuple[float, float]:
        """(USD per GB-second of snapshot cache, USD per GB restored) of Lambda SnapStart in ``region``."""
        regions = self.table.get("snapstart") or {}
        if region not in regions:
            raise PriceError(
                f"no SnapStart prices for region {region!r} (known: {', '.join(sorted(regions))}); "
                f"add [prices.snapstart.{region}] cache_gb_second/restore_gb to the profile"
            )
        rate = regions[region]
        return float(rate["cache_gb_second"]), float(rate["restore_gb"])

    def ec2_hourly(self, region: str, instance_type: str) -> float:
        prices = (self.table.get("ec2") or {}).get(region) or {}
        if instance_type not in prices:
            raise PriceError(
                f"no hourly price for {instance_type!r} in {region} (known: {', '.join(sorted(prices))});"
                f" add it under [prices.ec2.{region}] in the profile or to prices.json"
            )
        return float(prices[instance_type])


# -- per target --------------------------------------------------------------------------------------------------
@dataclass
class TargetPricing:
    """How one target is billed. ``note`` says why a price is missing (then its costs are None)."""

    target: str
    kind: str
    model: str  # FUNCTION | SERVER
    region: str
    architecture: str = ""
    memory_mb: float | None = None
    gb_second_usd: float | None = None
    request_usd: float | None = None
    instance_type: str = ""
    hourly_usd: float | None = None
    note: str = ""
    #: where the price came from, for people ("c5.xlarge in the price table of 2025-06-01", "the profile's ...")
    price_source: str = ""
    #: non-empty for a local stand-in (the manifest's ``emulation``): its prices are an emulation's
    emulation: str = ""
    snapstart: bool = False
    cache_gb_second_usd: float | None = None  # SnapStart: the snapshot's cache
    restore_gb_usd: float | None = None  # SnapStart: each restore

    @property
    def priced(self) -> bool:
        return (self.gb_second_usd is not None) if self.model == FUNCTION else (self.hourly_usd is not None)

    @property
    def label(self) -> str:
        """How the target is priced, in words, with the emulation caveat where it applies."""
        if self.model == FUNCTION:
            what = f"priced as AWS Lambda {self.architecture or 'x86_64'} in {self.region}"
        elif self.hourly_usd is not None:
            what = f"priced at ${self.hourly_usd:g}/h ({self.price_source or 'price table'})"
        else:
            what = "not priced"
        return f"EMULATION: {self.emulation}; {what}" if self.emulation else what


def billing_model(facts: dict, rows: pd.DataFrame | None = None) -> str:
    """The target's own ``billing`` from the manifest; for a session without it, a function when rows carry
    billed_ms (a REPORT line), else a server."""
    if facts.get("billing") in (FUNCTION, SERVER, MANAGED):
        return str(facts["billing"])
    if rows is not None and len(rows) and rows["billed_ms"].notna().any():
        return FUNCTION
    return SERVER


def target_pricing(session: Session, name: str, book: PriceBook) -> TargetPricing:
    """Resolve a target's prices: profile ``[prices.targets.NAME]``, then its manifest facts, then the table."""
    facts = session.target_facts(name)
    over = book.target(name)
    kind = session.target_kinds().get(name, str(facts.get("kind", "")))
    rows = session.requests[session.requests["target"] == name]
    model = billing_model(facts, rows)
    region = str(over.get("region") or facts.get("region") or book.region)
    pricing = TargetPricing(
        target=name, kind=kind, model=model, region=region, emulation=str(facts.get("emulation") or "")
    )
    if model == MANAGED:
        from perfdesk.verdict.paradigms import managed_pricing

        return managed_pricing(pricing, facts, over, book)
    if model == FUNCTION:
        pricing.architecture = normalise_arch(over.get("architecture") or facts.get("architecture"))
        memory = facts.get("memory_mb") or facts.get("memory_size_mb")
        pricing.memory_mb = float(memory) if memory else None
        try:
            pricing.gb_second_usd, pricing.request_usd = book.lambda_rates(region, pricing.architecture)
        except PriceError as exc:
            pricing.note = str(exc)
        if facts.get("snapstart"):
            pricing.snapstart = True
            try:
                pricing.cache_gb_second_usd, pricing.restore_gb_usd = book.snapstart_rates(region)
            except PriceError as exc:
                pricing.note = (pricing.note + "; " if pricing.note else "") + str(exc)
                pricing.gb_second_usd = None  # not priced rather than priced low
        return pricing
    _server_price(pricing, name, over, facts, book)
    return pricing


def _server_price(pricing: TargetPricing, name: str, over: dict, facts: dict, book: PriceBook) -> None:
    """A server's hourly price, first found of: the profile's ``[prices.targets.NAME] hourly_usd``, its
    ``instance_type`` there, the target's own price from the manifest (``hourly_price`` in its profile entry,
    ``price_source`` "profile"), its instance type in the price table (with the profile's ``[prices.ec2]``),
    the price its describe() found in its own table."""
    region = pricing.region
    table_of = f"price table of {book.as_of}"
    if over.get("hourly_usd") is not None:
        pricing.hourly_usd, pricing.price_source = float(over["hourly_usd"]), f"[prices.targets.{name}] hourly_usd"
        pricing.instance_type = str(over.get("instance_type") or facts.get("instance_type") or "")
        return
    if over.get("instance_type"):
        pricing.instance_type = str(over["instance_type"])
        try:
            pricing.hourly_usd = book.ec2_hourly(region, pricing.instance_type)
            pricing.price_source = f"{pricing.instance_type} in {region}, {table_of}"
        except PriceError as exc:
            pricing.note = str(exc)
        return
    pricing.instance_type = str(facts.get("instance_type") or "")
    own = facts.get("hourly_usd")
    if own is not None and "profile" in (facts.get("price_source"), facts.get("price_as_of")):
        pricing.hourly_usd, pricing.price_source = float(own), "the target's hourly_price in the profile"
        return
    if pricing.instance_type:
        try:
            pricing.hourly_usd = book.ec2_hourly(region, pricing.instance_type)
            pricing.price_source = f"{pricing.instance_type} in {region}, {table_of}"
            return
        except PriceError as exc:
            if own is None:
                pricing.note = str(exc)
                return
    if own is not None:
        pricing.hourly_usd = float(own)
        pricing.price_source = f"{pricing.instance_type or name}, {facts.get('price_source') or 'the manifest'}"
        return
    pricing.note = (
        f"no price for server {name!r}: set hourly_price or instance_type on the target, or "
        f"[prices.targets.{name}] hourly_usd or instance_type, in the profile"
    )


def row_costs(rows: pd.DataFrame, pricing: TargetPricing, bill_init: bool) -> pd.DataFrame:
    """Per-request cost of a function's rows: columns billed_ms_total, billed_init_ms, gb_seconds, cost_usd.

    Billed duration is ``billed_ms`` (the REPORT line's, already rounded up to 1 ms), else ``ceil(duration_ms)``.
    Memory is the row's ``memory_size_mb``, else the target's configured memory, else the level of a memory trial.
    INIT: with ``bill_init``, a cold row's ``ceil(init_ms)`` is added unless ``billed_ms >= duration_ms + init_ms``
    (container images and custom runtimes, whose REPORT already bills INIT), so it is never counted twice.
    """
    out = pd.DataFrame(index=rows.index)
    billed = rows["billed_ms"].where(rows["billed_ms"].notna(), np.ceil(rows["duration_ms"]))
    memory = rows["memory_size_mb"].copy()
    if pricing.memory_mb:
        memory = memory.fillna(pricing.memory_mb)
    memory_level = pd.to_numeric(rows["level"].where(rows["trial_kind"] == "memory"), errors="coerce")
    memory = memory.fillna(memory_level)
    init = rows["init_ms"]
    covered = rows["duration_ms"].notna() & (billed >= rows["duration_ms"] + init - 1.0)
    add_init = rows["cold"] & init.notna() & ~covered if bill_init else pd.Series(False, index=rows.index)
    out["billed_init_ms"] = np.where(add_init, np.ceil(init.fillna(0.0)), 0.0)
    # SnapStart: a restored cold start's Billed Restore Duration is billed like duration, plus a fee per GB restored
    restore = pd.to_numeric(rows.get("billed_restore_ms", pd.Series(np.nan, index=rows.index)), errors="coerce")
    out["billed_restore_ms"] = restore.fillna(0.0)
    out["billed_ms_total"] = billed + out["billed_init_ms"] + out["billed_restore_ms"]
    ran = ~rows["status"].isin(NOT_BILLED)
    out["gb_seconds"] = np.where(ran, out["billed_ms_total"] / 1000.0 * memory / 1024.0, 0.0)
    restored = ran & restore.notna()
    restore_fee = np.where(restored, memory / 1024.0 * (pricing.restore_gb_usd or 0.0), 0.0)
    if pricing.gb_second_usd is None or pricing.request_usd is None:
        out["cost_usd"] = np.nan
    else:
        out["cost_usd"] = np.where(
            ran, out["gb_seconds"] * pricing.gb_second_usd + pricing.request_usd + restore_fee, 0.0
        )
    return out


@dataclass
class TrialCost:
    """What one trial x target x level cost; ``cost_per_1k_usd`` is per 1,000 successful inferences."""

    workload: str
    trial: str
    trial_kind: str
    target: str
    target_kind: str
    level: str
    model: str
    requests: int
    ok: int
    duration_s: float | None
    cost_usd: float | None
    cost_per_1k_usd: float | None
    gb_seconds: float | None = None
    billed_init_ms: float | None = None
    instance_hours: float | None = None
    note: str = ""
    #: non-empty for a local stand-in: this cost is an emulation's (see :attr:`TargetPricing.emulation`)
    emulation: str = ""


def _duration_s(group_rows: pd.DataFrame, trial_row: pd.Series | None) -> float | None:
    if trial_row is not None and pd.notna(trial_row.get("duration_s")) and trial_row["duration_s"] > 0:
        return float(trial_row["duration_s"])
    start = group_rows["intended_send"].fillna(group_rows["actual_send"]).min()
    end = group_rows["receive"].max()
    if pd.isna(start) or pd.isna(end) or end <= start:
        return None
    return float(end - start)


def trial_costs(session: Session, book: PriceBook | None = None) -> list[TrialCost]:
    """Cost of every trial x target x level of the session (groups of requests.csv, durations from trials.csv)."""
    book = book or PriceBook.for_session(session)
    pricing = {name: target_pricing(session, name, book) for name in session.target_kinds()}
    trials = session.trials.set_index(GROUP_KEYS) if len(session.trials) else None
    out: list[TrialCost] = []
    reqs = session.requests
    for key, rows in reqs.groupby(GROUP_KEYS, sort=False):
        workload, trial, target, level = key
        price = pricing.get(target) or target_pricing(session, target, book)
        trial_row = None
        if trials is not None and key in trials.index:
            trial_row = trials.loc[key]
            if isinstance(trial_row, pd.DataFrame):
                trial_row = trial_row.iloc[-1]
        ok = int((rows["status"] == "ok").sum())
        item = TrialCost(
            workload=workload,
            trial=trial,
            trial_kind=str(rows["trial_kind"].iloc[0]),
            target=target,
            target_kind=price.kind,
            level=level,
            model=price.model,
            requests=len(rows),
            ok=ok,
            duration_s=_duration_s(rows, trial_row),
            cost_usd=None,
            cost_per_1k_usd=None,
            note=price.note,
            emulation=price.emulation,
        )
        if price.model == FUNCTION:
            costs = row_costs(rows, price, book.bill_init)
            item.gb_seconds = float(costs["gb_seconds"].sum())
            item.billed_init_ms = float(costs["billed_init_ms"].sum())
            if price.priced:
                item.cost_usd = float(costs["cost_usd"].sum())
        elif item.duration_s is not None:
            item.instance_hours = item.duration_s / 3600.0
            if price.hourly_usd is not None:  # priced, for a server
                item.cost_usd = price.hourly_usd * item.instance_hours
        if item.cost_usd is not None and ok:
            item.cost_per_1k_usd = item.cost_usd / ok * 1000.0
        out.append(item)
    return out


# -- per target summary and break-even ---------------------------------------------------------------------------
def instances_needed(rate_rps: float, saturation_rps: float) -> int:
    """Servers needed to carry ``rate_rps`` when one saturates at ``saturation_rps`` (at least one kept up)."""
    if saturation_rps <= 0:
        raise ValueError("saturation throughput must be positive")
    return max(1, math.ceil(rate_rps / saturation_rps - 1e-9))


def saturation_rps(session: Session, target: str) -> float | None:
    """Highest throughput_rps over the target's concurrency levels (any trial kind when it has no sweep)."""
    trials = session.trials[session.trials["target"] == target]
    if not len(trials):
        return None
    sweep = trials[trials["trial_kind"] == "concurrency"]
    values = (sweep if len(sweep) else trials)["throughput_rps"].dropna()
    return float(values.max()) if len(values) and values.max() > 0 else None


@dataclass
class TargetCost:
    """A target's unit costs, as the break-even uses them."""

    pricing: TargetPricing
    saturation_rps: float | None = None  # servers
    cost_per_1k_at_saturation_usd: float | None = None  # servers, one instance fully used
    warm_cost_per_request_usd: float | None = None  # functions
    cold_cost_per_request_usd: float | None = None  # functions, INIT included when billed
    cold_start_fraction: float = 0.0  # functions: share of requests assumed / measured cold
    cold_fraction_source: str = ""
    note: str = ""
    #: what its capacity trial found (verdict/slo.py): the rate one instance sustains under the SLO
    capacity: Capacity | None = None

    @property
    def per_instance_rps(self) -> float | None:
        """What one server instance carries in the break-even: its capacity under the SLO where a capacity trial
        measured it (equal service), else its saturation throughput (whatever its latency there)."""
        if self.capacity is not None:
            return self.capacity.rps
        return self.saturation_rps

    @property
    def basis(self) -> str:
        """How :attr:`per_instance_rps` was found, in words."""
        if self.capacity is not None:
            return f"capacity under p99 <= {self.capacity.slo_p99_ms:g} ms"
        return "saturation throughput (no capacity trial: not at equal service)"

    def snapshot_cache_usd(self, hours: float) -> float:
        """SnapStart: the snapshot cache of one version for ``hours`` (memory GB x seconds x the cache price)."""
        p = self.pricing
        if not p.snapstart or not p.cache_gb_second_usd or not p.memory_mb:
            return 0.0
        return p.memory_mb / 1024.0 * hours * 3600.0 * p.cache_gb_second_usd

    @property
    def cost_per_request_usd(self) -> float | None:
        """Expected function cost of one request at a sustained rate: warm and cold mixed."""
        if self.warm_cost_per_request_usd is None:
            return None
        cold = self.cold_cost_per_request_usd
        if cold is None:
            cold = self.warm_cost_per_request_usd
        f = self.cold_start_fraction
        return (1.0 - f) * self.warm_cost_per_request_usd + f * cold

    def monthly_usd(self, rate_rps: float, hours_per_month: float) -> float | None:
        """Cost of a month of ``rate_rps`` sustained (None when a price or a measurement is missing)."""
        if self.pricing.model == FUNCTION:
            per_request = self.cost_per_request_usd
            if per_request is None:
                return None
            return rate_rps * hours_per_month * 3600.0 * per_request + self.snapshot_cache_usd(hours_per_month)
        if self.pricing.hourly_usd is None or not self.per_instance_rps:
            return None
        if self.pricing.model == MANAGED:
            from perfdesk.verdict.paradigms import managed_monthly_usd

            return managed_monthly_usd(self, rate_rps, hours_per_month)
        return instances_needed(rate_rps, self.per_instance_rps) * self.pricing.hourly_usd * hours_per_month


#: Trial kinds whose requests show how often a function starts cold under sustained traffic.
SUSTAINED_KINDS = ("warm", "concurrency", "rate", "stream")


def target_costs(
    session: Session, book: PriceBook | None = None, cold_start_fraction: float | None = None
) -> dict[str, TargetCost]:
    """Unit costs of every target. The cold-start fraction is ``cold_start_fraction``, else the price table's
    (an assumption), else measured: cold rows / all rows of the target's warm, concurrency, rate and stream trials.
    """
    book = book or PriceBook.for_session(session)
    assumed = cold_start_fraction if cold_start_fraction is not None else book.cold_start_fraction
    measured_capacity = capacities(session)
    out: dict[str, TargetCost] = {}
    for name in session.target_kinds():
        pricing = target_pricing(session, name, book)
        item = TargetCost(pricing=pricing, note=pricing.note, capacity=measured_capacity.get(name))
        rows = session.requests[session.requests["target"] == name]
        if pricing.model in (SERVER, MANAGED):
            item.saturation_rps = saturation_rps(session, name)
            if item.saturation_rps is None:
                item.note = (item.note + "; " if item.note else "") + "no throughput measured (run a concurrency trial)"
            elif pricing.hourly_usd is not None:
                item.cost_per_1k_at_saturation_usd = pricing.hourly_usd / (item.saturation_rps * 3600.0) * 1000.0
            out[name] = item
            continue
        billed = rows[~rows["status"].isin(NOT_BILLED)]
        configured = billed[billed["trial_kind"] != "memory"]
        billed = configured if len(configured) else billed  # the memory sweep's sizes are not the configured one
        costs = row_costs(billed, pricing, book.bill_init)["cost_usd"]
        warm, cold = costs[~billed["cold"]], costs[billed["cold"]]
        if pricing.priced and len(warm):
            item.warm_cost_per_request_usd = float(warm.mean())
        if pricing.priced and len(cold):
            item.cold_cost_per_request_usd = float(cold.mean())
        at_capacity = cold_share_at_capacity(session, item.capacity) if item.capacity is not None else None
        if assumed is not None:
            item.cold_start_fraction, item.cold_fraction_source = float(assumed), "assumed"
        elif at_capacity is not None and item.capacity is not None:
            share, cold_n, n = at_capacity
            item.cold_start_fraction = share
            item.cold_fraction_source = (
                f"measured at its capacity rate {item.capacity.rps:g} req/s: {cold_n} cold of {n}"
            )
        else:
            sustained = rows[rows["trial_kind"].isin(SUSTAINED_KINDS)]
            item.cold_start_fraction = float(sustained["cold"].mean()) if len(sustained) else 0.0
            item.cold_fraction_source = (
                (
                    f"measured ({int(sustained['cold'].sum())} cold of {len(sustained)} "
                    "requests in warm/concurrency/rate trials)"
                )
                if len(sustained)
                else "no sustained trial: assumed 0"
            )
        out[name] = item
    return out


@dataclass
class CostCurve:
    target: str
    model: str
    monthly_usd: list[float | None]


@dataclass
class Crossover:
    """Where ``server`` becomes cheaper than ``function``.

    ``break_even_rps``: the lowest sustained rate at which the server costs no more (None: never, because even a
    fully used instance costs more per request than the function). Above it the server's step cost (one more
    instance per saturation throughput) can put the function back ahead just past each step, until
    ``server_always_cheaper_from_rps``.
    """

    server: str
    function: str
    break_even_rps: float | None
    server_always_cheaper_from_rps: float | None
    monthly_usd_at_break_even: float | None
    function_cold_start_fraction: float
    cold_fraction_source: str
    note: str = ""
    #: how one server instance's rate was found (:attr:`TargetCost.basis`), and what each side sustains under its SLO
    server_basis: str = ""
    #: where the function is cheaper at every rate: what one server instance would have to carry to break even
    instance_rps_to_break_even: float | None = None
    server_capacity: Capacity | None = None
    function_capacity: Capacity | None = None

    @property
    def equal_service(self) -> bool:
        """Both sides were measured under the same p99 bound (capacity trials), and the function met it."""
        s, f = self.server_capacity, self.function_capacity
        return (
            s is not None
            and f is not None
            and f.rps is not None
            and math.isclose(s.slo_p99_ms, f.slo_p99_ms, rel_tol=1e-9)
        )


@dataclass
class BreakEven:
    rates_rps: list[float]
    curves: list[CostCurve]
    crossovers: list[Crossover]
    hours_per_month: float
    prices_as_of: str
    targets: dict[str, TargetCost] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def crossover(server: TargetCost, function: TargetCost, hours_per_month: float) -> Crossover:
    """Closed form. One instance costs ``H * hours`` a month; the function costs ``R * 3600 * hours * c``. They are
    equal at ``b = H / (3600 c)``; with ``k`` instances the server wins on ``[k b, k s]`` (s: saturation), which is
    non-empty for every k exactly when ``b <= s``. The function wins on ``(k s, (k+1) b)``, empty once
    ``k >= b / (s - b)``."""
    base = Crossover(
        server=server.pricing.target,
        function=function.pricing.target,
        break_even_rps=None,
        server_always_cheaper_from_rps=None,
        monthly_usd_at_break_even=None,
        function_cold_start_fraction=function.cold_start_fraction,
        cold_fraction_source=function.cold_fraction_source,
        server_basis=server.basis,
        server_capacity=server.capacity,
        function_capacity=function.capacity,
    )
    per_request, hourly, sat = function.cost_per_request_usd, server.pricing.hourly_usd, server.per_instance_rps
    if per_request is None or hourly is None or not sat:
        missing = [
            w
            for w, v in (
                ("function cost", per_request),
                ("server price", hourly),
                ("capacity under the SLO" if server.capacity is not None else "saturation", sat),
            )
            if not v
        ]
        base.note = "cannot compute: no " + ", ".join(missing)
        return base
    b = hourly / (3600.0 * per_request)
    if b > sat:
        base.note = (
            f"the function is cheaper at every rate: one instance at {sat:g} req/s ({server.basis}) costs "
            f"${hourly / (sat * 3.6):.4f} per 1k against ${per_request * 1000:.4f}; one instance would have to "
            f"carry {b:.1f} req/s ({server.basis.split(' (')[0]}) to break even"
        )
        base.instance_rps_to_break_even = b
        return base
    base.break_even_rps = b
    base.monthly_usd_at_break_even = hourly * hours_per_month
    if math.isclose(b, sat):
        base.note = "the server only ties at full instances; the function wins just past each step"
        return base
    k_last = 0
    k = 1
    while k * sat < (k + 1) * b:  # terminates: k*(s-b) grows past b
        k_last = k
        k += 1
    base.server_always_cheaper_from_rps = (k_last + 1) * b
    return base


def break_even(
    session: Session,
    book: PriceBook | None = None,
    rates_rps: list[float] | None = None,
    cold_start_fraction: float | None = None,
) -> BreakEven:
    """Monthly cost against sustained rate for every target, and each server x function crossover."""
    book = book or PriceBook.for_session(session)
    targets = target_costs(session, book, cold_start_fraction)
    hours = book.hours_per_month
    servers = [t for t in targets.values() if t.pricing.model == SERVER]
    functions = [t for t in targets.values() if t.pricing.model == FUNCTION]
    crossovers = [crossover(s, f, hours) for s in servers for f in functions]
    if rates_rps is None:
        marks = (
            [c.break_even_rps for c in crossovers if c.break_even_rps]
            + [c.server_always_cheaper_from_rps for c in crossovers if c.server_always_cheaper_from_rps]
            + [t.per_instance_rps for t in servers if t.per_instance_rps]
        )
        top = max([100.0] + [3.0 * m for m in marks])
        rates_rps = [float(r) for r in np.unique(np.concatenate([np.geomspace(0.01, top, 240), marks]))]
    curves = [
        CostCurve(target=name, model=t.pricing.model, monthly_usd=[t.monthly_usd(r, hours) for r in rates_rps])
        for name, t in targets.items()
    ]
    notes = [f"{name}: {t.note}" for name, t in targets.items() if t.note]
    return BreakEven(
        rates_rps=list(rates_rps),
        curves=curves,
        crossovers=crossovers,
        hours_per_month=hours,
        prices_as_of=book.as_of,
        targets=targets,
        notes=notes,
    )


def lambda_cost_per_million(
    memory_mb: float,
    billed_ms: float,
    *,
    region: str = "us-east-1",
    architecture: str = "x86_64",
    book: PriceBook | None = None,
) -> float:
    """USD per million invocations of a function of ``memory_mb`` billed ``billed_ms`` each (the price table's
    GB-second price and request fee; the TUI's cost-against-memory chart uses it)."""
    book = book or PriceBook(load_price_table())
    gb_second, request = book.lambda_rates(region, architecture)
    return 1e6 * (billed_ms / 1000.0 * memory_mb / 1024.0 * gb_second + request)
