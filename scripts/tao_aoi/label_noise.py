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


def pred_probs(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(n, 2) [p(PASS), p(defect)] from a logistic fit of the label on the standardised score."""
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, dtype=np.float64)
    spread = s.std() or 1.0
    x = ((s - s.mean()) / spread)[:, None]
    model = LogisticRegression(C=1e6).fit(x, positive.astype(np.int8))
    p = model.predict_proba(x)[:, 1]
    return np.column_stack((1.0 - p, p))


def find(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(issue flags, label quality in [0, 1]) per row; needs both classes present."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    positive = np.asarray(positive, dtype=bool)
    probs = pred_probs(scores, positive)
    y = positive.astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too few examples in class" on small sets: it flags less, which is fine
        issues = find_label_issues(y, probs, filter_by="prune_by_noise_rate", n_jobs=1)
        quality = get_label_quality_scores(y, probs)
    return np.asarray(issues, dtype=bool), np.asarray(quality, dtype=np.float64)
