"""Likely label errors among scored samples, for a person to review (never auto-relabelled).

Confident learning needs per-class probabilities; a ChangeNet score is a distance, not a
probability, so it is first Platt-scaled: a 1-D logistic regression of the label on the score.
That is a monotone recalibration with two parameters, so fitting it on the same rows does not
leak (the scores themselves are out-of-sample: the model never trained on the KPI set). Rows whose
label disagrees with a confident prediction are then flagged, per class as many as the data
supports (cleanlab's ``find_label_issues(filter_by="prune_by_noise_rate")``). From scores alone a
mislabelled defect and a defect the model cannot see look alike: the flag means "look at it".

Both steps are written here in numpy rather than imported: scikit-learn + cleanlab cost 1.2 s of
imports, more than the whole gap analysis of a KPI set (bench/gaps.py). The Platt fit is Newton's
method on the same penalised log-loss scikit-learn's LogisticRegression(C=1e6) minimises (it
reaches the optimum lbfgs approaches to its 1e-4 tolerance); the pruning follows cleanlab 2.9 step
by step, numpy call for numpy call, so equal probabilities give equal flags. tests/test_label_noise.py
checks both against the libraries.
"""
from __future__ import annotations

import numpy as np

METHOD = "confident learning (cleanlab's prune_by_noise_rate) on Platt-scaled siamese_score"
PLATT_C = 1e6               # inverse L2 strength on the slope (the intercept is not penalised)
_NEWTON_TOL = 1e-10         # on the Newton step of the standardised problem
_NEWTON_MAX_ITER = 200
_FUZZ = 1e-6                # cleanlab's FLOATING_POINT_COMPARISON
_THRESHOLD_FLOOR = 2 * _FUZZ  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
_TINY = 1e-100              # cleanlab's TINY_VALUE
_ABSENT_CLASS_THRESHOLD = 2.0


def _platt(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) minimising sum w*logloss(y, slope*x + intercept) + slope^2 / (2C)."""
    wy = float(np.dot(w, y))
    b = float(np.log(max(wy, 1e-12) / max(float(w.sum()) - wy, 1e-12)))
    a = 0.0

    def objective(a_: float, b_: float) -> float:
        z = a_ * x + b_
        return float(np.dot(w, np.logaddexp(0.0, z) - y * z)) + a_ * a_ / (2 * PLATT_C)

    f = objective(a, b)
    for _ in range(_NEWTON_MAX_ITER):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a * x + b)))  # the logistic, without overflow
        r = w * (p - y)
        g = np.array([float(np.dot(r, x)) + a / PLATT_C, float(r.sum())])
        c = w * p * (1.0 - p)
        cx = c * x
        h = np.array([[float(np.dot(cx, x)) + 1.0 / PLATT_C, float(cx.sum())], [float(cx.sum()), float(c.sum())]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            step = g * PLATT_C
        t = 1.0
        while True:  # backtracking: the objective is convex, a short enough step always descends
            na, nb = a - t * step[0], b - t * step[1]
            nf = objective(na, nb)
            if nf <= f or t < 1e-12:
                break
            t *= 0.5
        moved = max(abs(na - a), abs(nb - b))
        a, b, f = na, nb, min(nf, f)
        if moved <= _NEWTON_TOL * (1.0 + max(abs(a), abs(b))):
            break
    return a, b


def pred_probs(scores: np.ndarray, positive: np.ndarray, max_fit_rows: int = 100_000, seed: int = 0) -> np.ndarray:
    """(n, 2) [p(PASS), p(defect)] from a logistic fit of the label on the standardised score.

    Two parameters need no million rows: above ``max_fit_rows`` the fit uses a seeded sample of
    each class, weighted back to the class proportions, so the result matches a full fit closely.
    """
    s = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    x = (s - s.mean()) / (s.std() or 1.0)
    rows, weights = np.arange(s.size), np.ones(s.size)
    if s.size > max_fit_rows:
        rng = np.random.default_rng(seed)
        parts, wparts = [], []
        for cls in (np.flatnonzero(positive), np.flatnonzero(~positive)):
            take = rng.choice(cls, min(cls.size, max_fit_rows // 2), replace=False) if cls.size else cls
            parts.append(take)
            wparts.append(np.full(take.size, cls.size / max(take.size, 1)))
        rows, weights = np.concatenate(parts), np.concatenate(wparts)
    a, b = _platt(x[rows], positive[rows].astype(np.float64), weights)
    p = 0.5 * (1.0 + np.tanh(0.5 * (a * x + b)))
    return np.column_stack((1.0 - p, p))


# --------------------------------------------------------------------------- confident learning (cleanlab 2.9)


def _round_preserving_sum(floats: np.ndarray) -> np.ndarray:
    ints = floats.round()
    orig_sum, int_sum = np.sum(floats).round(), np.sum(ints).round()
    while abs(int_sum - orig_sum) > _FUZZ:
        diff = np.round(orig_sum - int_sum)
        inc = -1 if diff < 0.0 else 1
        changes = min(int(abs(diff)), floats.size)
        for i in np.argsort(floats - ints)[::-inc][:changes]:
            ints[i] += inc
        int_sum = np.sum(ints).round()
    return ints.astype(int)


def _round_preserving_row_totals(m: np.ndarray) -> np.ndarray:
    return np.array([_round_preserving_sum(np.asarray(row, dtype=float)) for row in m]).astype(int)


def confident_joint(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Calibrated confident joint C[given label][likely true label] (cleanlab.count)."""
    K = probs.shape[1]
    present = set(np.unique(y).tolist())
    thr = np.clip([np.mean(probs[:, k][y == k]) if k in present else _ABSENT_CLASS_THRESHOLD for k in range(K)],
                  _THRESHOLD_FLOOR, None)
    confident = probs >= thr - 1e-6
    n_conf = confident.sum(axis=1)
    guess = np.where(n_conf > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    some = n_conf > 0
    # cleanlab transposes sklearn's confusion matrix (rows = guessed label): the same memory order here
    # makes np.sum below add in the same order, so a half-way calibrated count rounds the same way
    cj = np.bincount(guess[some] * K + y[some], minlength=K * K).reshape(K, K).T
    np.fill_diagonal(cj, cj.diagonal().clip(min=1))
    counts = np.bincount(y, minlength=K)
    cal = (cj.T / np.clip(cj.sum(axis=1), _TINY, None) * counts).T
    cal = cal / np.clip(np.sum(cal), _TINY, None) * counts.sum()
    return _round_preserving_row_totals(cal)


def _prune_counts(cj: np.ndarray) -> np.ndarray:
    """How many rows to flag per (true, given) cell, keeping >= 1 row per class (transposed joint)."""
    m = cj.T
    diag = np.diagonal(m)
    new_diag = np.maximum(diag, 1)
    per_col = np.maximum(np.count_nonzero(m, axis=0) - 1.0, 1.0)
    new = m - (new_diag - diag) / per_col
    new[new < 0] = 0
    np.fill_diagonal(new, new_diag)
    new = new.astype(int)  # cleanlab's frac_noise=1 reduction is this cast
    return _round_preserving_row_totals(new).astype(int)


def issues(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask of label issues: ``find_label_issues(y, probs, filter_by="prune_by_noise_rate")``."""
    y = np.asarray(y, dtype=np.int64)
    K = probs.shape[1]
    if np.unique(y).size < 2:
        raise ValueError("label issues need at least two classes")
    prune = _prune_counts(confident_joint(y, probs))
    mask = np.zeros(y.size, dtype=bool)
    for k in range(K):
        sel = y == k
        pk = probs[sel]
        if pk.shape[0] <= 1:  # cleanlab: too few examples to flag any
            continue
        local = np.zeros(pk.shape[0], dtype=bool)
        for j in range(K):
            n = prune[j, k]
            if j != k and n > 0:
                local[np.argsort(-(pk[:, j] - pk[:, k]))[:n]] = True
        mask[sel] = local
    bumped = probs.copy()
    bumped[np.arange(y.size), y] += _FUZZ
    mask[bumped.argmax(axis=1) == y] = False  # the model's own prediction agrees (within fuzz)
    return mask


def find(scores: np.ndarray, positive: np.ndarray, quality_rows: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(issue flag per row, label quality in [0, 1]); needs both classes present.

    Quality is the probability of the given label (cleanlab's self-confidence), for
    ``quality_rows`` when given (NaN elsewhere); the flags need every row's statistics.
    """
    positive = np.asarray(positive, dtype=bool)
    probs = pred_probs(scores, positive)
    y = positive.astype(np.int64)
    rows = np.arange(y.size) if quality_rows is None else np.asarray(quality_rows, dtype=np.int64)
    quality = np.full(y.size, np.nan)
    quality[rows] = probs[rows, y[rows]]
    return issues(y, probs), quality
