"""Charts pane (plotext through textual-plotext): latency over time, latency CDF, throughput against concurrency,
cold against warm, and latency (and cost, when a cost model is present) against function memory.

The pane never redraws per request: the app calls :meth:`ChartsPane.show` from its timer, and only the visible
chart is rebuilt, only when the data's version or the visible tab changed.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import TabbedContent, TabPane
from textual_plotext import PlotextPlot

from perfdesk.tui.chart_data import ChartData

CHARTS = (
    ("latency", "Latency/time"),
    ("cdf", "CDF"),
    ("throughput", "Thr/concurrency"),
    ("coldwarm", "Cold/warm"),
    ("memory", "Memory"),
)


class ChartsPane(Vertical):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data = ChartData()
        self._drawn: tuple[int, str] | None = None

    def compose(self) -> ComposeResult:
        with TabbedContent(id=f"{self.id or 'charts'}-tabs"):
            for key, title in CHARTS:
                with TabPane(title, id=f"{self.id or 'charts'}-{key}"):
                    yield PlotextPlot(id=f"{self.id or 'charts'}-plot-{key}", classes="chart")

    @property
    def active(self) -> str:
        active = self.query_one(TabbedContent).active or ""
        return active.rsplit("-", 1)[-1] or "latency"

    def show(self, data: ChartData | None = None) -> None:
        """Draw ``data`` (or the data given before) if it or the visible tab changed since the last draw."""
        if data is not None:
            self.data = data
        state = (self.data.version, self.active)
        if state == self._drawn:
            return
        self._drawn = state
        key = self.active
        plot = self.query_one(f"#{self.id or 'charts'}-plot-{key}", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        getattr(self, f"_draw_{key}")(plt)
        plot.refresh()

    def cycle(self, step: int) -> None:
        """Show the next (step 1) or previous (step -1) chart."""
        keys = [k for k, _ in CHARTS]
        nxt = keys[(keys.index(self.active) + step) % len(keys)]
        self.query_one(TabbedContent).active = f"{self.id or 'charts'}-{nxt}"

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.show()

    # -- one method per chart ---------------------------------------------------------------------------------
    def _draw_latency(self, plt) -> None:
        series = self.data.latency_series()
        plt.title("Latency over time (ms, successful requests)")
        plt.xlabel("seconds since the first request")
        if not series:
            plt.title("Latency over time: no requests yet (r runs a trial)")
            return
        for target, (xs, ys) in series.items():
            plt.scatter(xs, ys, label=target, marker="braille")

    def _draw_cdf(self, plt) -> None:
        series = self.data.cdf_series()
        plt.title("Latency distribution of the latest trial per target (CDF)")
        plt.xlabel("latency ms")
        plt.ylabel("% of requests")
        if not series:
            plt.title("CDF: no requests yet")
            return
        for target, (xs, ys) in series.items():
            plt.plot(xs, ys, label=target, marker="braille")

    def _draw_throughput(self, plt) -> None:
        series = self.data.throughput_series()
        plt.title("Throughput against concurrency (requests/s)")
        plt.xlabel("clients in flight")
        if not series:
            plt.title("Throughput: no concurrency trial finished yet")
            return
        for target, (xs, ys) in series.items():
            plt.plot(xs, ys, label=target, marker="dot")
        levels = sorted({x for xs, _ in series.values() for x in xs})
        plt.xticks(levels, [f"{x:g}" for x in levels])

    def _draw_coldwarm(self, plt) -> None:
        pairs = self.data.cold_warm()
        plt.title("Cold start against warm request (median ms)")
        if not pairs:
            plt.title("Cold/warm: no cold or warm trial finished yet")
            return
        names = list(pairs)
        cold = [pairs[n][0] or 0.0 for n in names]
        warm = [pairs[n][1] or 0.0 for n in names]
        plt.multiple_bar(names, [cold, warm], labels=["cold p50", "warm p50"])

    def _draw_memory(self, plt) -> None:
        series = self.data.memory_series()
        plt.title("Functions: latency (and cost) against memory size")
        plt.xlabel("memory MB")
        if not series:
            plt.title("Memory: no memory sweep finished yet (functions only)")
            return
        for target, (mb, p50, cost) in series.items():
            plt.plot(mb, p50, label=f"{target} p50 ms", marker="dot")
            if any(c is not None for c in cost):
                plt.plot(mb, [c or 0.0 for c in cost], label=f"{target} $/1M", yside="right", marker="dot")
