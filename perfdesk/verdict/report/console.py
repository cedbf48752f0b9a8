"""Rich rendering of a session comparison (`perfdesk compare A B`)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from perfdesk.verdict.compare import Comparison, MetricChange

_SHOWN = [
    ("p50_ms", "p50 ms", "{:.4g}"),
    ("p99_ms", "p99 ms", "{:.4g}"),
    ("throughput_rps", "req/s", "{:.4g}"),
    ("error_rate_pct", "err %", "{:.2g}"),
    ("cost_per_1k_usd", "$/1k", "{:.3g}"),
]
#: metrics where a higher value is better (a rise is shown green)
_HIGHER_IS_BETTER = {"throughput_rps"}


def _cell(change: MetricChange | None, fmt: str, verbose: bool) -> Text:
    if change is None or change.current is None:
        return Text("n/a", style="dim")
    text = Text(fmt.format(change.current))
    if verbose and change.baseline is not None:
        text = Text(f"{fmt.format(change.baseline)}→{fmt.format(change.current)}")
    if change.change_pct is not None and change.change_pct != 0:
        unit = "pt" if change.metric == "error_rate_pct" else "%"
        better = (change.change_pct > 0) == (change.metric in _HIGHER_IS_BETTER)
        style = ("green" if better else "red") if change.significant else "dim"
        text.append(f" {change.change_pct:+.0f}{unit}" + ("*" if change.significant else ""), style=style)
    if verbose and change.p_value is not None:
        text.append(f" p={change.p_value:.2g}", style="dim")
    return text


def comparison_table(result: Comparison, verbose: bool = False) -> Table:
    """One row per trial x target x level: the current value and its change from the baseline; '*' marks a
    change significant at the comparison's alpha (red: worse, green: better). ``verbose`` adds baseline values
    and p-values."""
    table = Table(
        title=f"{result.baseline} → {result.current}",
        caption=f"value in B, change from A; * significant at alpha={result.alpha:g} (p50: Mann-Whitney U;"
        " p99: bootstrap ratio; req/s: completions per window; err: Fisher exact; cost: per-request"
        " or throughput test)",
    )
    for name in ("trial", "level", "target"):
        table.add_column(name, no_wrap=True)  # the identity of a row is never cut; values wrap instead
    for _, title, _ in _SHOWN:
        table.add_column(title)
    for group in result.groups:
        row: list[str | Text] = [group.trial, group.level, group.target]
        cells = {metric: _cell(group.metrics.get(metric), fmt, verbose) for metric, _, fmt in _SHOWN}
        if group.out_of_memory_current[1]:  # the err cell says why: the size is too small (red: newly so)
            cells["error_rate_pct"].append(" out of memory", style="red" if group.newly_out_of_memory else "magenta")
        row += list(cells.values())
        table.add_row(*row)
    return table
