"""KPI of a scored KPI set at an operating point: FAR, recall, precision, F1, threshold, counts.

Rules (DESIGN.md section 5): positive = any canonical label other than the pass label; a row is
predicted defect iff ``score > t``; FAR = FP / (FP + TN). At a recall target r the threshold is
the largest t with recall >= r, i.e. just below the k-th highest defect score (k = ceil(r * P)),
so PASS rows tied with that score count as false alarms. At a FAR budget x the operating point is
the highest recall whose FAR <= x, and then the lowest FAR at that recall.

Two exact implementations of the same rules, tested against each other and against sklearn:
- ``at_recall`` / ``at_far``: O(n) order statistics (``np.partition``), for "the KPI" alone;
- ``Curve``: one sort + cumulative sums giving every distinct operating point, for sweeps
  (gap analysis, several targets at once).
The anchor swept every unique score with a full pass each (O(n x unique)) and ignored the target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tao_aoi import labels, path_keys
from tao_aoi.data import changenet_csv
from tao_aoi.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

SCORE = "siamese_score"
INFERENCE_COLUMNS = ("input_path", "object_name", "label", SCORE)
# A recall/FAR target is a percentage typed by a person; 1e-9 absorbs 99.5 * 200 / 100 = 199.00000000000003.
_COUNT_EPS = 1e-9


@dataclass(frozen=True)
class Point:
    """One operating point: predicted defect iff score > threshold."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n_defect(self) -> int:
        return self.tp + self.fn

    @property
    def n_pass(self) -> int:
        return self.fp + self.tn

    @property
    def far_pct(self) -> float:
        return 100.0 * self.fp / self.n_pass

    @property
    def recall_pct(self) -> float:
        # Multiply first: 100 * 199 / 200 is exactly 99.5, 199 / 200 * 100 is not.
        return 100.0 * self.tp / self.n_defect

    @property
    def precision_pct(self) -> float:
        flagged = self.tp + self.fp
        return 100.0 * self.tp / flagged if flagged else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "far_pct": self.far_pct,
            "recall_pct": self.recall_pct,
            "precision_pct": self.precision_pct,
            "f1": self.f1,
            "n_pass": self.n_pass,
            "n_defect": self.n_defect,
            "counts": {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn},
        }


# --------------------------------------------------------------------------- targets -> counts


def _check_classes(n_defect: int, n_pass: int) -> None:
    if n_defect == 0:
        raise UserError("the scored set has no defect rows (every label is PASS), so recall is undefined; "
                        "evaluate on a KPI set that contains defects")
    if n_pass == 0:
        raise UserError("the scored set has no PASS rows, so FAR is undefined; evaluate on a KPI set that "
                        "contains PASS rows")


def defects_needed(recall_pct: float, n_defect: int) -> int:
    """Smallest number of caught defects whose recall reaches ``recall_pct``."""
    if not (0.0 < recall_pct <= 100.0) or math.isnan(recall_pct):
        raise UserError(f"recall target {recall_pct!r}% must be in (0, 100]")
    return min(n_defect, max(1, math.ceil(recall_pct * n_defect / 100.0 - _COUNT_EPS)))


def alarms_allowed(far_pct: float, n_pass: int) -> int:
    """Largest number of false alarms whose FAR stays <= ``far_pct``."""
    if not (0.0 <= far_pct <= 100.0) or math.isnan(far_pct):
        raise UserError(f"FAR target {far_pct!r}% must be in [0, 100]")
    return min(n_pass, math.floor(far_pct * n_pass / 100.0 + _COUNT_EPS))


def _split(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError("scores and positive must be 1-D arrays of the same length")
    return scores, positive


# --------------------------------------------------------------------------- O(n) fast path


def _kth_largest(values: np.ndarray, k: int) -> float:
    return float(np.partition(values, values.size - k)[values.size - k])


def _point_catching(scores: np.ndarray, positive: np.ndarray, pos_scores: np.ndarray, k: int) -> Point:
    """Highest threshold that still catches >= k defects (k = 0: flag nothing)."""
    n_defect = pos_scores.size
    n_pass = scores.size - n_defect
    if k == 0:
        return Point(float(scores.max()), 0, 0, n_pass, n_defect)
    edge = _kth_largest(pos_scores, k)
    tp = int(np.count_nonzero(pos_scores >= edge))
    fp = int(np.count_nonzero(scores >= edge)) - tp
    return Point(float(np.nextafter(edge, -np.inf)), tp, fp, n_pass - fp, n_defect - tp)


def at_recall(scores: np.ndarray, positive: np.ndarray, recall_pct: float) -> Point:
    """Operating point at a recall target in O(n): the threshold is an order statistic."""
    scores, positive = _split(scores, positive)
    pos_scores = scores[positive]
    _check_classes(pos_scores.size, scores.size - pos_scores.size)
    return _point_catching(scores, positive, pos_scores, defects_needed(recall_pct, pos_scores.size))


def at_threshold(scores: np.ndarray, positive: np.ndarray, threshold: float) -> Point:
    """The point a given threshold makes (e.g. one chosen on another set, or the shipped one)."""
    scores, positive = _split(scores, positive)
    flagged = scores > threshold
    tp, fp = int(np.count_nonzero(flagged & positive)), int(np.count_nonzero(flagged & ~positive))
    n_defect = int(positive.sum())
    _check_classes(n_defect, scores.size - n_defect)
    return Point(float(threshold), tp, fp, scores.size - n_defect - fp, n_defect - tp)


def at_far(scores: np.ndarray, positive: np.ndarray, far_pct: float) -> Point:
    """Highest recall with FAR <= far_pct, then the lowest FAR at that recall, in O(n)."""
    scores, positive = _split(scores, positive)
    pos_scores = scores[positive]
    n_pass = scores.size - pos_scores.size
    _check_classes(pos_scores.size, n_pass)
    m = alarms_allowed(far_pct, n_pass)
    if m >= n_pass:
        k = pos_scores.size
    else:
        # Flagging only scores above the (m+1)-th highest PASS score keeps at most m alarms.
        floor = _kth_largest(scores[~positive], m + 1)
        k = int(np.count_nonzero(pos_scores > floor))
    return _point_catching(scores, positive, pos_scores, k)


# --------------------------------------------------------------------------- full curve


class Curve:
    """Every distinct operating point from one sort and cumulative sums.

    ``thresholds`` (ascending) are one value just below the lowest score, then each unique score;
    ``tp[i]`` / ``fp[i]`` count defects / PASS rows scoring above ``thresholds[i]``.
    """

    def __init__(self, scores: np.ndarray, positive: np.ndarray):
        scores, positive = _split(scores, positive)
        uniq, inverse = np.unique(scores, return_inverse=True)
        pos_at = np.bincount(inverse[positive], minlength=uniq.size)
        neg_at = np.bincount(inverse[~positive], minlength=uniq.size)
        self.n_defect = int(pos_at.sum())
        self.n_pass = int(neg_at.sum())
        _check_classes(self.n_defect, self.n_pass)
        self.unique_scores = uniq
        self.thresholds = np.concatenate(([np.nextafter(uniq[0], -np.inf)], uniq))
        self.tp = np.concatenate(([self.n_defect], self.n_defect - np.cumsum(pos_at)))
        self.fp = np.concatenate(([self.n_pass], self.n_pass - np.cumsum(neg_at)))

    def point(self, i: int) -> Point:
        tp, fp = int(self.tp[i]), int(self.fp[i])
        return Point(float(self.thresholds[i]), tp, fp, self.n_pass - fp, self.n_defect - tp)

    def _catching(self, k: int) -> Point:
        if k == 0:
            return self.point(self.thresholds.size - 1)
        # tp is non-increasing: the last candidate still catching k defects sits just below the
        # next unique score, which is the k-th highest defect score; report just below it.
        i = int(np.searchsorted(-self.tp, -k, side="right")) - 1
        p = self.point(i)
        return Point(float(np.nextafter(self.unique_scores[i], -np.inf)), p.tp, p.fp, p.tn, p.fn)

    def at_recall(self, recall_pct: float) -> Point:
        return self._catching(defects_needed(recall_pct, self.n_defect))

    def at_far(self, far_pct: float) -> Point:
        m = alarms_allowed(far_pct, self.n_pass)
        i = int(np.searchsorted(-self.fp, -m, side="left"))  # first (lowest) threshold with fp <= m
        return self._catching(int(self.tp[i]))


# --------------------------------------------------------------------------- reading inference.csv


def _sample_codes(input_path: np.ndarray, object_name: np.ndarray) -> np.ndarray:
    """One int64 per row identifying its sample (normalised input_path + object_name).

    Same identity as ``changenet_csv.sample_keys``, built from factorised codes so a million-row
    set costs one normalisation per unique directory and no per-row string concatenation.
    """
    dir_codes, dirs = changenet_csv.factorize(input_path)
    norm_codes, _ = changenet_csv.factorize([path_keys.normalise(d, ".", ".").rstrip("/") for d in dirs])
    obj_codes, objs = changenet_csv.factorize(object_name)
    return norm_codes[dir_codes] * max(len(objs), 1) + obj_codes


def _number(text: str) -> float:
    """What pandas.to_numeric(errors="coerce") makes of one string: a float, or NaN."""
    try:
        return float("nan") if "_" in text else float(text)
    except ValueError:
        return float("nan")


def read_inference_columns(path: str | Path, pass_label: str = labels.PASS
                           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """inference.csv -> ({column: values}, scores, is_defect) without pandas, refusing anything the KPI
    cannot be computed on.

    Errors name the 1-based CSV line: missing column, non-numeric/NaN/inf score, duplicate sample
    (same input_path + object_name), unreadable label, only one class.
    """
    what = "inference CSV"
    cols = changenet_csv.read_columns(path, INFERENCE_COLUMNS, what=what)
    raw = cols[SCORE]
    try:
        scores = raw.astype(np.float64)
        if any("_" in v for v in raw):  # float() reads 1_000; pandas does not
            raise ValueError
    except ValueError:
        scores = np.array([_number(v) for v in raw], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"{what} {path} line {i + 2}: {SCORE} {raw[i]!r} is not a finite number "
                        f"({bad.size} such row(s)); rerun inference or drop the row")
    keys = _sample_codes(cols["input_path"], cols["object_name"])
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        twin = int(np.flatnonzero(dup & (keys == keys[first]))[1])
        raise UserError(f"{what} {path} lines {first + 2} and {twin + 2}: duplicate sample "
                        f"(input_path {cols['input_path'][first]!r}, object_name {cols['object_name'][first]!r}); "
                        f"keep one row per sample")
    pass_canon = labels.canonical_label(pass_label)
    if not labels.is_valid_canonical(pass_canon):
        raise UserError(f"pass label {pass_label!r} is not a label; use e.g. PASS")
    positive = cols["label"] != pass_canon
    n_defect = int(positive.sum())
    if n_defect == 0:
        raise UserError(f"{what} {path} column 'label': no defect rows (every label is {pass_canon}), so recall is "
                        f"undefined; evaluate on a KPI set that contains defects")
    if n_defect == positive.size:
        found = ", ".join(sorted(set(cols["label"].tolist()))[:5])
        raise UserError(f"{what} {path} column 'label': no {pass_canon} rows (labels: {found}), so FAR is undefined; "
                        f"evaluate on a KPI set with {pass_canon} rows, or name its good-part label (analyze_kpi.py / "
                        f"gap_analysis.py --pass-label)")
    cols[SCORE] = scores
    return cols, scores, np.asarray(positive, dtype=bool)


def read_inference(path: str | Path, pass_label: str = labels.PASS) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``read_inference_columns`` as a DataFrame (analyze_kpi.py)."""
    import pandas as pd

    cols, scores, positive = read_inference_columns(path, pass_label)
    return pd.DataFrame(cols), scores, positive


def per_label(label_col: pd.Series, positive: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, int]]:
    """{label: {total, misclassified, missed}}: missed = defects not flagged (0 for the pass label)."""
    import pandas as pd

    codes, names = pd.factorize(label_col, sort=True)
    wrong = predicted != positive
    total = np.bincount(codes, minlength=len(names))
    misc = np.bincount(codes[wrong], minlength=len(names))
    missed = np.bincount(codes[wrong & positive], minlength=len(names))
    return {str(n): {"total": int(total[i]), "misclassified": int(misc[i]), "missed": int(missed[i])}
            for i, n in enumerate(names)}


def operating_point(scores: np.ndarray, positive: np.ndarray, name: str, target: float) -> Point:
    """The point a contract's ``at`` clause fixes: name is recall_pct or far_pct."""
    if name == "recall_pct":
        return at_recall(scores, positive, target)
    if name == "far_pct":
        return at_far(scores, positive, target)
    raise ValueError(f"no operating point for {name!r}")


def far_at_recalls(scores: np.ndarray, positive: np.ndarray, recall_targets: Sequence[float]) -> dict[str, float]:
    """FAR (%) at a few recall targets: one O(n) order statistic each beats one sort for a handful."""
    return {f"{r:g}": at_recall(scores, positive, r).far_pct for r in recall_targets}
