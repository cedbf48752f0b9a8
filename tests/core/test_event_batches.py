"""Rows in batches (the event-driven load generator's RequestsDone): subscribers that take batches get them whole,
every other subscriber one RequestDone per row, and the session store writes each batch as CSV rows at once."""

import csv

from perfdesk.controllers.events import EventBus, RequestDone, RequestsDone, takes_batches
from perfdesk.controllers.results import REQUEST_COLUMNS, RequestResult, request_row
from perfdesk.controllers.session import SessionStore
from perfdesk.tui.live import LiveFeed


def _rows(n):
    return [
        request_row(RequestResult(actual_send=1.0 + i, receive=1.5 + i), seq=i, level=4, session="s") for i in range(n)
    ]


def test_batch_reaches_every_subscriber_in_its_form(tmp_path):
    bus = EventBus()
    singles, batches = [], []
    bus.subscribe(singles.append)
    bus.subscribe(takes_batches(lambda e: batches.append(e)))
    feed = LiveFeed()
    bus.subscribe(feed)
    store = SessionStore(tmp_path, "b")
    bus.subscribe(store.handle)
    rows = _rows(5)
    bus.emit(RequestsDone(rows))
    bus.emit(RequestDone(_rows(6)[5]))
    assert [e.row["seq"] for e in singles] == [0, 1, 2, 3, 4, 5] and all(isinstance(e, RequestDone) for e in singles)
    assert len(batches) == 2 and batches[0].rows == rows
    assert [r["seq"] for r in feed.drain().rows] == [0, 1, 2, 3, 4, 5]
    with open(store.path / "requests.csv", newline="") as fh:
        written = list(csv.DictReader(fh))  # flushed at once: readable before the store closes
    assert [int(r["seq"]) for r in written] == [0, 1, 2, 3, 4, 5]
    assert list(written[0]) == REQUEST_COLUMNS
    assert written[0]["http_status"] == "" and float(written[0]["latency_ms"]) == 500.0
    store.close("completed")
    assert store.requests.rows == 6
