"""Likely label errors among scored samples, for a person to review (never auto-relabelled).

Confident learning (cleanlab) needs per-class probabilities; a ChangeNet score is a distance, not
a probability, so it is first Platt-scaled: a 1-D logistic regression of the label on the score.
That is a monotone recalibration with two parameters, so fitting it on the same rows does not
leak (the scores themselves are out-of-sample: the model never trained on the KPI set).
cleanlab then flags rows whose label disagrees with a confident prediction, counting per class
how many such rows the data supports (``prune_by_noise_rate``). From scores alone a mislabelled
defect and a defect the model cannot see look alike: the flag means "look at it", nothing more.
"""
from __future__ import annotations

import warnings

import numpy as np

METHOD = "cleanlab.filter.find_label_issues(prune_by_noise_rate) on Platt-scaled siamese_score"


def pred_probs(scores: np.ndarray, positive: np.ndarray, max_fit_rows: int = 100_000, seed: int = 0) -> np.ndarray:
    """(n, 2) [p(PASS), p(defect)] from a logistic fit of the label on the standardised score.

    Two parameters need no million rows: above ``max_fit_rows`` the fit uses a seeded sample of
    each class, weighted back to the class proportions, so the result matches a full fit closely.
    """
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    x = ((s - s.mean()) / (s.std() or 1.0))[:, None]
    rows, weights = np.arange(s.size), None
    if s.size > max_fit_rows:
        rng = np.random.default_rng(seed)
        parts, weights = [], []
        for cls in (np.flatnonzero(positive), np.flatnonzero(~positive)):
            take = rng.choice(cls, min(cls.size, max_fit_rows // 2), replace=False) if cls.size else cls
            parts.append(take)
            weights.append(np.full(take.size, cls.size / max(take.size, 1)))
        rows, weights = np.concatenate(parts), np.concatenate(weights)
    model = LogisticRegression(C=1e6).fit(x[rows], positive[rows].astype(np.int8), sample_weight=weights)
    p = model.predict_proba(x)[:, 1]
    return np.column_stack((1.0 - p, p))


def find(scores: np.ndarray, positive: np.ndarray, quality_rows: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(issue flag per row, label quality in [0, 1]); needs both classes present.

    Quality (cleanlab's self-confidence) is per row, so it is computed only for ``quality_rows``
    when given (NaN elsewhere); the flags need every row's statistics.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    positive = np.asarray(positive, dtype=bool)
    probs = pred_probs(scores, positive)
    y = positive.astype(np.int64)
    rows = np.arange(y.size) if quality_rows is None else np.asarray(quality_rows, dtype=np.int64)
    quality = np.full(y.size, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too few examples in class" on small sets: it flags less, which is fine
        issues = find_label_issues(y, probs, filter_by="prune_by_noise_rate", n_jobs=1)
        if rows.size:
            quality[rows] = get_label_quality_scores(y[rows], probs[rows])
    return np.asarray(issues, dtype=bool), quality
