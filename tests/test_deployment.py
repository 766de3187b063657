"""The shipped threshold (analysis/deployment.py): a margin on both sides, never within SHIP_CLEARANCE of a KPI
score, the contract's KPI rows unless the gap is too narrow (then only more rows flagged, recall never lower)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi import defaults
from tao_aoi.analysis import deployment, kpi

CLEAR = defaults.SHIP_CLEARANCE
# Ties, scores closer than the clearance, probabilities at their ends and scores far from (0, 1).
TIGHT = st.sampled_from([0.0, 1e-9, 0.1, 0.1 + 3e-7, 0.1 + 6e-7, 0.1 + 2.5e-6, 0.5, 0.5000000000000001, 0.97,
                         0.9999999, 1.0, -2.0, 3.0, 1e7, 1e7 + 1e-6])


@st.composite
def scored(draw):
    n = draw(st.integers(2, 50))
    scores = np.array(draw(st.lists(st.one_of(TIGHT, st.floats(0, 1), st.floats(-5, 5)), min_size=n, max_size=n)))
    positive = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if positive.all() or not positive.any():
        positive[0] = not positive[0]
    return scores, positive


@settings(max_examples=400, deadline=None)
@given(case=scored(), recall=st.sampled_from([100.0, 99.5, 90.0, 50.0, 1.0]))
def test_shipped_threshold_keeps_clear_of_every_score_and_the_recall_target(case, recall):
    scores, positive = case
    point = kpi.at_recall(scores, positive, recall)
    dep = deployment.ship(scores, positive, point.threshold)
    t = dep["threshold"]
    assert math.isfinite(t)
    assert np.min(np.abs(scores - t)) >= CLEAR  # no shipped threshold within the clearance of a KPI score
    flagged = scores > t
    tp, fp = int((flagged & positive).sum()), int((flagged & ~positive).sum())
    assert (tp, fp) == (dep["kpi"]["counts"]["tp"], dep["kpi"]["counts"]["fp"])
    assert tp >= point.tp  # the recall target still holds
    if dep["moved_gaps"] == 0:
        assert (tp, fp) == (point.tp, point.fp)  # same KPI rows as the contract's operating point
    else:  # moved only because the contract's gap was too narrow
        uniq = np.unique(scores)
        j = int(np.searchsorted(uniq, point.threshold, side="right"))
        assert 0 < j < uniq.size and uniq[j] - uniq[j - 1] < 2 * CLEAR * (1 + 1e-9) + 1e-12
    m = dep["margin"]
    above, below = scores[positive & flagged], scores[~positive & ~flagged]
    assert m["to_defect"] == (pytest.approx(above.min() - t) if above.size else None)
    assert m["to_pass"] == (pytest.approx(t - below.max()) if below.size else None)


def test_the_issue_case_gets_a_margin_in_logit_space():
    # a field-tiny run shipped 0.0973926044318037 against a BRIDGE scoring 0.09739260443180371
    scores = np.array([0.0790709, 0.09739260443180371, 0.2, 0.01, 0.6])
    positive = np.array([False, True, True, False, False])
    point = kpi.at_recall(scores, positive, 100.0)
    assert point.threshold == np.nextafter(0.09739260443180371, -np.inf)
    dep = deployment.ship(scores, positive, point.threshold)
    lo, hi = 0.0790709, 0.09739260443180371
    mid = 1 / (1 + math.exp(-0.5 * (math.log(lo / (1 - lo)) + math.log(hi / (1 - hi)))))
    assert dep["threshold"] == pytest.approx(mid) and dep["placed"] == "logit midpoint"
    assert dep["margin"]["to_defect"] == pytest.approx(hi - mid) and dep["margin"]["to_pass"] == pytest.approx(mid - lo)
    assert (dep["kpi"]["far_pct"], dep["kpi"]["recall_pct"]) == (point.far_pct, 100.0)
    assert deployment.margin_warning(dep) is None  # ~0.009 on each side


def test_a_gap_narrower_than_the_clearance_moves_down_and_says_so():
    scores = np.array([0.3, 0.5, 0.5 + 4e-7, 0.9])
    positive = np.array([False, False, True, True])
    dep = deployment.ship(scores, positive, kpi.at_recall(scores, positive, 100.0).threshold)
    assert dep["moved_gaps"] == 1 and 0.3 < dep["threshold"] < 0.5
    assert dep["kpi"]["counts"]["fp"] == 1 and dep["kpi"]["recall_pct"] == 100.0
    warning = deployment.margin_warning(dep)
    assert "moved 1 score gap" in warning


def test_small_margin_is_a_warning():
    scores = np.array([0.4, 0.4002, 0.9])
    positive = np.array([False, True, True])
    dep = deployment.ship(scores, positive, kpi.at_recall(scores, positive, 100.0).threshold)
    text = deployment.margin_warning(dep)
    assert text.startswith("small margin") and "lowest caught defect" in text and "highest passed PASS" in text


def test_beyond_the_ends_and_huge_scores():
    scores = np.array([5e9, 5e9 + 1, 7e9])
    positive = np.array([True, True, False])  # every score flagged at 100% recall: below the lowest
    dep = deployment.ship(scores, positive, kpi.at_recall(scores, positive, 100.0).threshold)
    assert dep["threshold"] < 5e9 and 5e9 - dep["threshold"] >= CLEAR and dep["placed"] == "below the lowest score"
    dep = deployment.ship(scores, positive, float(scores.max()))  # a FAR budget point that flags nothing
    assert dep["threshold"] > 7e9 and dep["margin"]["to_defect"] is None
