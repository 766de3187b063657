"""The threshold that ships with the model (``eval_margin``), placed with a margin on both sides.

The contract's operating point (kpi.py) is the largest threshold keeping the recall target: one
float step below the lowest defect the target needs. As a KPI figure that is exact; as the deployed
threshold it has no margin: a defect on the line scoring a hair lower is a miss. Every threshold in
the gap between that defect and the next lower score flags exactly the same KPI rows, so the shipped
threshold sits in the middle of that gap, measured in logit space when both ends are probabilities
(a gap between 0.990 and 0.999 is centred at 0.9968, not 0.9945), else in score space.

Rule (``RULE``): the midpoint of the contract's gap. If that gap is too narrow to keep
``defaults.SHIP_CLEARANCE`` away from every KPI score (two scores 1e-7 apart), the threshold moves
down to the next gap that is wide enough: it then flags more rows (recall can only rise; FAR rises
if the rows it passes are PASS) and ``kpi`` records what that costs. The margins say how far the
nearest defect above and the nearest PASS below sit: the score change that flips a part.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from tao_aoi import defaults
from tao_aoi.analysis import binomial

RULE = ("midpoint of the gap the contract's operating point sits in (between the lowest defect it needs "
        "and the next lower score), in logit space for probabilities, else in score space; the next lower gap "
        f"if that one cannot keep {defaults.SHIP_CLEARANCE:g} from every KPI score")


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _clear(t: float, lo: float | None, hi: float | None, clearance: float) -> bool:
    return (lo is None or t - lo >= clearance) and (hi is None or hi - t >= clearance)


def _outside(edge: float, clearance: float, sign: float) -> float:
    """A threshold beyond the lowest or highest score: far enough for the clearance, even at large scores."""
    return edge + sign * max(2.0 * clearance, abs(edge) * 1e-12)


def place(lo: float | None, hi: float | None, clearance: float) -> tuple[float, str] | None:
    """A threshold strictly inside (lo, hi) clear of both ends, and how it was placed; None if none is."""
    if hi is None:
        return _outside(lo, clearance, +1.0), "above the highest score"
    if lo is None:
        return _outside(hi, clearance, -1.0), "below the lowest score"
    tries = []
    if 0.0 < lo < hi < 1.0:
        tries.append((_sigmoid(0.5 * (_logit(lo) + _logit(hi))), "logit midpoint"))
    tries.append((lo + 0.5 * (hi - lo), "midpoint"))
    for t, how in tries:
        if lo < t < hi and _clear(t, lo, hi, clearance):
            return t, how
    return None


def ship(scores: np.ndarray, positive: np.ndarray, contract_threshold: float,
         clearance: float = defaults.SHIP_CLEARANCE) -> dict[str, Any]:
    """{threshold, rule, placed, moved_gaps, margin{to_defect, to_pass}, kpi{...}} for the deployed model."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    uniq = np.unique(scores)
    j = int(np.searchsorted(uniq, contract_threshold, side="right"))  # first score the contract flags
    moved = 0
    while True:
        lo = float(uniq[j - 1]) if j > 0 else None
        hi = float(uniq[j]) if j < uniq.size else None
        got = place(lo, hi, clearance)
        if got is not None:
            break
        j -= 1  # flag one more distinct score: recall never falls, FAR may rise
        moved += 1
    t, how = got
    flagged = scores > t
    defects, passes = scores[positive], scores[~positive]
    above = defects[defects > t]
    below = passes[passes <= t]
    tp, fp = int(np.count_nonzero(flagged & positive)), int(np.count_nonzero(flagged & ~positive))
    n_def, n_pass = int(positive.sum()), int((~positive).sum())
    return {
        "threshold": float(t),
        "rule": RULE,
        "placed": how,
        "contract_threshold": float(contract_threshold),
        "moved_gaps": moved,
        "margin": {"to_defect": float(above.min() - t) if above.size else None,
                   "to_pass": float(t - below.max()) if below.size else None},
        "clearance": clearance,
        "kpi": {"far_pct": 100.0 * fp / n_pass if n_pass else None,
                "recall_pct": 100.0 * tp / n_def if n_def else None,
                "counts": {"tp": tp, "fp": fp, "tn": n_pass - fp, "fn": n_def - tp},
                **(binomial.far_figures(fp, n_pass) if n_pass else {})},
    }


def margin_warning(dep: dict[str, Any] | None, small: float = defaults.SHIP_SMALL_MARGIN) -> str | None:
    """One line when the shipped threshold sits close to a KPI part on either side; else None."""
    if not dep:
        return None
    m = dep.get("margin") or {}
    parts = []
    if isinstance(m.get("to_defect"), (int, float)) and m["to_defect"] < small:
        parts.append(f"sits {m['to_defect']:.3g} below the lowest caught defect (a defect scoring that much lower "
                     f"on the line is missed)")
    if isinstance(m.get("to_pass"), (int, float)) and m["to_pass"] < small:
        parts.append(f"sits {m['to_pass']:.3g} above the highest passed PASS part (that much higher and it is a "
                     f"false alarm)")
    moved = dep.get("moved_gaps") or 0
    if moved:
        parts.append(f"was moved {moved} score gap(s) below the contract's operating point to keep "
                     f"{dep.get('clearance', defaults.SHIP_CLEARANCE):g} from every KPI score")
    if not parts:
        return None
    return (f"small margin: the shipped threshold {dep['threshold']!r} " + "; ".join(parts)
            + f" (warning below {small:g}); more KPI defects near the boundary, or a model that separates them "
              f"further, widen it")
