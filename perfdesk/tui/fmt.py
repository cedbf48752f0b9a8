"""Cell formatting shared by the tables."""

from __future__ import annotations

from perfdesk.tui.chart_data import num


def fmt(v, digits: int = 1) -> str:
    """A number with ``digits`` decimals, '-' for blanks and NaN, other values as text."""
    f = num(v)
    if f is None:
        return "-" if v in (None, "") or isinstance(v, float) else str(v)
    return f"{f:.{digits}f}"


def level_text(v) -> str:
    """A level as people write it: 4 not 4.0; blank for whole-trial rows."""
    f = num(v)
    if f is None:
        return "" if v in (None, "") or isinstance(v, float) else str(v)
    return f"{f:g}"
