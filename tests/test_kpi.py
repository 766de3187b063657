"""analyze_kpi: exact operating points (vs sklearn roc_curve), the metric_result.json contract, bad input."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from rca_data import call, scored_frame
from tao_aoi.analysis import kpi, metric_contract
from tao_aoi.commands import analyze_kpi
from tao_aoi.errors import UserError
from tao_aoi.state import deft_state

# Few distinct values -> heavy ties between and within classes.
TIED = st.sampled_from([-1.5, 0.0, 0.1, 0.25, 0.5, 0.5000000000000001, 2.0, 7.0])


@st.composite
def scored(draw, min_size=2, max_size=60):
    n = draw(st.integers(min_size, max_size))
    scores = np.array(draw(st.lists(st.one_of(TIED, st.floats(-5, 5)), min_size=n, max_size=n)))
    positive = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if positive.all() or not positive.any():  # keep both classes (n >= 2)
        positive[0] = not positive[0]
    return scores, positive


def sklearn_at_recall(scores, positive, recall_hundredths):
    """Reference: first ROC point (descending threshold) whose recall >= target, exact decimal target."""
    fpr, tpr, thr = roc_curve(positive, scores, drop_intermediate=False)
    P, N = int(positive.sum()), int((~positive).sum())
    tps, fps = np.rint(tpr * P).astype(int), np.rint(fpr * N).astype(int)
    i = next(i for i in range(len(thr)) if tps[i] * 10000 >= recall_hundredths * P)
    return thr[i], int(tps[i]), int(fps[i])


def sklearn_at_far(scores, positive, far_hundredths):
    """Reference: highest recall among ROC points with FAR <= target, then the lowest FAR."""
    fpr, tpr, thr = roc_curve(positive, scores, drop_intermediate=False)
    P, N = int(positive.sum()), int((~positive).sum())
    tps, fps = np.rint(tpr * P).astype(int), np.rint(fpr * N).astype(int)
    ok = [i for i in range(len(thr)) if fps[i] * 10000 <= far_hundredths * N]
    best = max(tps[i] for i in ok)
    i = min((i for i in ok if tps[i] == best), key=lambda i: fps[i])
    return thr[i], int(tps[i]), int(fps[i])


def assert_point(point: kpi.Point, scores, positive, ref):
    ref_thr, tp, fp = ref
    assert (point.tp, point.fp) == (tp, fp)
    assert point.tn == int((~positive).sum()) - fp and point.fn == int(positive.sum()) - tp
    # Our rule is score > t; sklearn's is score >= thr: the same rows must be flagged.
    if np.isfinite(ref_thr):
        assert np.array_equal(scores > point.threshold, scores >= ref_thr)
    else:
        assert not (scores > point.threshold).any()


@settings(max_examples=300, deadline=None)
@given(data=scored(), target=st.integers(1, 10000))
def test_at_recall_equals_sklearn_roc_curve(data, target):
    scores, positive = data
    ref = sklearn_at_recall(scores, positive, target)
    fast = kpi.at_recall(scores, positive, target / 100)
    assert_point(fast, scores, positive, ref)
    assert kpi.Curve(scores, positive).at_recall(target / 100) == fast
    assert fast.recall_pct >= target / 100


@settings(max_examples=300, deadline=None)
@given(data=scored(), target=st.integers(0, 10000))
def test_at_far_equals_sklearn_roc_curve(data, target):
    scores, positive = data
    ref = sklearn_at_far(scores, positive, target)
    fast = kpi.at_far(scores, positive, target / 100)
    assert_point(fast, scores, positive, ref)
    assert kpi.Curve(scores, positive).at_far(target / 100) == fast
    assert fast.far_pct <= target / 100


@settings(max_examples=100, deadline=None)
@given(scores=st.lists(TIED, min_size=1, max_size=30), cls=st.booleans())
def test_one_class_data_is_refused(scores, cls):
    s = np.array(scores)
    positive = np.full(s.size, cls)
    for fn in (lambda: kpi.at_recall(s, positive, 100), lambda: kpi.at_far(s, positive, 1),
               lambda: kpi.Curve(s, positive)):
        with pytest.raises(UserError, match="no defect rows" if not cls else "no PASS rows"):
            fn()


def test_recall_100_edge_is_just_below_the_lowest_defect_score():
    low = 0.4
    scores = np.array([0.9, low, 0.7, low, np.nextafter(low, -np.inf), 0.1])
    positive = np.array([True, True, False, False, False, False])
    p = kpi.at_recall(scores, positive, 100)
    assert p.threshold == np.nextafter(low, -np.inf)
    # The PASS tied with the lowest defect is a false alarm; the one a hair below is not.
    assert (p.tp, p.fp, p.tn, p.fn) == (2, 2, 2, 0)
    assert p.far_pct == 50.0 and p.recall_pct == 100.0


def test_far_target_picks_highest_recall_then_lowest_far():
    scores = np.array([0.95, 0.9, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1])
    positive = np.array([True, False, True, True, False, True, False, False])
    p = kpi.at_far(scores, positive, 25.0)  # 1 of 4 PASS may alarm
    assert (p.tp, p.fp) == (3, 1) and p.threshold == np.nextafter(0.6, -np.inf)
    assert kpi.at_far(scores, positive, 0.0).tp == 1
    assert kpi.at_far(scores, positive, 100.0).recall_pct == 100.0


@pytest.mark.parametrize("fn,bad", [(kpi.defects_needed, 0.0), (kpi.defects_needed, 100.5),
                                    (kpi.alarms_allowed, -1.0), (kpi.alarms_allowed, float("nan"))])
def test_targets_out_of_range(fn, bad):
    with pytest.raises(UserError):
        fn(bad, 10)


# --------------------------------------------------------------------------- CLI and metric_result.json


def _write(tmp_path, df, name="inference.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def _reference_far100(df):
    y = df["label"].str.upper() != "PASS"
    lowest = df.loc[y, "siamese_score"].min()
    return 100 * ((~y) & (df["siamese_score"] >= lowest)).sum() / (~y).sum()


def test_metric_result_contract_is_accepted_by_the_state_writer(tmp_path, capsys):
    df = scored_frame(200, seed=3)
    csv = _write(tmp_path, df)
    target = "FAR < 50% at Recall=100%"
    code, out, err = call(analyze_kpi.main, [csv, "--output-dir", tmp_path / "o", "--recall-target", "100",
                                             "--kpi-target", target], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "o" / "metric_result.json").read_text())
    for key in ("far_pct", "recall_pct", "precision_pct", "f1", "threshold", "n_pass", "n_defect", "counts",
                "per_label", "name", "value", "unit", "constraints", "passed"):
        assert key in res, key
    assert res["far_pct"] == pytest.approx(_reference_far100(df))
    assert res["name"] == "far_pct" and res["value"] == res["far_pct"] and res["constraints"] == {"recall_pct": 100.0}
    assert res["passed"] == (res["far_pct"] < 50)
    assert sum(v["total"] for v in res["per_label"].values()) == len(df)
    assert res["per_label"]["PASS"]["misclassified"] == res["counts"]["fp"]
    contract = metric_contract.parse_kpi_target(target)
    checked = deft_state._check_metric_result(contract, str(tmp_path / "o" / "metric_result.json"))
    assert checked["passed"] == res["passed"] and checked["value"] == res["far_pct"]


def test_recall_at_far_contract(tmp_path, capsys):
    df = scored_frame(300, seed=5)
    csv = _write(tmp_path, df)
    code, out, err = call(analyze_kpi.main, [csv, "--output-dir", tmp_path, "--far-target", "1",
                                             "--kpi-target", "recall >= 99.5% at FAR <= 1%", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    y = (df["label"] != "PASS").to_numpy()
    ref = sklearn_at_far(df["siamese_score"].to_numpy(), y, 100)
    assert (res["counts"]["tp"], res["counts"]["fp"]) == ref[1:]
    assert res["name"] == "recall_pct" and res["constraints"] == {"far_pct": res["far_pct"]}
    assert res["far_pct"] <= 1 and res["passed"] == (res["recall_pct"] >= 99.5)
    assert res["operating_point"] == {"name": "far_pct", "target": 1.0}


def test_conflicting_operating_point_is_refused(tmp_path, capsys):
    csv = _write(tmp_path, scored_frame(20))
    code, _, err = call(analyze_kpi.main, [csv, "--output-dir", tmp_path, "--recall-target", "99",
                                           "--kpi-target", "FAR < 1% at Recall=100%"], capsys)
    assert code == 2 and "--recall-target 99 disagrees" in err


def test_pass_label_case_is_irrelevant(tmp_path, capsys):
    df = scored_frame(150, seed=7)
    mixed = df.copy()
    is_pass = mixed["label"] == "PASS"
    mixed.loc[is_pass, "label"] = np.resize(["pass", "Pass", " PASS ", "PASS"], int(is_pass.sum()))
    mixed.loc[~is_pass, "label"] = mixed.loc[~is_pass, "label"].str.lower()
    results = []
    for name, frame in (("a.csv", df), ("b.csv", mixed)):
        code, out, err = call(analyze_kpi.main, [_write(tmp_path, frame, name), "--output-dir", tmp_path / f"out_{name}",
                                                 "--json", "--pass-label", "pass"], capsys)
        assert code == 0, err
        results.append(json.loads(out))
    a, b = results
    assert a["counts"] == b["counts"] and a["per_label"] == b["per_label"] and "PASS" in b["per_label"]


def _bad(tmp_path, text):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return p


HEADER = "input_path,golden_path,label,object_name,siamese_score\n"
GOOD = "b/t,b/g,PASS,C1,0.1\nb/t,b/g,MISSING,C2,0.9\n"


@pytest.mark.parametrize("text,needle", [
    ("", "is empty"),
    (HEADER, "no rows"),
    ("input_path,label,object_name\nb/t,PASS,C1\n", "column 'siamese_score'"),
    ("input_path,siamese_score,object_name\nb/t,0.1,C1\n", "column 'label'"),
    (HEADER + GOOD + "b/t,b/g,PASS,C3,abc\n", "line 4: siamese_score 'abc'"),
    (HEADER + GOOD + "b/t,b/g,PASS,C3,nan\n", "line 4: siamese_score 'nan'"),
    (HEADER + GOOD + "b/t,b/g,PASS,C3,inf\n", "line 4: siamese_score 'inf'"),
    (HEADER + GOOD + "b/t,b/g,PASS,C3,\n", "line 4: empty 'siamese_score'"),
    (HEADER + "b/t,b/g,PASS,C1,0.1\nb/t,b/g,PASS,C2,0.9\n", "no defect rows"),
    (HEADER + "b/t,b/g,MISSING,C1,0.1\nb/t,b/g,bridge,C2,0.9\n", "no PASS rows"),
    (HEADER + GOOD + "./b/t/,b/g,MISSING,C1,0.5\n", "lines 2 and 4: duplicate sample"),
    (HEADER + GOOD + "b/t,b/g,???,C3,0.5\n", "line 4: label '???'"),
    (HEADER + GOOD + "b/t,b/g,,C3,0.5\n", "line 4: empty 'label'"),
])
def test_bad_input_exits_2_naming_the_row_or_column(tmp_path, capsys, text, needle):
    code, out, err = call(analyze_kpi.main, [_bad(tmp_path, text), "--output-dir", tmp_path / "o"], capsys)
    assert code == 2, (out, err)
    assert needle in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "o" / "metric_result.json").exists()


def test_wrapper_script_exit_codes(tmp_path, script):
    good = _write(tmp_path, scored_frame(30))
    ok = script("analyze_kpi.py", good, "--output-dir", tmp_path / "o")
    assert ok.returncode == 0 and "FAR" in ok.stdout, ok.stderr
    bad = script("analyze_kpi.py", _bad(tmp_path, HEADER), "--output-dir", tmp_path / "o2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_one_curve_answers_every_recall_target():
    df = scored_frame(400, seed=11)
    y = (df["label"] != "PASS").to_numpy()
    s = df["siamese_score"].to_numpy()
    curve = kpi.Curve(s, y)
    far = kpi.far_at_recalls(s, y, (100, 95, 90, 42.5))
    for r, v in far.items():
        assert v == curve.at_recall(float(r)).far_pct
    assert far["100"] >= far["95"] >= far["90"] >= far["42.5"]


def test_per_label_counts_misses_only_for_defects():
    labels_ = pd.Series(["PASS", "PASS", "MISSING", "BRIDGE"])
    pos = np.array([False, False, True, True])
    pred = np.array([True, False, False, True])
    assert kpi.per_label(labels_, pos, pred) == {
        "BRIDGE": {"total": 1, "misclassified": 0, "missed": 0},
        "MISSING": {"total": 1, "misclassified": 1, "missed": 1},
        "PASS": {"total": 2, "misclassified": 1, "missed": 0}}


def test_reference_is_exact_decimal():
    # 99.5% of 200 defects is 199: float noise in 99.5 * 200 / 100 must not demand 200.
    assert kpi.defects_needed(99.5, 200) == 199 == int(Fraction(995, 1000) * 200)
