"""gap_analysis: threshold vs a brute-force reference, weakness/top-K, outputs, thumbnails, report, stops."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rca_data import LIGHTS, call, scored_frame, write_images, write_spec
from tao_aoi.analysis import gap_analysis
from tao_aoi.commands import gap_analysis as gap_cmd
from tao_aoi.errors import HardStop, UserError

TIED = st.sampled_from([-2.0, 0.0, 0.1, 0.3, 0.3000000000000001, 1.0, 4.0])


def brute_force(scores, positive, min_recall: Fraction):
    """Every candidate scored on its own: (threshold, tp, fp). Recall in exact arithmetic; F1 and precision
    with the float operations of NVIDIA's vcn_aoi (2pr / (p + r)), whose rounding decides exact F1 ties."""
    P = sum(positive)
    cands = sorted(set(scores.tolist())) + [float(np.nextafter(scores.min(), -np.inf))]
    best = None
    for t in cands:
        tp = sum(1 for s, y in zip(scores, positive) if y and s > t)
        fp = sum(1 for s, y in zip(scores, positive) if not y and s > t)
        if Fraction(tp, P) < min_recall:
            continue
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / P
        f1 = (2.0 * prec * rec) / (prec + rec) if prec + rec else 0.0
        key = (f1, prec, t)
        if best is None or key > best[0]:
            best = (key, t, tp, fp)
    return best[1:]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 50), data=st.data(), recall_pct=st.integers(0, 100))
def test_threshold_equals_brute_force(n, data, recall_pct):
    scores = np.array(data.draw(st.lists(st.one_of(TIED, st.floats(-3, 3)), min_size=n, max_size=n)))
    positive = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if positive.all() or not positive.any():
        positive[0] = not positive[0]
    sel = gap_analysis.choose_threshold(scores, positive, recall_pct / 100)
    t, tp, fp = brute_force(scores, positive, Fraction(recall_pct, 100))
    assert (sel.point.threshold, sel.point.tp, sel.point.fp) == (t, tp, fp)
    assert sel.n_candidates == np.unique(scores).size + 1


@settings(max_examples=50, deadline=None)
@given(scores=st.lists(TIED, min_size=1, max_size=20), cls=st.booleans())
def test_one_class_is_refused(scores, cls):
    with pytest.raises(UserError):
        gap_analysis.choose_threshold(np.array(scores), np.full(len(scores), cls), 1.0)


def test_min_recall_one_keeps_every_defect_and_ties_go_to_pass():
    scores = np.array([0.2, 0.5, 0.5, 0.9, 0.1, 0.5])
    positive = np.array([False, True, False, True, False, False])
    sel = gap_analysis.choose_threshold(scores, positive, 1.0)
    assert sel.point.threshold == 0.2 and (sel.point.tp, sel.point.fp) == (2, 2)
    w = gap_analysis.weakness(scores, positive, sel.point.threshold)
    np.testing.assert_allclose(w, [0.0, -0.3, 0.3, -0.7, -0.1, 0.3])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 40), data=st.data())
def test_min_recall_one_flags_what_the_kpi_at_100_flags(n, data):
    from tao_aoi.analysis import kpi

    scores = np.array(data.draw(st.lists(TIED, min_size=n, max_size=n)))
    positive = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if positive.all() or not positive.any():
        positive[0] = not positive[0]
    t_rca = gap_analysis.choose_threshold(scores, positive, 1.0).point.threshold
    t_kpi = kpi.at_recall(scores, positive, 100.0).threshold
    assert np.array_equal(scores > t_rca, scores > t_kpi)


def test_equal_f1_goes_to_higher_precision():
    # t=0.5: tp 2, fp 1 (precision 2/3); below the minimum: tp 3, fp 3 (1/2); both F1 = 2/3.
    scores = np.array([0.4, 0.7, 0.8, 0.0, 0.9, 0.5])
    positive = np.array([False, True, False, True, True, False])
    sel = gap_analysis.choose_threshold(scores, positive, 0.0)
    assert sel.point.threshold == 0.5 and sel.point.f1 == pytest.approx(2 / 3)


def test_fixed_threshold_can_be_unreachable():
    scores = np.array([0.1, 0.4, 0.6, 0.9])
    positive = np.array([False, True, False, True])
    with pytest.raises(HardStop) as exc:
        gap_analysis.choose_threshold(scores, positive, 1.0, fixed_threshold=0.5)
    assert exc.value.best_recall == 0.5


def test_min_recall_must_be_a_fraction():
    with pytest.raises(UserError, match="did you mean 1"):
        gap_analysis.choose_threshold(np.array([0.1, 0.2]), np.array([False, True]), 100.0)


def test_top_k_per_label_matches_pandas():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, 500)
    weak = np.round(rng.normal(size=500), 1)  # ties: first CSV row wins
    got = gap_analysis.top_k_per_label(codes, weak, 7)
    ref = (pd.DataFrame({"c": codes, "w": weak}).sort_values(["c", "w"], ascending=[True, False], kind="stable")
           .groupby("c").head(7).index.to_numpy())
    assert np.array_equal(got, ref)


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def rca_inputs(tmp_path):
    df = scored_frame(160, seed=2)
    df.loc[df.index[:3], "label"] = ["pass", "Pass", "bridge"]  # case must not matter
    csv = tmp_path / "inference.csv"
    df.to_csv(csv, index=False)
    write_images(tmp_path / "images", df)
    spec = write_spec(tmp_path / "spec.yaml")
    return df, csv, spec, tmp_path / "images"


def _args(csv, spec, images, out, *extra):
    return ["--inference-csv", csv, "--train-spec", spec, "--images-root", images, "--results-dir", out, *extra]


def test_end_to_end_outputs(rca_inputs, tmp_path, capsys):
    df, csv, spec, images = rca_inputs
    out = tmp_path / "rca"
    code, stdout, err = call(gap_cmd.main, _args(csv, spec, images, out, "--top-k-per-label", "4"), capsys)
    assert code == 0, err
    labels_ = df["label"].str.upper()
    m = json.loads((out / "metrics.json").read_text())
    t = float((out / "threshold.txt").read_text())
    assert t == m["nvidia_threshold"]  # threshold.txt and the weak set: NVIDIA's rule (parity tests)
    # metrics.json threshold: the contract's operating point exactly as the evaluate stage computes it
    from tao_aoi.analysis import evaluation

    ev = evaluation.analyze(str(csv), point_name="recall_pct", point_target=100.0, contract=None)
    assert m["threshold"] == ev["threshold"] and m["deployment"]["threshold"] == ev["deployment"]["threshold"]
    verdict = (out / "RCA_Report.md").read_text().split("## 2.")[0]
    assert f"Operating threshold **{m['threshold']!r}**" in verdict and "(recall 100%)" in verdict
    assert f"NVIDIA's vcn_aoi threshold **{t!r}**" in verdict and "it flags the same rows" in verdict
    assert f"ships **{m['deployment']['threshold']!r}**" in verdict and "min_recall 1" not in verdict
    assert f"operating threshold {m['threshold']!r}" in stdout and "recall 100%" in stdout
    y = (labels_ != "PASS").to_numpy()
    s = df["siamese_score"].to_numpy()
    assert m["confusion_matrix"]["fn"] == 0 and m["recall"] == 1.0
    assert m["confusion_matrix"]["fp"] == int(((s > t) & ~y).sum())
    for key in ("precision", "recall", "f1", "confusion_matrix", "per_label", "rca_images"):
        assert key in m
    assert set(m["per_label"]) == set(labels_)
    assert m["per_label"]["PASS"]["total"] == int((labels_ == "PASS").sum())

    gaps = pd.read_parquet(out / "kpi_gaps.parquet")
    assert list(gaps.columns[:7]) == list(gap_analysis.GAPS_COLUMNS)
    assert {"golden_path", "golden_filepath", "misclassified", "label_issue"} <= set(gaps.columns)
    per_label = labels_.value_counts()
    assert len(gaps) == sum(min(4, c) for c in per_label) * len(LIGHTS)
    assert list(gaps["light"][: len(LIGHTS)]) == list(LIGHTS)
    assert all(Path(p).is_file() and Path(p).is_relative_to(images) for p in gaps["filepath"])
    for lbl, grp in gaps.groupby("label"):
        sub = df[labels_ == lbl]
        w = np.where(lbl == "PASS", sub["siamese_score"] - t, t - sub["siamese_score"])
        kept = grp[grp["light"] == LIGHTS[0]]["weakness"].tolist()
        assert kept == sorted(kept, reverse=True) == pytest.approx(sorted(w, reverse=True)[:4])
    np.testing.assert_allclose(gaps["weakness"], np.where(gaps["label"] == "PASS", gaps["siamese_score"] - t,
                                                          t - gaps["siamese_score"]))

    from PIL import Image

    every = sorted((out / "rca_images").iterdir())
    sheets = [x for x in every if not x.name.startswith("limiting_")]
    assert len(sheets) == 10 == len(m["rca_images"])
    # and a picture of each sample that holds the KPI (none when no few samples do)
    held = (m["held_by"] or {}).get("samples", 0)
    assert sorted(x.name for x in every if x.name.startswith("limiting_")) == sorted(
        Path(x["image"]).name for x in m["limiting_samples"][:held])
    assert sum(i["kind"] == "PASS" for i in m["rca_images"]) == 5
    with Image.open(sheets[0]) as im:
        assert im.size[0] == 2 * 128 + 4 and im.size[1] >= 2 * 128
    report = (out / "RCA_Report.md").read_text()
    assert "## 5. Visual spot check" in report and report.count("rca_images/") == 10 + held
    assert "TODO(agent)" not in report and "weak_samples_breakdown" not in report  # headless: complete
    assert "misclassified" in (out / "weak_samples_breakdown.txt").read_text()
    assert m["report_mode"] == "headless"

    # The limiting samples: the KPI operating point at the recall target, and what pins it.
    from tao_aoi.analysis import kpi

    point = kpi.at_recall(s, y, 100.0)
    lim = m["limiting"]
    assert (lim["threshold"], lim["false_alarms"]) == (point.threshold, point.fp) and lim["far"] == point.fp / point.n_pass
    first = m["limiting_samples"][0]
    assert first["siamese_score"] == s[y].min() and first["label"] != "PASS"
    assert f"{first['input_path']}/{first['object_name']}" in report.split("## 2.")[0]
    assert set(m["limiting_families"]) == set(labels_[y])
    marked = gaps[gaps["limiting_rank"] > 0].drop_duplicates(["input_path", "object_name"])
    listed = {(e["input_path"], e["object_name"]): e for e in m["limiting_samples"] if e["in_gaps"]}
    assert {(r.input_path, r.object_name) for r in marked.itertuples()} == set(listed)
    for r in marked.itertuples():
        e = listed[(r.input_path, r.object_name)]
        assert (r.limiting_rank, r.pinned_share) == (e["rank"], e["pinned_share"])
    assert (gaps.loc[gaps["limiting_rank"] == 0, "pinned_share"] == 0).all()


def test_check_report_refuses_skeleton_and_accepts_filled(rca_inputs, tmp_path, capsys):
    df, csv, spec, images = rca_inputs
    out = tmp_path / "rca"
    assert call(gap_cmd.main, _args(csv, spec, images, out), capsys)[0] == 0
    report = out / "RCA_Report.md"
    assert call(gap_cmd.main, ["--check-report", report], capsys)[0] == 0  # headless: nothing to fill
    code, stdout, _ = call(gap_cmd.main, _args(csv, spec, images, out, "--agent-review"), capsys)
    assert code == 0 and "fill the TODO(agent)" in stdout
    assert json.loads((out / "metrics.json").read_text())["report_mode"] == "agent"
    headless_verdict = report.read_text().split("## 1. Verdict")[1].split("TODO(agent)")[0]
    assert "sits just below" in headless_verdict or "nothing pins" in headless_verdict
    code, _, err = call(gap_cmd.main, ["--check-report", report], capsys)
    assert code == 2 and "open item" in err
    text = report.read_text()
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and "TODO(agent) | TODO(agent)" in line:
            line = line.replace("TODO(agent) | TODO(agent)", "maybe | unsure")
        rows.append(line.replace("TODO(agent)", "none"))
    report.write_text("\n".join(rows))
    code, _, err = call(gap_cmd.main, ["--check-report", report], capsys)
    assert code == 2 and "verdict 'maybe'" in err
    report.write_text(report.read_text().replace("| maybe |", "| edge case |"))
    assert call(gap_cmd.main, ["--check-report", report], capsys)[0] == 0


def test_unreachable_writes_only_the_note_and_stops(rca_inputs, tmp_path, capsys):
    df, csv, spec, images = rca_inputs
    out = tmp_path / "rca"
    assert call(gap_cmd.main, _args(csv, spec, images, out), capsys)[0] == 0
    code, _, err = call(gap_cmd.main, _args(csv, spec, images, out, "--threshold", "0.95"), capsys)
    assert code == 2 and "unreachable" in err
    note = (out / "unreachable_kpi.txt").read_text()
    assert "best reachable recall" in note
    assert not (out / "kpi_gaps.parquet").exists() and not (out / "rca_images").exists()
    # A retry that succeeds removes the stale note.
    assert call(gap_cmd.main, _args(csv, spec, images, out), capsys)[0] == 0
    assert not (out / "unreachable_kpi.txt").exists()


def test_missing_images(rca_inputs, tmp_path, capsys):
    df, csv, spec, images = rca_inputs
    code, _, err = call(gap_cmd.main, _args(csv, spec, tmp_path / "nowhere", tmp_path / "r1"), capsys)
    assert code == 2 and "--images-root" in err and not (tmp_path / "r1" / "metrics.json").exists()
    # One missing file: a placeholder tile, listed in metrics.json.
    m = json.loads((call(gap_cmd.main, _args(csv, spec, images, tmp_path / "r2", "--json"), capsys)[1]))
    victim = next(iter(images.rglob(f"{m['rca_images'][0]['object_name']}_{LIGHTS[1]}.png")))
    victim.unlink()
    m = json.loads((call(gap_cmd.main, _args(csv, spec, images, tmp_path / "r3", "--json"), capsys)[1]))
    assert m["rca_images"][0]["missing_files"] and "(image missing)" in (tmp_path / "r3" / "RCA_Report.md").read_text()


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.drop(columns=["siamese_score"]), "column 'siamese_score'"),
    (lambda d: d.assign(siamese_score=d["siamese_score"].astype(object).where(d.index != 5, "x")), "line 7"),
    (lambda d: d[d["label"].str.upper() == "PASS"], "no defect rows"),
    (lambda d: d[d["label"].str.upper() != "PASS"], "no PASS rows"),
    (lambda d: pd.concat([d, d.iloc[[3]]]), "duplicate sample"),
])
def test_bad_inference_exits_2(rca_inputs, tmp_path, capsys, mutate, needle):
    df, csv, spec, images = rca_inputs
    mutate(df).to_csv(csv, index=False)
    code, _, err = call(gap_cmd.main, _args(csv, spec, images, tmp_path / "rca"), capsys)
    assert code == 2 and needle in err, err


def test_bad_spec_and_args(rca_inputs, tmp_path, capsys):
    df, csv, spec, images = rca_inputs
    spec.write_text("dataset: {classify: {image_ext: .png}}\n")
    code, _, err = call(gap_cmd.main, _args(csv, spec, images, tmp_path / "r"), capsys)
    assert code == 2 and "input_map" in err
    write_spec(spec)
    code, _, err = call(gap_cmd.main, _args(csv, spec, images, tmp_path / "r", "--top-k-per-label", "0"), capsys)
    assert code == 2 and "positive" in err
    code, _, err = call(gap_cmd.main, ["--inference-csv", csv], capsys)
    assert code == 2 and "--train-spec is required" in err


def test_label_issues_flag_an_obvious_flip(tmp_path):
    from tao_aoi.analysis import label_noise

    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    s = np.where(y, rng.normal(3, 0.5, 400), rng.normal(0, 0.5, 400))
    s[10], y[10] = 5.0, False  # a PASS label on a glaring defect
    issue, quality = label_noise.find(s, y)
    assert issue[10] and quality[10] == quality.min()
    assert issue.sum() < 20
