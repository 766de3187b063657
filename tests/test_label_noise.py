"""label_noise: the native port against the libraries it replaces (cleanlab 2.9, scikit-learn's LogisticRegression).

The flags must equal cleanlab's for the same probabilities, bit for bit (ties, extreme and rounded
probabilities, tiny and absent-looking classes); the Platt fit must reach scikit-learn's optimum or a
better one; and on realistic scored sets the whole pipeline must flag what the library version flagged.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi.analysis import label_noise

PROB = st.one_of(st.sampled_from([0.0, 1e-9, 0.25, 0.5, 0.5 + 1e-7, 0.75, 1.0 - 1e-9, 1.0]),
                 st.floats(0.0, 1.0, allow_nan=False))


def cleanlab_issues(y, probs):
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(find_label_issues(y, probs, filter_by="prune_by_noise_rate", n_jobs=1), dtype=bool)


def sklearn_probs(scores, positive):
    """What label_noise.pred_probs computed with scikit-learn before the port."""
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, dtype=np.float64)
    x = ((s - s.mean()) / (s.std() or 1.0))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = LogisticRegression(C=label_noise.PLATT_C).fit(x, positive.astype(np.int8)).predict_proba(x)[:, 1]
    return np.column_stack((1.0 - p, p))


def objective(probs, positive):
    p = np.clip(probs[:, 1], 1e-300, 1 - 1e-16)
    return -np.sum(np.where(positive, np.log(p), np.log1p(-p)))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(2, 60))
def test_issues_equal_cleanlab_bit_for_bit(data, n):
    p1 = np.array(data.draw(st.lists(PROB, min_size=n, max_size=n)))
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    if np.unique(y).size < 2:
        y[0] = 1 - y[0]
    probs = np.column_stack((1.0 - p1, p1))
    assert np.array_equal(label_noise.issues(y, probs), cleanlab_issues(y, probs))


def test_a_half_way_calibrated_count_rounds_as_cleanlab_rounds_it():
    # found by hypothesis: the calibrated joint is [[10.5, 4.5], ...] up to an ulp, and which way it
    # rounds depends on the order np.sum adds the cells (cleanlab's joint is a transposed array)
    p1 = np.array([0.0, 0.75, 0.75, 0.0, 0.0, 0.5, 0.75, 0.999999999, 0.999999999, 0.5625, 0.0, 0.5, 0.5, 0.75,
                   0.0, 0.5, 0.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.75, 0.999999999, 0.5625])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0])
    probs = np.column_stack((1.0 - p1, p1))
    assert np.array_equal(label_noise.confident_joint(y, probs), [[11, 4], [4, 7]])
    assert np.array_equal(label_noise.issues(y, probs), cleanlab_issues(y, probs))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(50, 3000), flip=st.floats(0.0, 0.3), sep=st.floats(0.0, 4.0), seed=st.integers(0, 2**31),
       rounding=st.sampled_from([None, 1, 2, 4]))
def test_issues_equal_cleanlab_on_platt_scaled_scores(n, flip, sep, seed, rounding):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    y[:2] = [True, False]
    s = np.where(y, rng.normal(sep, 1, n), rng.normal(0, 1, n))
    s = s if rounding is None else np.round(s, rounding)
    noisy = np.where(rng.random(n) < flip, ~y, y)
    if np.unique(noisy).size < 2:
        noisy[:2] = [True, False]
    probs = label_noise.pred_probs(s, noisy)
    assert np.array_equal(label_noise.issues(noisy.astype(int), probs), cleanlab_issues(noisy.astype(int), probs))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(20, 2000), sep=st.floats(0.0, 3.0), seed=st.integers(0, 2**31))
def test_platt_fit_reaches_the_sklearn_optimum(n, sep, seed):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    y[:2] = [True, False]
    s = np.where(y, rng.normal(sep, 1, n), rng.normal(0, 1, n))
    ours, ref = label_noise.pred_probs(s, y), sklearn_probs(s, y)
    # lbfgs stops at its gradient tolerance; Newton goes to the optimum, so never worse, and very close
    # where the classes overlap enough for the optimum to be well defined (near-separable sets let lbfgs
    # stop far from it: there ours only has to be the better fit).
    assert objective(ours, y) <= objective(ref, y) + 1e-6 * max(1.0, objective(ref, y))
    if sep <= 1.5 and n >= 100:
        np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_separable_scores_give_confident_probabilities_and_no_issue():
    s = np.r_[np.linspace(0, 1, 50), np.linspace(2, 3, 50)]
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    probs = label_noise.pred_probs(s, y)
    assert np.isfinite(probs).all() and (probs[:50, 0] > 0.99).all() and (probs[50:, 1] > 0.99).all()
    assert not label_noise.find(s, y)[0].any()


@pytest.mark.parametrize("seed", range(6))
def test_whole_pipeline_flags_what_the_libraries_flagged(seed):
    rng = np.random.default_rng(seed)
    n = [400, 3000, 30000, 1000, 250, 120_000][seed]
    y = rng.random(n) < [0.1, 0.3, 0.1, 0.5, 0.05, 0.1][seed]
    y[:2] = [True, False]
    s = np.round(np.where(y, rng.normal(0.75, 0.12, n), rng.normal(0.3, 0.1, n)), 4)
    s[np.flatnonzero(~y)[:3]] = 0.95  # a few glaring PASS-labelled defects
    flags, quality = label_noise.find(s, y)
    if n <= 100_000:  # the library version fitted on every row
        ref_probs = sklearn_probs(s, y)
        assert np.array_equal(flags, cleanlab_issues(y.astype(int), ref_probs))
        # lbfgs stops further from the optimum on bigger sets; ours is never the worse fit.
        np.testing.assert_allclose(quality, ref_probs[np.arange(n), y.astype(int)], atol=5e-3)
        assert objective(label_noise.pred_probs(s, y), y) <= objective(ref_probs, y)
    assert flags[np.flatnonzero(~y)[:3]].all()


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="two classes"):
        label_noise.issues(np.zeros(5, int), np.full((5, 2), 0.5))


def test_quality_only_for_the_rows_asked():
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.3
    y[:2] = [True, False]
    s = np.where(y, rng.normal(1, 1, 200), rng.normal(0, 1, 200))
    _, q = label_noise.find(s, y, quality_rows=np.array([5, 7]))
    assert np.isfinite(q[[5, 7]]).all() and np.isnan(np.delete(q, [5, 7])).all()
