"""Which defects pin the operating threshold, and what fixing them would buy (the RCA's verdict).

At a recall target r the operating threshold sits just below the k-th highest defect score
(k = ``kpi.defects_needed``; ties in score ranked by CSV order), and every PASS row scoring at or
above it is a false alarm (kpi.py's rule). The defect of rank k *pins* it. Fixing a sample means
the model scores it above every other row; the KPI set and the recall target stay as they are (at
r = 100% that is the same as removing it). Fixing the pinning defect lets the threshold rise to just
below the next defect up (rank k-1), so the PASS rows scoring in between stop being false alarms;
then rank k-1 pins it, and so on. The limiting samples are those defects, ranks k, k-1, ..., each with

- ``pinned_false_alarms``: PASS rows scoring >= it and below the next defect up, i.e. what fixing it
  frees once the samples listed before it are fixed (0 for the first of a run of tied scores: the
  next one still pins); ``pinned_share`` splits a tied run's total evenly over its members;
- ``false_alarms_if_fixed`` / ``far_if_fixed``: with it and every sample listed before it fixed.

Fixing the first j listed is the best any j fixes can do (fixing a defect above the pinning one
never moves the threshold; fixing a miss the target already allows, below it, does what fixing the
pinning one does), so the first entry alone is the best single fix. Per family (label): how many
listed samples, their summed ``pinned_share``, and the FAR if every defect of the family were fixed.
One sort of the defects, one of the PASS scores, then searchsorted: O(n log n).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from tao_aoi.analysis import kpi


@dataclass(frozen=True)
class Limiting:
    """The operating point at the recall target and the limiting samples, as row indices."""

    recall_target: float      # a fraction, like gap analysis' min_recall
    defects_needed: int       # k
    threshold: float          # predicted defect iff score > threshold (the kpi.at_recall threshold)
    false_alarms: int
    n_pass: int
    rows: np.ndarray          # row index of each listed sample, pinning one first
    pinned: np.ndarray        # pinned_false_alarms
    pinned_share: np.ndarray
    false_alarms_if_fixed: np.ndarray

    @property
    def far(self) -> float:
        return self.false_alarms / self.n_pass

    def far_if_fixed(self) -> np.ndarray:
        return self.false_alarms_if_fixed / self.n_pass


def _needed(recall_target: float, n_defect: int) -> int:
    return 0 if recall_target <= 0 else kpi.defects_needed(100.0 * recall_target, n_defect)


def _defect_order(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Defect rows by score, highest first, ties by row order; and their scores."""
    idx = np.flatnonzero(positive)
    order = idx[np.lexsort((idx, -scores[idx]))]
    return order, scores[order]


def find(scores: np.ndarray, positive: np.ndarray, recall_target: float, limit: int) -> Limiting:
    """The first ``limit`` limiting samples (fewer once fixing them leaves no false alarm; none without one)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order, d = _defect_order(scores, positive)
    pass_sorted = np.sort(scores[~positive])
    n_pass = pass_sorted.size
    k = _needed(recall_target, d.size)

    def alarms_at_or_above(v: np.ndarray) -> np.ndarray:
        return n_pass - np.searchsorted(pass_sorted, v, side="left")

    if k == 0:
        return Limiting(recall_target, 0, float(scores.max()), 0, n_pass, *(np.zeros(0, dtype=t) for t in
                        (np.int64, np.int64, np.float64, np.int64)))
    edge = d[k - 1]
    fp0 = int(alarms_at_or_above(np.array([edge]))[0])
    ranks = np.arange(k - 1, -1, -1)  # 0-based ranks k-1, k-2, ..., 0
    own = d[ranks]
    above = np.where(ranks > 0, d[np.maximum(ranks - 1, 0)], np.inf)
    if_fixed = alarms_at_or_above(above)
    pinned = alarms_at_or_above(own) - if_fixed
    # A tied run shares what it frees: group consecutive entries by their own score.
    starts = np.r_[True, own[1:] != own[:-1]]
    group = np.cumsum(starts) - 1
    share = (np.bincount(group, weights=pinned) / np.bincount(group))[group]
    stop = np.flatnonzero(if_fixed == 0)
    n = 0 if fp0 == 0 else min(limit, k, int(stop[0]) + 1 if stop.size else k)  # no false alarm: nothing pins
    return Limiting(recall_target, k, float(np.nextafter(edge, -np.inf)), fp0, n_pass, order[ranks[:n]],
                    pinned[:n].astype(np.int64), share[:n], if_fixed[:n].astype(np.int64))


def family_fixed_false_alarms(scores: np.ndarray, positive: np.ndarray, codes: np.ndarray, recall_target: float,
                              n_codes: int) -> np.ndarray:
    """False alarms left if every defect of family c were fixed, for c in range(n_codes) (PASS code: unused)."""
    scores = np.asarray(scores, dtype=np.float64)
    order, d = _defect_order(scores, positive)
    fam = codes[order]
    pass_sorted = np.sort(scores[~positive])
    k = _needed(recall_target, d.size)
    out = np.zeros(n_codes, dtype=np.int64)
    for c in np.unique(fam):
        others = np.cumsum(fam != c)          # defects of other families among the first i+1
        need = k - int((fam == c).sum())      # the fixed family counts as caught
        if need <= 0:
            continue
        i = int(np.searchsorted(others, need, side="left"))
        out[c] = pass_sorted.size - int(np.searchsorted(pass_sorted, d[i], side="left"))
    return out


def summary(columns: Mapping[str, np.ndarray], scores: np.ndarray, positive: np.ndarray, label_codes: np.ndarray,
            label_names: Sequence[str], recall_target: float, limit: int, kept_rows: np.ndarray) -> dict[str, Any]:
    """metrics.json's ``limiting``, ``limiting_samples`` and ``limiting_families`` entries (``columns``:
    the CSV's, with input_path, object_name, label)."""
    lim = find(scores, positive, recall_target, limit)
    kept = set(np.asarray(kept_rows).tolist())
    far_fixed = lim.far_if_fixed()
    samples = []
    for j, r in enumerate(lim.rows.tolist()):
        samples.append({
            "rank": j + 1, "line": r + 2, "input_path": str(columns["input_path"][r]),
            "object_name": str(columns["object_name"][r]), "label": str(columns["label"][r]),
            "siamese_score": float(scores[r]), "pinned_false_alarms": int(lim.pinned[j]),
            "pinned_share": float(lim.pinned_share[j]), "false_alarms_if_fixed": int(lim.false_alarms_if_fixed[j]),
            "far_if_fixed": float(far_fixed[j]), "in_gaps": r in kept})
    names = list(label_names)
    left = family_fixed_false_alarms(scores, positive, label_codes, recall_target, len(names))
    listed = label_codes[lim.rows]
    families = {}
    for c in np.unique(label_codes[positive]).tolist():
        on = listed == c
        families[str(names[c])] = {
            "defects": int(((label_codes == c) & positive).sum()), "limiting_samples": int(on.sum()),
            "pinned_false_alarms": float(lim.pinned_share[on].sum()),
            "false_alarms_if_family_fixed": int(left[c]), "far_if_family_fixed": float(left[c] / lim.n_pass)}
    head = {"recall_target": recall_target, "defects_needed": lim.defects_needed, "threshold": lim.threshold,
            "false_alarms": lim.false_alarms, "far": lim.far, "listed": len(samples), "limit": limit}
    return {"limiting": head, "limiting_samples": samples, "limiting_families": families}
