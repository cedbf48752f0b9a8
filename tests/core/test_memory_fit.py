"""What a memory sweep found, in words: the smallest size that worked and the sizes that ran out of memory, from
trials.csv rows (live summaries or the file's records)."""

import math

import pytest

from perfdesk.controllers.memory_fit import memory_fits


def level(mb, status, *, target="fn", trial="memory", workload="wl", kind="memory"):
    return {"workload": workload, "trial": trial, "trial_kind": kind, "target": target, "level": mb, "status": status}


@pytest.mark.parametrize(
    ("levels", "text"),
    [
        (
            [(1024, "out of memory"), (1536, "completed"), (3008, "completed")],
            "smallest memory that works: 1,536 MB; out of memory at 1,024 MB",
        ),
        (
            [(768, "out of memory"), ("1024", "out of memory"), (1769.0, "completed")],
            "smallest memory that works: 1,769 MB; out of memory at 768 MB, 1,024 MB",
        ),
        ([(1024, "completed"), (3008, "completed")], "smallest memory that works: 1,024 MB (the smallest size tried)"),
        ([(512, "failed"), (1024, "completed")], "smallest memory that works: 1,024 MB"),
        ([(256, "out of memory"), (512, "out of memory")], "no size tried works: out of memory at 256 MB, 512 MB"),
        ([(256, "failed"), (512, "interrupted")], "no size tried completed"),
    ],
)
def test_fit_text(levels, text):
    (fit,) = memory_fits([level(mb, status) for mb, status in levels])
    assert fit.text == text
    assert fit.line == f"wl/memory on fn: {text}"


def test_one_fit_per_sweep_and_target_later_rows_replace_earlier():
    rows = [
        level(1024, "out of memory", target="a"),
        level(1024, "completed", target="b"),
        level(1536, "completed", target="a"),
        level(1024, "completed", kind="warm", trial="warm"),  # not a sweep
        level("", "skipped", target="c"),  # a skipped sweep has no level
        level(1024, "completed", target="a"),  # the desk reran the level: it worked this time
        {**level(2048, "completed", target="d"), "workload": math.nan},  # pandas reads a blank cell as NaN
    ]
    fits = memory_fits(rows)
    assert [f.target for f in fits] == ["a", "b", "d"]
    assert fits[0].works_mb == 1024 and fits[0].out_of_memory_mb == ()
    assert fits[2].line == "memory on d: smallest memory that works: 2,048 MB (the smallest size tried)"
