"""KPI text -> contract: the usual phrasings mean one contract; a bare number is refused, never guessed."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tao_aoi.analysis import metric_contract
from tao_aoi.errors import UserError

FAR_01_AT_100 = ("far_pct", "<", 0.1, [("recall_pct", ">=", 100.0)])


def shape(text: str):
    c = metric_contract.parse_kpi_target(text)
    return c["name"], c["operator"], c["target"], [(k["name"], k["operator"], k["target"]) for k in c["constraints"]]


@pytest.mark.parametrize("text, expected", [
    ("FAR < 0.1% at Recall=100%", FAR_01_AT_100),
    ("FAR < 0.1%", FAR_01_AT_100),                                  # recall 100% is the default operating point
    ("FAR<0.1%@Recall=100%", FAR_01_AT_100),
    ("FAR < 0.1% at recall 100%", FAR_01_AT_100),
    ("FAR below 0.1% at 100% recall", FAR_01_AT_100),
    ("FAR < 0.1% @ 100% recall", FAR_01_AT_100),
    ("far under 0.1 % at recall = 100 %", FAR_01_AT_100),
    ("FAR < 0.1 percent at 100 percent recall", FAR_01_AT_100),
    ("false alarm rate < 0.1% at 100% recall", FAR_01_AT_100),
    ("False-call rate below 0.1% with recall of 100%", FAR_01_AT_100),
    ("FAR must be below 0.1% at a recall of 100%", FAR_01_AT_100),
    ("FAR < 1e-1% at Recall=100%", FAR_01_AT_100),
    ("FAR ≤ 0.1% at Recall ≥ 100%", ("far_pct", "<=", 0.1, [("recall_pct", ">=", 100.0)])),
    ("FAR of at most 0.1% at 100% recall", ("far_pct", "<=", 0.1, [("recall_pct", ">=", 100.0)])),
    ("FAR < 1% at recall 100%", ("far_pct", "<", 1.0, [("recall_pct", ">=", 100.0)])),
    ("FAR < 1% @ 100% recall", ("far_pct", "<", 1.0, [("recall_pct", ">=", 100.0)])),
    ("FAR < 2% at Recall >= 99.5%", ("far_pct", "<", 2.0, [("recall_pct", ">=", 99.5)])),
    ("recall >= 99.5% at FAR <= 1%", ("recall_pct", ">=", 99.5, [("far_pct", "<=", 1.0)])),
    ("Recall at least 99.5% at FAR at most 1%", ("recall_pct", ">=", 99.5, [("far_pct", "<=", 1.0)])),
    ("recall above 99% when FAR is 1%", ("recall_pct", ">", 99.0, [("far_pct", "<=", 1.0)])),
    ("FAR < 0.5% at Recall=100% and Precision > 50%",
     ("far_pct", "<", 0.5, [("recall_pct", ">=", 100.0), ("precision_pct", ">", 50.0)])),
    ("FAR < 0.5% at Recall=100%, F1 > 0.9", ("far_pct", "<", 0.5, [("recall_pct", ">=", 100.0), ("f1", ">", 0.9)])),
])
def test_phrasings_parse_to_the_same_contract(text, expected):
    assert shape(text) == expected
    assert metric_contract.parse_kpi_target(text)["text"] == text.strip()  # the user's words are kept


@pytest.mark.parametrize("text, message", [
    ("FAR < 0.001 at Recall=1.0", "did you mean 0.1% (0.001 as a fraction), 100% (1.0 as a fraction), "
                                  "i.e. 'FAR < 0.1% at Recall >= 100%'?"),
    ("FAR < 0.001", "did you mean 0.1% (0.001 as a fraction)"),
    ("FAR < 0.1% at Recall=1.0", "did you mean 100% (1.0 as a fraction)"),
    ("FAR < 5 at 100% recall", "did you mean 5%, i.e. 'FAR < 5% at Recall >= 100%'?"),
    ("recall > 0.995 at FAR < 0.01", "i.e. 'Recall > 99.5% at FAR < 1%'"),
    ("FAR < 0.1% at Recall = 1.0%", "Recall 1.0% is almost certainly a fraction with a % sign; did you mean 100%"),
    ("FAR < 0.1% at Recall=0.995%", "did you mean 99.5%"),
    ("F1 > 90% at FAR < 1%", "F1 is a ratio in [0, 1], not a percentage; did you mean F1 > 0.9?"),
    ("FAR = 1% at Recall=100%", "the main clause needs a bound"),
    ("FAR < 150% at Recall=100%", "between 0% and 100%, got 150%"),
    ("escape rate < 1% at Recall=100%", "unknown metric 'escape rate'"),
    ("FAR < 0.1% at Precision 99%", "the first 'at' clause must fix Recall or FAR"),
    ("recall >= 99%", "say at which operating point, e.g. 'Recall >= 99% at FAR <= 1%'"),
    ("FAR 0.3% please", "write it as e.g. 'FAR < 0.3% at Recall=100%'"),  # the hint keeps the user's number
    ("", "KPI target is empty"),
])
def test_ambiguous_or_wrong_targets_are_refused_with_the_users_numbers(text, message):
    with pytest.raises(UserError) as exc:
        metric_contract.parse_kpi_target(text)
    assert message in str(exc.value)


def test_the_hint_never_shows_a_number_the_user_did_not_write():
    with pytest.raises(UserError) as exc:
        metric_contract.parse_kpi_target("FAR 2.5% recall 99.9% please")
    msg = str(exc.value)
    assert "2.5%" in msg and "99.9%" in msg and "0.1%" not in msg


_PCT = st.floats(min_value=1.5, max_value=100.0, allow_nan=False).map(lambda v: round(v, 3))


@given(far=st.floats(min_value=0.0, max_value=100.0, allow_nan=False).map(lambda v: round(v, 4)),
       recall=_PCT, op=st.sampled_from(["<", "<=", "below", "at most", "under", "≤"]),
       form=st.sampled_from(["{m} {op} {far}% at Recall={r}%", "{m} {op} {far}% at {r}% recall",
                             "{m} {op} {far}% @ recall {r}%", "{m} {op} {far} % with a recall of {r} %"]),
       metric=st.sampled_from(["FAR", "far", "False alarm rate", "false-call rate", "FPR"]))
def test_any_phrasing_round_trips_through_the_canonical_text(far, recall, op, form, metric):
    c = metric_contract.parse_kpi_target(form.format(m=metric, op=op, far=far, r=recall))
    assert (c["name"], c["target"], c["constraints"][0]["target"]) == ("far_pct", far, recall)
    again = metric_contract.parse_kpi_target(metric_contract.render(c))
    assert metric_contract.same(c, again) and again["target"] == far


@given(v=st.floats(min_value=1e-6, max_value=1.0, allow_nan=False))
def test_a_bare_fraction_is_never_accepted(v):
    with pytest.raises(UserError) as exc:
        metric_contract.parse_kpi_target(f"FAR < {v!r} at Recall=100%")
    assert "as a fraction" in str(exc.value)


def test_a_run_resumes_under_another_phrasing_of_the_same_kpi(tmp_path, stub_workspace, script):
    results = tmp_path / "run"
    base = ["--results-dir", str(results), "--workspace", str(stub_workspace), "--max-iterations", "2"]
    script("init_deft_state.py", *base, "--kpi-target", "FAR < 1% at Recall=100%", check=True)
    again = script("init_deft_state.py", *base, "--kpi-target", "FAR below 1% at 100% recall")
    assert again.returncode == 0 and "resumed" in again.stdout
    other = script("init_deft_state.py", *base, "--kpi-target", "FAR below 2% at 100% recall")
    assert other.returncode == 2 and "kpi_target" in other.stderr
