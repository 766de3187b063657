"""The FAR's resolution and exact binomial interval (analysis/binomial.py) against scipy and first principles."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi.analysis import binomial


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), data=st.data(), conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_clopper_pearson_equals_scipy(n, data, conf):
    from scipy.stats import beta

    k = data.draw(st.one_of(st.just(0), st.just(n), st.integers(0, n)))
    lo, hi = binomial.clopper_pearson(k, n, conf)
    tail = (1 - conf) / 2
    want_lo = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    want_hi = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    assert lo == pytest.approx(want_lo, rel=1e-9, abs=1e-13)
    assert hi == pytest.approx(want_hi, rel=1e-9, abs=1e-13)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 400), data=st.data())
def test_interval_is_what_the_binomial_tails_define(n, data):
    """First principles, no scipy: at the upper bound P(X <= k) = tail; at the lower bound P(X >= k) = tail."""
    from scipy.stats import binom

    k = data.draw(st.integers(0, n))
    lo, hi = binomial.clopper_pearson(k, n)
    if k < n:
        assert binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)
    if k > 0:
        assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)


def test_known_values_and_the_issue_example():
    # zero alarms in 66 PASS rows: the rule of three, exactly: 1 - 0.025 ** (1 / 66)
    lo, hi = binomial.clopper_pearson(0, 66)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 66)) and 0.054 < hi < 0.055
    assert binomial.resolution_pct(66) == pytest.approx(1.5151515)
    f = binomial.far_figures(1, 66)
    assert f["far_resolution_pct"] == pytest.approx(100 / 66) and f["far_ci95_pct"][0] > 0


@pytest.mark.parametrize("k,n", [(-1, 5), (6, 5), (0, 0), (1.0, 5)])
def test_bad_counts_refused(k, n):
    with pytest.raises(ValueError):
        binomial.clopper_pearson(k, n)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 3000), target=st.floats(0, 100, allow_nan=False), op=st.sampled_from(["<", "<="]))
def test_alarms_within_is_the_largest_count_meeting_the_target(n, target, op):
    k = binomial.alarms_within(op, target, n)
    meets = (lambda far: far < target) if op == "<" else (lambda far: far <= target)
    counts = [j for j in range(n + 1) if meets(100.0 * j / n)]
    assert k == (max(counts) if counts else None)


def test_resolution_note_says_the_target_means_zero_alarms():
    note = binomial.resolution_note("<", 0.5, 66, "the KPI set")
    assert "one false alarm is 1.52%" in note and "means zero false alarms" in note
    assert binomial.resolution_note("<", 5.0, 66, "the KPI set") is None  # 3 alarms allowed
    need = binomial.zero_alarm_rows_needed(0.5)
    assert 1 - 0.025 ** (1 / need) < 0.005 <= 1 - 0.025 ** (1 / (need - 1))
    assert f"from {need} PASS rows" in note


@settings(max_examples=100, deadline=None)
@given(target=st.floats(0.001, 50, allow_nan=False))
def test_zero_alarm_rows_needed_is_minimal(target):
    n = binomial.zero_alarm_rows_needed(target)
    assert binomial.clopper_pearson(0, n)[1] < target / 100
    assert n == 1 or binomial.clopper_pearson(0, n - 1)[1] >= target / 100 or math.isclose(
        binomial.clopper_pearson(0, n - 1)[1], target / 100)
