"""Number formatting for the report: no locale separators, and never less precise than the reader needs.

The anchor's report printed 1000 as ``1,000`` inside script code and rounded 0.018 to ``0.02``
beside a 0.02 target. Here every number uses Python's ``format`` (no grouping) with significant
digits, and ``distinct`` adds digits until a value no longer prints like a different one.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

NA = "n/a"


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, sig: int = 4) -> str:
    """``sig`` significant digits, plain digits for large values, ``n/a`` for missing/NaN/inf."""
    if not is_number(x):
        return NA
    if isinstance(x, int):
        return str(x)
    if x == 0:
        return "0"
    s = f"{x:.{sig}g}"
    if "e" in s and abs(x) >= 1:
        s = f"{x:.0f}"
    return s


def distinct(x: Any, others: Iterable[Any], sig: int = 4) -> str:
    """``num(x)`` with as many digits as it takes to differ from every different value in ``others``."""
    if not is_number(x):
        return NA
    rivals = [o for o in others if is_number(o) and o != x]
    for s in range(sig, 18):
        text = num(x, s)
        if all(num(o, s) != text for o in rivals):
            return text
    return repr(float(x))


def exact(x: Any) -> str:
    """Shortest text that reads back to the same float (machine-readable attributes, thresholds)."""
    if not is_number(x):
        return ""
    return str(x) if isinstance(x, int) else repr(float(x))


def signed(x: Any, unit: str = "", sig: int = 3) -> str:
    """``+0.5 pp`` / ``-1.25 pp`` (percentage points when the metric is a percentage)."""
    if not is_number(x):
        return NA
    text = num(abs(x), sig)
    sign = "+" if x > 0 else "-" if x < 0 else "±"
    suffix = " pp" if unit == "%" else ""
    return f"{sign}{text}{suffix}"


def duration(sec: Any) -> str:
    if not is_number(sec) or sec <= 0:
        return NA if not is_number(sec) else "0 s"
    if sec < 60:
        return f"{num(float(sec), 3)} s"
    m, s = divmod(int(round(sec)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def share(part: Any, whole: Any) -> str:
    if not (is_number(part) and is_number(whole)) or whole <= 0:
        return NA
    return f"{num(100.0 * part / whole, 3)}%"


def ratio_pct(x: Any) -> str:
    """A ratio in [0, 1] (metrics.json's far, far_if_fixed) as a percentage."""
    return f"{num(100.0 * x)}%" if is_number(x) else NA
