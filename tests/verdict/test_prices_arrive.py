"""Prices that arrive: from a profile, through each target's describe() into the manifest, to the cost model.

The targets are the real classes, built from a real profile file (nothing deployed: describe() says what the target
is and how it is billed before it exists), and their facts are the manifest's as Experiment.open writes them."""

from __future__ import annotations

import json

import pytest

from perfdesk.controllers.profile import load_profile
from perfdesk.controllers.target import TargetContext, target_class
from perfdesk.verdict.cost import FUNCTION, SERVER, PriceBook, load_price_table, target_pricing, trial_costs
from perfdesk.verdict.session_data import load_session
from tests.verdict.synth import SynthTarget, write_session

PROFILE = """
[[targets]]
name = "vm"
kind = "ec2"
instance_type = "c5.2xlarge"

[[targets]]
name = "vm-own"
kind = "ec2"
instance_type = "c5.2xlarge"
hourly_price = 0.25

[[targets]]
name = "box"
kind = "ssh"
host = "gpu-box"
instance_type = "g4dn.xlarge"

[[targets]]
name = "box-own"
kind = "ssh"
host = "gpu-box"
hourly_price = 0.8

[[targets]]
name = "server"
kind = "local-server"
instance_type = "c5.xlarge"

[[targets]]
name = "fn"
kind = "local-lambda"
memory_mb = 1024

[[workloads]]
name = "resnet50"
model = "resnet50"

[[trials]]
kind = "warm"
count = 3
"""

TABLE = load_price_table()
EC2 = TABLE["ec2"]["us-east-1"]


def _described(tmp_path, extra: str = "") -> tuple[dict, dict]:
    """Load the profile and describe() every target as the experiment does; returns (raw profile, facts by name)."""
    path = tmp_path / "p.toml"
    path.write_text(PROFILE + extra)
    profile = load_profile(path)
    ctx = TargetContext(session_id="s", emit=lambda event: None, work_dir=str(tmp_path))
    facts = {s.name: target_class(s.kind)(s, ctx).describe() for s in profile.targets}
    return profile.raw, json.loads(json.dumps(facts, default=str))  # as the manifest stores them


def _session(tmp_path, extra: str = ""):
    raw, facts = _described(tmp_path, extra)
    targets = [
        SynthTarget(name, f["kind"], 20.0, memory_mb=1024, describe={k: v for k, v in f.items() if k != "name"})
        for name, f in facts.items()
    ]
    path = write_session(tmp_path / "session", targets=targets, prices=raw.get("prices"))
    return load_session(path)


def test_every_server_kind_arrives_priced_and_the_emulations_say_so(tmp_path):
    session = _session(tmp_path)
    book = PriceBook.for_session(session)
    p = {name: target_pricing(session, name, book) for name in ("vm", "vm-own", "box", "box-own", "server", "fn")}
    assert p["vm"].hourly_usd == EC2["c5.2xlarge"] and "c5.2xlarge" in p["vm"].price_source
    assert p["vm-own"].hourly_usd == 0.25 and "hourly_price" in p["vm-own"].price_source
    assert p["box"].hourly_usd == EC2["g4dn.xlarge"]
    assert p["box-own"].hourly_usd == 0.8
    assert p["server"].hourly_usd == EC2["c5.xlarge"] and p["server"].model == SERVER
    assert p["fn"].model == FUNCTION and p["fn"].priced
    # the local stand-ins are labelled emulations; the cloud and SSH targets are not
    assert {n for n, x in p.items() if x.emulation} == {"server", "fn"}
    assert p["server"].label.startswith("EMULATION: a local server")
    assert "local Lambda emulator" in p["fn"].label and "priced as AWS Lambda" in p["fn"].label
    # and every server's trials have a cost from its wall time
    costs = [c for c in trial_costs(session, book) if c.trial == "warm"]
    assert all(c.cost_usd is not None and c.cost_usd > 0 for c in costs)
    by = {c.target: c for c in costs}
    assert by["vm"].cost_usd == pytest.approx(EC2["c5.2xlarge"] * by["vm"].duration_s / 3600)


def test_profile_prices_win_in_order(tmp_path):
    extra = """
[prices.ec2.us-east-1]
"c5.2xlarge" = 0.3

[prices.targets.box]
hourly_usd = 0.5

[prices.targets.server]
instance_type = "c5.2xlarge"
"""
    session = _session(tmp_path, extra)
    book = PriceBook.for_session(session)
    # the profile's own table entry reaches an EC2 target priced from the table ...
    assert target_pricing(session, "vm", book).hourly_usd == 0.3
    # ... but not one with its own hourly_price
    assert target_pricing(session, "vm-own", book).hourly_usd == 0.25
    assert target_pricing(session, "box", book).hourly_usd == 0.5
    server = target_pricing(session, "server", book)
    assert server.hourly_usd == 0.3 and server.instance_type == "c5.2xlarge"


def test_an_unpriced_server_says_how_to_price_it(tmp_path):
    path = write_session(tmp_path / "s", targets=[SynthTarget("srv", "local-server", 20.0)])
    session = load_session(path)
    pricing = target_pricing(session, "srv", PriceBook.for_session(session))
    assert pricing.hourly_usd is None
    assert "hourly_price or instance_type on the target" in pricing.note
    assert "[prices.targets.srv] hourly_usd" in pricing.note


@pytest.mark.parametrize("name", ["local.toml", "nightly.toml"])
def test_the_shipped_local_profiles_price_their_server(name):
    from tests.conftest import ROOT

    profile = load_profile(ROOT / "profiles" / name)
    server = next(t for t in profile.targets if t.kind == "local-server")
    assert (
        server.instance_type
        or server.hourly_price is not None
        or (profile.raw.get("prices") or {}).get("targets", {}).get(server.name)
    )
