"""One threshold rule: for the same scores, evaluate (analyze_kpi.py), the RCA (gap_analysis.py metrics.json) and the
deliverable (best_model.json, its inference spec) name the same operating and shipped thresholds; NVIDIA's own
threshold stays apart as nvidia_threshold / threshold.txt. Calibrated: the threshold chosen on validation, unchanged."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rca_data import write_spec, write_stub_images
from tao_aoi.analysis import calibration, evaluation, gap_analysis, kpi, metric_contract

TIED = st.sampled_from([0.0, 0.1, 0.3, 0.3 + 4e-7, 0.5, 0.7, 0.9, 1.0])
CONTRACTS = st.sampled_from(["FAR < 1% at Recall=100%", "FAR < 5% at Recall=90%", "FAR <= 10% at Recall = 99.5%",
                             "recall >= 50% at FAR <= 20%", "FAR < 0.5% at 100% recall"])


def _frame(scores, positive) -> pd.DataFrame:
    n = len(scores)
    labs = np.where(positive, np.array(["MISSING", "BRIDGE"])[np.arange(n) % 2], "PASS")
    return pd.DataFrame({"input_path": [f"b{i % 3}/test" for i in range(n)],
                         "golden_path": [f"b{i % 3}/golden" for i in range(n)], "label": labs,
                         "object_name": [f"C{i}" for i in range(n)], "siamese_score": scores})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(3, 30), kpi_target=CONTRACTS)
def test_evaluate_and_rca_report_the_same_threshold(data, n, kpi_target):
    scores = data.draw(st.lists(st.one_of(TIED, st.floats(0, 1)), min_size=n, max_size=n))
    positive = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    positive[0], positive[1] = True, False
    contract = metric_contract.parse_kpi_target(kpi_target)
    point = contract["operating_point"]
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        df = _frame(scores, positive)
        df.to_csv(work / "inference.csv", index=False)
        write_stub_images(work / "images", df)
        ev = evaluation.analyze(str(work / "inference.csv"), point_name=point["name"],
                                point_target=float(point["target"]), contract=contract)
        m = gap_analysis.run(work / "inference.csv", write_spec(work / "spec.yaml"), work / "images", work / "rca",
                             min_recall=1.0, top_k=3, kpi_target=kpi_target)
        assert m["threshold"] == ev["threshold"]
        assert m["confusion_matrix"] == ev["counts"]
        assert m["deployment"]["threshold"] == ev["deployment"]["threshold"]
        nvidia = float((work / "rca" / "threshold.txt").read_text())
        assert nvidia == m["nvidia_threshold"]
        report = (work / "rca" / "RCA_Report.md").read_text()
        assert f"Operating threshold **{ev['threshold']!r}**" in report
        assert f"**{m['deployment']['threshold']!r}**" in report


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n_val=st.integers(2, 40), n_kpi=st.integers(2, 40),
       point=st.sampled_from([("recall_pct", 100.0), ("recall_pct", 90.0), ("far_pct", 5.0)]))
def test_calibrated_threshold_is_chosen_on_validation_and_applied_unchanged(data, n_val, n_kpi, point):
    def draw(n):
        s = np.array(data.draw(st.lists(st.one_of(TIED, st.floats(0, 1)), min_size=n, max_size=n)))
        p = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        p[0], p[1] = True, False
        return s, p

    vs, vp = draw(n_val)
    ks, kp = draw(n_kpi)
    vl = np.where(vp, "MISSING", "PASS")
    kl = np.where(kp, np.array(["MISSING", "SHIFT"])[np.arange(n_kpi) % 2], "PASS")
    cal = calibration.calibrate(vs, vp, vl, ks, kp, kl, *point)
    t = kpi.operating_point(vs, vp, *point).threshold
    assert cal["threshold"] == t
    flagged = ks > t
    assert cal["kpi"]["counts"]["fp"] == int((flagged & ~kp).sum())
    assert cal["kpi"]["recall_pct"] == pytest.approx(100.0 * (flagged & kp).sum() / kp.sum())
    lo, hi = cal["kpi"]["far_ci95_pct"]
    assert lo <= cal["kpi"]["far_pct"] <= hi
    has_shift = bool((kp & (kl == "SHIFT")).any())
    assert cal["families_not_in_validation"] == (["SHIFT"] if has_shift else [])
    assert (cal["note"] is not None) == has_shift


def test_calibrated_note_names_the_missing_family_and_its_misses():
    vs, vp = np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])
    ks = np.array([0.05, 0.15, 0.85, 0.3, 0.95])
    kp = np.array([False, False, True, True, True])
    kl = np.array(["PASS", "PASS", "MISSING", "TOMBSTONE", "TOMBSTONE"])
    cal = calibration.calibrate(vs, vp, np.where(vp, "MISSING", "PASS"), ks, kp, kl, "recall_pct", 100.0)
    assert cal["kpi"]["recall_pct"] == pytest.approx(200 / 3)  # the threshold from validation misses a TOMBSTONE
    assert cal["per_family"]["TOMBSTONE"] == {"kpi_defects": 2, "caught": 1, "in_validation": False}
    assert "no TOMBSTONE defects" in cal["note"] and "1 of the calibrated misses" in cal["note"]


def test_analyze_kpi_writes_calibrated_resolution_and_deployment(tmp_path, capsys):
    from rca_data import call

    from tao_aoi.commands import analyze_kpi

    rng = np.random.default_rng(3)
    for name, n in (("kpi", 120), ("val", 80)):
        pos = rng.random(n) < 0.3
        pos[:2] = [True, False]
        _frame(np.round(np.where(pos, rng.normal(0.7, 0.15, n), rng.normal(0.3, 0.15, n)), 3), pos).to_csv(
            tmp_path / f"{name}.csv", index=False)
    code, out, err = call(analyze_kpi.main, [tmp_path / "kpi.csv", "--output-dir", tmp_path / "o", "--kpi-target",
                                             "FAR < 0.5% at Recall=100%", "--calibration-csv", tmp_path / "val.csv"],
                          capsys)
    assert code == 0, err
    r = json.loads((tmp_path / "o" / "metric_result.json").read_text())
    assert r["far_resolution_pct"] == pytest.approx(100 / r["n_pass"])
    assert r["far_ci95_pct"][0] <= r["far_pct"] <= r["far_ci95_pct"][1]
    assert r["calibrated"]["kpi"]["far_pct"] is not None and r["calibrated"]["validation_csv"].endswith("val.csv")
    assert "calibrated: threshold" in out and "ship threshold" in out and "FAR resolution" in out
    note = r.get("resolution_note")
    assert (note is not None) == (r["n_pass"] < 200)  # 0.5% of fewer than 200 PASS rows is below one alarm
