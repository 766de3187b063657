"""limiting: the samples that pin the threshold, against brute force (recompute the operating point per fix).

Brute force: raise the fixed samples above every score and ask kpi.at_recall again; for small sets,
try every subset of the same size to check that the listed prefix is the best fix of its size.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi.analysis import kpi, limiting

TIED = st.sampled_from([0.0, 0.1, 0.2, 0.2, 0.5, 0.7, 0.9, 1.0])
RECALLS = st.sampled_from([1.0, 0.99, 0.9, 0.75, 0.5, 0.34, 0.01])


def fixed_fp(scores, positive, fix, recall):
    s = scores.copy()
    s[list(fix)] = scores.max() + 1.0
    return kpi.at_recall(s, positive, 100 * recall).fp


def draw_set(data, n):
    scores = np.array(data.draw(st.lists(st.one_of(TIED, st.floats(0, 1)), min_size=n, max_size=n)))
    positive = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if positive.all() or not positive.any():
        positive[0] = not positive[0]
    return scores, positive


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(2, 40), recall=RECALLS, limit=st.integers(0, 12))
def test_each_listed_fix_equals_recomputing_the_operating_point(data, n, recall, limit):
    scores, positive = draw_set(data, n)
    lim = limiting.find(scores, positive, recall, limit)
    base = kpi.at_recall(scores, positive, 100 * recall)
    assert (lim.threshold, lim.false_alarms) == (base.threshold, base.fp)
    assert lim.defects_needed == kpi.defects_needed(100 * recall, int(positive.sum()))
    assert positive[lim.rows].all() and len(set(lim.rows.tolist())) == lim.rows.size
    before = base.fp
    for j in range(lim.rows.size):
        fp = fixed_fp(scores, positive, lim.rows[: j + 1], recall)
        assert lim.false_alarms_if_fixed[j] == fp
        assert lim.pinned[j] == before - fp >= 0
        before = fp
    # The list stops at the limit, at k, or right after the first fix that leaves no false alarm.
    n_listed = lim.rows.size
    if base.fp == 0 or limit == 0:
        assert n_listed == 0
    else:
        assert n_listed == limit or n_listed == lim.defects_needed or lim.false_alarms_if_fixed[-1] == 0
    assert (lim.false_alarms_if_fixed[:-1] > 0).all()
    # The pinning defect is the k-th highest defect score, and ranks go up from there.
    d = np.sort(scores[positive])[::-1]
    k = lim.defects_needed
    assert np.array_equal(scores[lim.rows], d[k - 1 - np.arange(n_listed)])
    # A tied run shares what it frees: each member gets the run's total over the run's size (the
    # unlimited list stops once nothing is left to free, so members past its end free nothing).
    full = limiting.find(scores, positive, recall, limit=10**9)
    for j in range(n_listed):
        run = scores[full.rows] == scores[lim.rows[j]]
        size = int((d[:k] == scores[lim.rows[j]]).sum())
        assert lim.pinned_share[j] == pytest.approx(full.pinned[run].sum() / size)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(2, 11), recall=RECALLS)
def test_listed_prefix_is_the_best_fix_of_its_size(data, n, recall):
    scores, positive = draw_set(data, n)
    lim = limiting.find(scores, positive, recall, limit=n)
    defects = np.flatnonzero(positive)
    for j in range(1, min(lim.rows.size, 4) + 1):
        best = min(fixed_fp(scores, positive, c, recall) for c in itertools.combinations(defects, j))
        assert lim.false_alarms_if_fixed[j - 1] == best
    # No single fix does better than the first listed one; at recall < 100% every allowed miss is as good.
    if lim.rows.size:
        singles = {int(i): fixed_fp(scores, positive, [i], recall) for i in defects}
        assert min(singles.values()) == lim.false_alarms_if_fixed[0]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(2, 40), recall=RECALLS)
def test_family_fix_equals_recomputing(data, n, recall):
    scores, positive = draw_set(data, n)
    codes = np.where(positive, np.array(data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))), 0)
    left = limiting.family_fixed_false_alarms(scores, positive, codes, recall, 4)
    for c in range(1, 4):
        members = np.flatnonzero(codes == c)
        if members.size:
            assert left[c] == fixed_fp(scores, positive, members, recall)


def test_one_defect_alone_pins_the_threshold():
    # Issue 11's case: at 100% recall every defect label shows "misclassified 0", yet one MISSING
    # sample scoring like a good part forces the threshold down under 30 of the 100 PASS rows.
    rng = np.random.default_rng(0)
    passes = np.r_[rng.uniform(0.0, 0.2, 70), rng.uniform(0.3, 0.5, 30)]
    defects = np.r_[0.25, rng.uniform(0.7, 1.0, 19)]
    scores, positive = np.r_[passes, defects], np.r_[np.zeros(100, bool), np.ones(20, bool)]
    lim = limiting.find(scores, positive, 1.0, limit=10)
    assert lim.false_alarms == 30 and lim.rows[0] == 100
    assert lim.pinned[0] == 30 and lim.false_alarms_if_fixed[0] == 0 and lim.rows.size == 1


@pytest.mark.parametrize("recall", [1.0, 0.5])
def test_all_defects_equal_pin_together(recall):
    scores = np.r_[np.linspace(0, 1, 11), [0.3] * 4]
    positive = np.r_[np.zeros(11, bool), np.ones(4, bool)]
    lim = limiting.find(scores, positive, recall, limit=10)
    k = lim.defects_needed
    assert lim.rows.size == k
    assert list(lim.pinned[:-1]) == [0] * (k - 1) and lim.pinned[-1] == lim.false_alarms == 8
    np.testing.assert_allclose(lim.pinned_share, 8 / k)


def test_zero_recall_target_pins_nothing():
    lim = limiting.find(np.array([0.1, 0.9]), np.array([False, True]), 0.0, limit=5)
    assert lim.defects_needed == 0 and lim.rows.size == 0 and lim.false_alarms == 0


@pytest.mark.parametrize("pinned, says, never", [
    ({"SHIFT": 3.0}, ["SHIFT is not an SDG label", "extra mining neighbours"], ["of the SDG rows"]),
    ({"BRIDGE": 2.0, "SHIFT": 5.0}, ["gives SHIFT, BRIDGE priority", "50% of the SDG rows go to BRIDGE", "SHIFT is not"],
     []),
    ({"MISSING": 0.0}, ["as usual"], ["priority"]),
])
def test_the_routing_sentence_promises_sdg_rows_only_for_sdg_labels(pinned, says, never):
    from tao_aoi.analysis import rca_report

    m = {"limiting_families": {k: {"pinned_false_alarms": v} for k, v in pinned.items()}}
    text = rca_report.routing_sentence(m)
    assert all(s in text for s in says) and not any(s in text for s in never), text
