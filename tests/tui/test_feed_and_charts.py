"""The event buffer (threads in, timer out) and the chart series, without a screen."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from perfdesk.controllers.events import EventBus, LogLine, RequestDone, TargetState
from perfdesk.controllers.target import TargetStatus
from perfdesk.controllers.trials import ConcurrencySpec
from perfdesk.tui.chart_data import ChartData
from perfdesk.tui.live import LiveFeed
from perfdesk.tui.screens.edit_trial import apply_edits
from tests.tui.conftest import DATA


def row(i: int, target: str = "server", trial: str = "t", status: str = "ok") -> dict:
    return {"target": target, "trial": trial, "status": status, "latency_ms": 10.0 + i % 7, "receive": 1000.0 + i}


def test_feed_coalesces_rows_from_many_threads_and_stays_bounded():
    bus = EventBus()
    feed = LiveFeed(max_rows=1_000, max_logs=10)
    bus.subscribe(feed)

    def produce(n: int) -> None:
        for i in range(n):
            bus.emit(RequestDone(row(i)))

    threads = [threading.Thread(target=produce, args=(2_500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(20):
        bus.emit(LogLine("server", f"line {i}"))
    bus.emit(TargetState("server", TargetStatus.READY))
    bus.emit(TargetState("server", TargetStatus.COLD))
    batch = feed.drain()
    assert len(batch.rows) == 1_000 and batch.dropped_rows == 9_000  # bounded; the CSV keeps every row
    assert [line.line for line in batch.logs] == [f"line {i}" for i in range(10, 20)]
    assert batch.states["server"].state is TargetStatus.COLD  # the latest state only
    assert not feed.drain()  # drained


def test_chart_series_from_a_recorded_session():
    path = sorted((DATA / "sessions").iterdir())[0]
    data = ChartData.from_session(path)
    xs, ys = data.latency_series()["server"]
    assert len(xs) == len(ys) > 0 and xs == sorted(xs) and xs[0] == 0.0
    lat, pct = data.cdf_series()["server"]
    assert pct[0] == 0.0 and pct[-1] == 100.0 and lat == sorted(lat)
    assert data.throughput_series()["server"][0] == [1.0, 2.0, 4.0]
    cold, warm = data.cold_warm()["server"]
    assert cold is not None and warm is not None
    assert data.memory_series() == {}  # no memory sweep on a server


def test_chart_data_version_and_distribution_of_latest_trial():
    data = ChartData()
    data.add_rows([row(i, trial="a") for i in range(5)] + [row(0, status="error")])
    v = data.version
    data.add_rows([])
    assert data.version == v  # nothing new: the pane does not redraw
    data.add_rows([row(i, trial="b") for i in range(3)])
    assert len(data.samples["server"]) == 3 and len(data.latency["server"]) == 8
    data.add_summaries([{"trial_kind": "memory", "target": "fn", "level": 1024, "p50_ms": 50.0, "ok": 3}])
    mb, p50, _cost = data.memory_series()["fn"]
    assert mb == [1024.0] and p50 == [50.0]


def test_edit_trial_revalidates_with_the_trial_schema():
    spec = ConcurrencySpec(kind="concurrency", name="c", levels=[1, 2], duration_s=5)
    edited = apply_edits(spec, {"levels": "[1, 8]", "duration_s": "2.5"})
    assert edited.levels == [1, 8] and edited.duration_s == 2.5 and spec.levels == [1, 2]
    with pytest.raises(ValidationError, match="duration_s or requests"):
        apply_edits(spec, {"requests": "100"})
    with pytest.raises(ValidationError, match="levels"):
        apply_edits(spec, {"levels": "[0]"})
