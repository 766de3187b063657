"""The calibrated KPI: the threshold chosen on the validation set, applied unchanged to the KPI set.

The contract figure chooses its threshold on the KPI set and then grades on it, so it is the best
that threshold could do there: optimistic. Choosing the threshold on the validation set at the
same operating point (the same rule every evaluate uses: kpi.operating_point) and reading FAR and
recall on the KPI set at that threshold is what a line would see from a threshold set before the
KPI set existed (NVIDIA's skill bank has the same change open). A calibrated recall below the target
means the validation set's defects score higher than the KPI set's; a family the KPI set has and
the validation set lacks was never seen when the threshold was chosen, so its misses are named.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tao_aoi.analysis import binomial, kpi


def _defect_labels(label_col: np.ndarray, positive: np.ndarray) -> set[str]:
    return {str(x) for x in np.unique(label_col[positive])}


def calibrate(val_scores: np.ndarray, val_positive: np.ndarray, val_labels: np.ndarray,
              kpi_scores: np.ndarray, kpi_positive: np.ndarray, kpi_labels: np.ndarray,
              point_name: str, target: float, *, validation_csv: str = "") -> dict[str, Any]:
    """calibrated{threshold, set, validation{...}, kpi{far_pct, recall_pct, counts, ci}, families...}."""
    on_val = kpi.operating_point(val_scores, val_positive, point_name, target)
    at = kpi.at_threshold(kpi_scores, kpi_positive, on_val.threshold)
    seen = _defect_labels(val_labels, val_positive)
    flagged = kpi_scores > on_val.threshold
    per_family: dict[str, dict[str, Any]] = {}
    for label in sorted(_defect_labels(kpi_labels, kpi_positive)):
        rows = kpi_positive & (kpi_labels == label)
        per_family[label] = {"kpi_defects": int(rows.sum()), "caught": int((rows & flagged).sum()),
                             "in_validation": label in seen}
    unseen = [k for k, v in per_family.items() if not v["in_validation"]]
    missed_unseen = {k: per_family[k]["kpi_defects"] - per_family[k]["caught"] for k in unseen}
    return {
        "threshold": float(on_val.threshold),
        "rule": f"the contract's operating point ({point_name} {target:g}) on the validation set, applied "
                f"unchanged to the KPI set",
        "validation_csv": validation_csv,
        "validation": {"far_pct": on_val.far_pct, "recall_pct": on_val.recall_pct, "n_pass": on_val.n_pass,
                       "n_defect": on_val.n_defect, **binomial.far_figures(on_val.fp, on_val.n_pass)},
        "kpi": {"far_pct": at.far_pct, "recall_pct": at.recall_pct,
                "counts": {"tp": at.tp, "fp": at.fp, "tn": at.tn, "fn": at.fn},
                **binomial.far_figures(at.fp, at.n_pass), **binomial.recall_figures(at.tp, at.n_defect)},
        "per_family": per_family,
        "families_not_in_validation": unseen,
        "note": unseen_note(unseen, missed_unseen, per_family),
    }


def unseen_note(unseen: list[str], missed: dict[str, int], per_family: dict[str, dict[str, Any]]) -> str | None:
    """What it means that the validation set lacks a family the KPI set has (None when it lacks none)."""
    if not unseen:
        return None
    counts = ", ".join(f"{k} {per_family[k]['caught']}/{per_family[k]['kpi_defects']} caught" for k in unseen)
    lost = sum(missed.values())
    return (f"the validation set has no {', '.join(unseen)} defects, so the calibrated threshold was chosen without "
            f"them ({counts} on the KPI set): "
            + (f"{lost} of the calibrated misses are defects validation never showed; a validation set without "
               f"every family cannot set a threshold the line can trust for them: add such defects to it"
               if lost else "none was missed here, but nothing in validation vouches for them: add such defects to it"))
