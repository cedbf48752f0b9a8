"""The verdict in words, shared by the desk, the headless summary and the report (plain strings, no markup).

:func:`verdict_lines` says, for one session: what each target sustains under its SLO (capacity trials), where each
server becomes cheaper than each function and on which basis (equal service: both measured under the same p99
bound; otherwise saturation throughput, said so), the function's cold-start share at that rate, and which results
are emulations (a local server, the local Lambda emulator) wherever they are priced.
"""

from __future__ import annotations

import math

from perfdesk.verdict.cost import FUNCTION, SERVER, BreakEven, Crossover, TargetCost, instances_needed


def per_month(rate_rps: float, hours_per_month: float) -> str:
    """A sustained rate as requests a month, for people: '76.8 million'."""
    n = rate_rps * 3600.0 * hours_per_month
    for size, word in ((1e9, "billion"), (1e6, "million")):
        if n >= size:
            return f"{n / size:.1f} {word}"
    return f"{n:,.0f}"


def capacity_lines(result: BreakEven) -> list[str]:
    """What each target sustains under its SLO, one line each (targets with a capacity trial)."""
    lines = []
    for t in result.targets.values():
        if t.capacity is None:
            continue
        line = "Capacity: " + t.capacity.line()
        if t.pricing.model == SERVER and t.capacity.rps and t.pricing.hourly_usd is not None:
            per_1k = t.pricing.hourly_usd / (t.capacity.rps * 3600.0) * 1000.0
            line += f"; ${per_1k:.4g} per 1k inferences per instance used to that rate"
        lines.append(line + ".")
    return lines


def _basis(c: Crossover) -> str:
    if c.equal_service:
        assert c.server_capacity is not None
        return f"At equal service (p99 <= {c.server_capacity.slo_p99_ms:g} ms for both)"
    if c.server_capacity is not None:
        slo = c.server_capacity.slo_p99_ms
        if c.function_capacity is None:
            return f"With {c.server} at p99 <= {slo:g} ms ({c.function} has no capacity trial: not equal service)"
        if c.function_capacity.rps is None:
            return f"With {c.server} at p99 <= {slo:g} ms ({c.function} met no rate under its bound)"
        return (
            f"With {c.server} at p99 <= {slo:g} ms ({c.function}'s capacity trial used "
            f"p99 <= {c.function_capacity.slo_p99_ms:g} ms: not equal service)"
        )
    return f"Not at equal service ({c.server_basis})"


def crossover_line(c: Crossover, server: TargetCost, hours: float) -> str:
    """One server x function pair: where the server becomes cheaper, on which basis, and with what assumptions."""
    source = c.cold_fraction_source
    cold = f"assuming {c.function_cold_start_fraction:.1%} of {c.function}'s requests start cold " + (
        f"({source})" if source == "assumed" else f"[{source}]"
    )
    if c.break_even_rps is None:
        return f"No break-even between {c.server} and {c.function}: {c.note}. {_basis(c)}."
    line = (
        f"{_basis(c)}: the server {c.server} becomes cheaper than {c.function} above {c.break_even_rps:.1f} req/s "
        f"({per_month(c.break_even_rps, hours)} req/month)"
    )
    if c.monthly_usd_at_break_even is not None:
        line += f" (there each costs ${c.monthly_usd_at_break_even:,.0f}/month)"
    per = server.per_instance_rps
    if per:
        line += f"; servers needed = ceil(rate / {per:g} req/s), each ${server.pricing.hourly_usd:g}/h"
    always = c.server_always_cheaper_from_rps
    if always is not None and not math.isclose(always, c.break_even_rps):
        line += f"; just past each full instance {c.function} wins back, until {always:.1f} req/s"
    elif c.note:
        line += f"; {c.note}"
    line += f"; {cold}"
    f = c.function_capacity
    if f is not None and f.rps is not None and f.rps < c.break_even_rps:
        line += (
            f"; note {c.function} sustained only {f.rps:g} req/s under its SLO with its concurrency limit "
            "(beyond that it needs a higher limit)"
        )
    return line + "."


def example_line(c: Crossover, server: TargetCost, function: TargetCost, hours: float) -> str | None:
    """The two monthly bills at a rate past the break-even (twice it), as steps of servers: a figure to check."""
    if c.break_even_rps is None or not server.per_instance_rps:
        return None
    rate = 2.0 * c.break_even_rps
    n = instances_needed(rate, server.per_instance_rps)
    s, fn = server.monthly_usd(rate, hours), function.monthly_usd(rate, hours)
    if s is None or fn is None:
        return None
    return (
        f"At {rate:.1f} req/s: {n} x {c.server} ${s:,.0f}/month against {c.function} ${fn:,.0f}/month "
        f"({c.function_cold_start_fraction:.1%} cold)."
    )


def emulation_lines(result: BreakEven) -> list[str]:
    """Every priced target that is a local stand-in, labelled an emulation."""
    return [
        f"EMULATION: {name} is {t.pricing.emulation}; its prices are an estimate of the real thing, not a bill."
        for name, t in result.targets.items()
        if t.pricing.emulation
    ]


def verdict_lines(result: BreakEven) -> list[str]:
    """The break-even in words: capacities, one line per server x function pair (or why there is none), the
    saturation of servers without a capacity trial, the emulations, then the notes."""
    hours = result.hours_per_month
    servers = [n for n, t in result.targets.items() if t.pricing.model == SERVER]
    functions = [n for n, t in result.targets.items() if t.pricing.model == FUNCTION]
    lines = capacity_lines(result)
    if not servers or not functions:
        have = "a server" if servers else ("a function" if functions else "no target")
        lines.append(
            f"No break-even: the session has {have} only; it needs both a server and a function target "
            "measured in the same session."
        )
    for c in result.crossovers:
        server, function = result.targets[c.server], result.targets[c.function]
        lines.append(crossover_line(c, server, hours))
        example = example_line(c, server, function, hours)
        if example:
            lines.append(example)
    for name, target in result.targets.items():
        if target.pricing.model == SERVER and target.saturation_rps:
            lines.append(f"{name} saturates at {target.saturation_rps:.1f} req/s per instance (whatever its latency).")
    lines += emulation_lines(result)
    lines += [f"Note: {n}" for n in result.notes]
    lines.append(f"Month = {hours:g} h; prices as of {result.prices_as_of} (editable, overridable by [prices]).")
    return lines
