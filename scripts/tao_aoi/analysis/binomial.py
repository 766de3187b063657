"""How well a count of false alarms pins the FAR: its resolution and an exact 95% interval.

A FAR is k false alarms out of n PASS rows, so it moves in steps of 100 / n percent (the
resolution) and, read as an estimate of the rate on the line, carries the exact binomial
(Clopper-Pearson) interval: the rates p for which seeing k or fewer (upper bound) or k or more (lower
bound) alarms keeps a tail probability of at least (1 - confidence) / 2. With 66 PASS rows one alarm
is 1.5 points, and zero alarms still allow a true FAR up to 5.4% at 95%.

Pure Python (math only): the report, pre-flight and the state-side readers use it without numpy or
scipy (importing scipy.stats costs seconds on a loaded host). The regularised incomplete beta is the
continued fraction of Numerical Recipes (modified Lentz), inverted by bisection; tests hold it to
``scipy.stats.beta.ppf``.
"""
from __future__ import annotations

import math

from tao_aoi import defaults

CONFIDENCE = defaults.FAR_CONFIDENCE
_EPS = 1e-15
_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (converges for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q, by bisection (I_x is increasing in x) to float resolution."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact two-sided interval (ratios in [0, 1]) of a binomial proportion after k successes in n trials."""
    if not (isinstance(n, int) and isinstance(k, int)) or n < 1 or not 0 <= k <= n:
        raise ValueError(f"need integers 0 <= k <= n, n >= 1 (got k={k!r}, n={n!r})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    tail = (1.0 - confidence) / 2.0
    # The end points have closed forms; the interior ones are beta quantiles.
    lower = 0.0 if k == 0 else (tail ** (1.0 / n) if k == n else beta_ppf(tail, k, n - k + 1))
    upper = 1.0 if k == n else (1.0 - tail ** (1.0 / n) if k == 0 else beta_ppf(1.0 - tail, k + 1, n - k))
    return lower, upper


def interval_pct(k: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """``clopper_pearson`` in percent, as the JSON files carry it: [low, high]."""
    lo, hi = clopper_pearson(k, n, confidence)
    return [100.0 * lo, 100.0 * hi]


def resolution_pct(n: int) -> float:
    """One event out of n, in percent: the smallest step a rate measured on n rows can take."""
    return 100.0 / n


def far_figures(fp: int, n_pass: int) -> dict[str, object]:
    """The uncertainty keys every FAR carries (metric_result.json, calibrated, holdout)."""
    return {"far_resolution_pct": resolution_pct(n_pass), "far_ci95_pct": interval_pct(fp, n_pass)}


def recall_figures(tp: int, n_defect: int) -> dict[str, object]:
    return {"recall_resolution_pct": resolution_pct(n_defect), "recall_ci95_pct": interval_pct(tp, n_defect)}


def alarms_within(operator: str, target_pct: float, n_pass: int) -> int | None:
    """The most false alarms out of n_pass that still meet ``FAR <op> target``; None if none does
    (e.g. ``FAR < 0``). ``FAR < 0.5%`` on 66 PASS rows is 0: the target means zero false alarms."""
    best = None
    # FAR = 100 k / n is monotonic in k: the largest k meeting the bound, found exactly on integers.
    if operator in ("<", "<="):
        k = math.floor(target_pct * n_pass / 100.0 + 1e-9)
        k = min(max(k, -1), n_pass)
        while k >= 0 and not _meets(100.0 * k / n_pass, operator, target_pct):
            k -= 1
        best = k if k >= 0 else None
    return best


def _meets(value: float, operator: str, target: float) -> bool:
    return value < target if operator == "<" else value <= target


def zero_alarm_rows_needed(target_pct: float, confidence: float = CONFIDENCE) -> int | None:
    """PASS rows needed before even zero false alarms put the interval's upper bound below the target
    (FAR < target shown at ``confidence``, two-sided): smallest n with 1 - tail^(1/n) < target."""
    if not 0.0 < target_pct < 100.0:
        return None
    tail = (1.0 - confidence) / 2.0
    p = target_pct / 100.0
    n = max(1, math.ceil(math.log(tail) / math.log1p(-p)))
    while 1.0 - tail ** (1.0 / n) >= p:
        n += 1
    while n > 1 and 1.0 - tail ** (1.0 / (n - 1)) < p:
        n -= 1
    return n


def resolution_note(operator: str, target_pct: float, n_pass: int, what: str) -> str | None:
    """One sentence when a FAR target is at or below what ``n_pass`` PASS rows can resolve; else None."""
    if operator not in ("<", "<=") or n_pass < 1:
        return None
    step = resolution_pct(n_pass)
    allowed = alarms_within(operator, target_pct, n_pass)
    if allowed is None:
        return f"{what} has {n_pass} PASS rows: no false-alarm count meets FAR {operator} {target_pct:g}%"
    if allowed > 0:
        return None
    need = zero_alarm_rows_needed(target_pct)
    more = (f"; even zero false alarms show FAR {operator} {target_pct:g}% with 95% confidence only from "
            f"{need} PASS rows" if need else "")
    return (f"{what} has {n_pass} PASS rows, so one false alarm is {step:.3g}% and FAR {operator} {target_pct:g}% "
            f"means zero false alarms{more}")
