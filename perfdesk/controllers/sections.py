"""The profile sections the verdict reads: ``[prices]`` and ``[thresholds]``.

They are validated with the rest of the profile (so a typo there is an exit 2 before any run), and defined here, in
the core, so the profile loader never imports the verdict (:mod:`perfdesk.verdict.cost` prices sessions with them,
:mod:`perfdesk.verdict.compare` gates with them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LambdaRate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gb_second: float | None = Field(None, ge=0, description="USD per GB-second of billed duration.")
    request: float | None = Field(None, ge=0, description="USD per request.")


class TargetPrice(BaseModel):
    """How to price one target of the profile (by target name)."""

    model_config = ConfigDict(extra="forbid")
    hourly_usd: float | None = Field(None, ge=0, description="Hourly price of this server (wins over instance_type).")
    instance_type: str | None = Field(
        None, description="Price this server as this EC2 instance type (e.g. a local server as 'c5.xlarge')."
    )
    region: str | None = Field(None, description="Region whose prices apply to this target.")
    architecture: str | None = Field(None, description="Function architecture: x86_64 or arm64.")


class SnapStartRate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cache_gb_second: float = Field(ge=0, description="USD per GB-second of a version's snapshot cache.")
    restore_gb: float = Field(ge=0, description="USD per GB restored (each SnapStart cold start).")


class PricesSection(BaseModel):
    """The profile's optional ``[prices]`` section, merged key by key over the shipped prices.json."""

    model_config = ConfigDict(extra="forbid")
    region: str | None = Field(None, description="Default region of targets that do not name one.")
    hours_per_month: float | None = Field(None, gt=0, description="Hours in a month of break-even figures (730).")
    bill_init: bool | None = Field(None, description="Bill a cold function's INIT phase (Lambda does since 2025-08).")
    cold_start_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Assumed share of function requests that are cold at a sustained rate (default: measured).",
    )
    # keys of these two are region -> architecture / instance type
    lambda_: dict[str, dict[str, LambdaRate]] | None = Field(None, alias="lambda")
    ec2: dict[str, dict[str, float]] | None = Field(None, description="region -> instance type -> USD per hour.")
    snapstart: dict[str, SnapStartRate] | None = Field(
        None, description="region -> SnapStart prices (the snapshot cache per GB-second, each restore per GB)."
    )
    targets: dict[str, TargetPrice] | None = Field(None, description="Per-target pricing, by target name.")


class Thresholds(BaseModel):
    """The profile's optional ``[thresholds]`` section for ``--baseline`` runs.

    With no section every default below applies; with a section only the metrics it names are checked.
    """

    model_config = ConfigDict(extra="forbid")
    p50_increase_pct: float | None = Field(None, ge=0, description="Fail when p50 latency rises more than this %.")
    p99_increase_pct: float | None = Field(None, ge=0, description="Fail when p99 latency rises more than this %.")
    throughput_drop_pct: float | None = Field(None, ge=0, description="Fail when throughput drops more than this %.")
    error_rate_increase_pct: float | None = Field(
        None, ge=0, description="Fail when the error rate rises more than this many percentage points."
    )
    cost_increase_pct: float | None = Field(None, ge=0, description="Fail when cost per 1k rises more than this %.")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="Significance level a change must reach to count.")

    @classmethod
    def defaults(cls) -> Thresholds:
        return cls(
            p50_increase_pct=10,
            p99_increase_pct=10,
            throughput_drop_pct=10,
            error_rate_increase_pct=1,
            cost_increase_pct=10,
        )

    @classmethod
    def resolve(cls, value: Thresholds | dict[str, Any] | None) -> Thresholds:
        if isinstance(value, Thresholds):
            return value
        return cls.model_validate(value) if value else cls.defaults()
