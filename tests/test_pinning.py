"""When at most three samples hold the KPI, every place that states the KPI leads with them: the RCA
verdict, the report's banner and the run's final lines ("FAR 30.9% is held by 1 sample; without it
0%"), each sample with its picture, its label-issue flag and the exact commands to relabel or drop
it; a headless run never does either by itself, and a run does not resume on an edited KPI set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rca_data import call, write_images, write_spec
from tao_aoi import defaults
from tao_aoi.analysis import gap_analysis, pinning
from tao_aoi.commands import edit_kpi_set
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.pipeline import phases
from tao_aoi.state import deft_state, pipeline_state


def one_pins(n_pass: int = 200, hold: int = 62) -> pd.DataFrame:
    """A KPI set where one EXCESS_SOLDER defect scores below ``hold`` PASS rows; every other defect scores
    above every PASS row: FAR = hold / n_pass, and 0% without it."""
    rng = np.random.default_rng(1)
    rows = [{"input_path": f"L1/2025/LOT1/SN{i:03d}/TOP", "golden_path": "golden/P1", "label": "PASS",
             "object_name": f"R{i}@1", "siamese_score": round(float(rng.uniform(0.01, 0.3)), 6)} for i in range(n_pass)]
    passes = sorted(r["siamese_score"] for r in rows)
    pin = passes[n_pass - hold] - 1e-4  # exactly ``hold`` PASS rows at or above it
    rows += [{"input_path": f"L1/2025/LOT1/SD{i:03d}/TOP", "golden_path": "golden/P1", "label": "MISSING",
              "object_name": f"C{i}@1", "siamese_score": round(float(rng.uniform(0.6, 0.99)), 6)} for i in range(40)]
    rows.append({"input_path": "L1/2025/LOT1/SN999/TOP", "golden_path": "golden/P1", "label": "EXCESS_SOLDER",
                 "object_name": "Q54@1", "siamese_score": round(pin, 6)})
    return pd.DataFrame(rows)


@given(st.lists(st.floats(0, 1), min_size=0, max_size=6), st.floats(0, 1))
def test_held_by_names_the_fewest_samples_that_halve_the_false_alarms(fixed, far):
    fixed = sorted(fixed, reverse=True)  # fixing more listed samples never raises FAR
    got = pinning.held_by([{"far_if_fixed": f} for f in fixed], far)
    ok = [j for j, f in enumerate(fixed[:defaults.FEW_PINNING], 1) if f <= far / 2]
    if far > 0 and ok:
        assert got == (ok[0], fixed[ok[0] - 1])
    else:
        assert got is None


def test_the_headline_sentence():
    assert pinning.headline(0.309, 1, 0.0) == "FAR 30.9% is held by 1 sample; without it 0%"
    assert pinning.headline(0.349, 2, 0.0298) == "FAR 34.9% is held by 2 samples; without them 2.98%"


@pytest.fixture
def rca(tmp_path):
    df = one_pins()
    inf = tmp_path / "inference.csv"
    df.to_csv(inf, index=False)
    write_images(tmp_path / "images", df)
    spec = write_spec(tmp_path / "spec.yaml")
    kpi_csv = tmp_path / "kpi" / "testing_set.csv"
    kpi_csv.parent.mkdir()
    df.drop(columns="siamese_score").to_csv(kpi_csv, index=False)
    m = gap_analysis.run(inf, spec, tmp_path / "images", tmp_path / "rca", min_recall=1.0, top_k=50,
                         kpi_csv=str(kpi_csv))
    return m, tmp_path, kpi_csv


def test_the_rca_verdict_leads_with_the_one_sample_that_holds_the_kpi(rca):
    m, tmp, kpi_csv = rca
    assert m["held_by"] == {"samples": 1, "far": 0.31, "far_without": 0.0,
                            "headline": "FAR 31% is held by 1 sample; without it 0%"}
    first = m["limiting_samples"][0]
    assert first["object_name"] == "Q54@1" and isinstance(first["label_issue"], bool)
    assert (tmp / "rca" / first["image"]).is_file()
    assert all("image" not in x for x in m["limiting_samples"][1:])  # pictures for the ones that hold it
    text = (tmp / "rca" / "RCA_Report.md").read_text()
    verdict = text.split("## 1. Verdict", 1)[1].split("## 2.", 1)[0].strip()
    assert verdict.startswith("**FAR 31% is held by 1 sample; without it 0%.**")  # it comes first
    assert f"![Q54@1]({first['image']})" in verdict
    assert ("flagged as a possible label error" if first["label_issue"] else "not flagged as a label error") in verdict
    sample = "L1/2025/LOT1/SN999/TOP/Q54@1"
    assert f"edit_kpi_set.py --kpi-csv {kpi_csv} --sample {sample} --label PASS`" in verdict
    assert f"edit_kpi_set.py --kpi-csv {kpi_csv} --sample {sample} --drop`" in verdict
    assert "Nothing is relabelled or dropped automatically" in verdict


def test_a_kpi_spread_over_many_samples_gets_no_headline(tmp_path):
    df = one_pins()
    df.loc[df["label"] == "MISSING", "siamese_score"] = np.linspace(0.05, 0.25, 40)  # many defects among PASS
    inf = tmp_path / "inference.csv"
    df.to_csv(inf, index=False)
    write_images(tmp_path / "images", df)
    m = gap_analysis.run(inf, write_spec(tmp_path / "spec.yaml"), tmp_path / "images", tmp_path / "rca",
                         min_recall=1.0, top_k=50)
    assert m["held_by"] is None and "is held by" not in (tmp_path / "rca" / "RCA_Report.md").read_text()


def test_the_final_lines_lead_with_it_and_name_the_commands(rca, tmp_path):
    m, tmp, kpi_csv = rca
    first = m["limiting_samples"][0]
    held = {**m["held_by"], "kpi_csv": str(kpi_csv), "samples_holding": [dict(first, image="limiting_images/x.png")]}
    s = {"results_dir": "/r/run_1", "report": "/r/run_1/DEFT_Loop_Report.html", "phase1": None,
         "trajectory": [{"iteration": "baseline", "kpi_value": 31.0, "passed": False}],
         "deliverable": {"iteration": "iter2", "kpi_value": 31.0, "passed": False, "note": None},
         "kpi_target": "FAR < 1% at Recall >= 100%", "held_by": held,
         "rerun": pinning.rerun_command({"workspace": "/w", "backend": "local", "phases": "all", "max_iterations": 3,
                                         "kpi_target": "FAR < 1% at Recall >= 100%", "trials": 8, "seed": 1234,
                                         "min_similarity": None}, "/r/run_1_kpi_edited")}
    lines = [ln for ln in phases.render_summary(s).splitlines() if ln.strip()]
    assert lines[0] == "FAR 31% is held by 1 sample; without it 0% (iter2, the deliverable):"
    assert "EXCESS_SOLDER L1/2025/LOT1/SN999/TOP/Q54@1" in lines[1] and "/r/run_1/limiting_images/x.png" in lines[1]
    assert lines[2].endswith(f"edit_kpi_set.py --kpi-csv {kpi_csv} --sample L1/2025/LOT1/SN999/TOP/Q54@1 --label PASS")
    assert lines[3].endswith("--drop")
    assert "run_pipeline.py --workspace /w" in lines[4] and "--results-dir /r/run_1_kpi_edited --yes" in lines[4]
    assert "--min-similarity" not in lines[4] and lines[5] == "Trajectory"
    # a deliverable that meets the target leads with its trajectory: nothing to relabel or drop
    met = dict(s, deliverable=dict(s["deliverable"], passed=True))
    assert "is held by" not in phases.render_summary(met)
    assert [ln for ln in phases.render_summary(met).splitlines() if ln.strip()][0] == "Trajectory"


# ------------------------------------------------------------------ acting on it: by hand only


def kpi_folder(tmp_path) -> Path:
    ws = tmp_path / "ws"
    csv = ws / "kpi" / "testing_set.csv"
    csv.parent.mkdir(parents=True)
    one_pins(n_pass=5, hold=2).drop(columns="siamese_score").assign(line="SMT-L1").to_csv(csv, index=False)
    return csv


def test_relabel_and_drop_are_by_hand_atomic_and_logged(tmp_path, capsys):
    csv = kpi_folder(tmp_path)
    before = csv.read_text()
    code, out, err = call(edit_kpi_set.main, ["--kpi-csv", csv, "--sample", "L1/2025/LOT1/SN999/TOP/Q54@1",
                                              "--label", "pass", "--reason", "a good part"], capsys)
    assert code == 0, err
    df = pd.read_csv(csv, dtype=str)
    assert df.loc[df["object_name"] == "Q54@1", "label"].tolist() == ["PASS"] and "line" in df.columns
    assert len(df) == len(pd.read_csv(csv.with_name("testing_set.orig.csv")))
    assert csv.with_name("testing_set.orig.csv").read_text() == before
    code, _, err = call(edit_kpi_set.main, ["--kpi-csv", csv, "--sample", "L1/2025/LOT1/SD000/TOP/C0@1", "--drop"],
                        capsys)
    assert code == 0 and "C0@1" not in set(pd.read_csv(csv, dtype=str)["object_name"])
    assert csv.with_name("testing_set.orig.csv").read_text() == before  # the first original stays
    log = [json.loads(x) for x in csv.with_name("testing_set.edits.jsonl").read_text().splitlines()]
    assert [(x["sample"], x["label"], x["to"], x["reason"]) for x in log] == [
        ("L1/2025/LOT1/SN999/TOP/Q54@1", "EXCESS_SOLDER", "PASS", "a good part"),
        ("L1/2025/LOT1/SD000/TOP/C0@1", "MISSING", "dropped", "")]
    for argv, needle in ((["--sample", "nowhere/X1"], "no row"), (["--sample", "L1/2025/LOT1/SN999/TOP/Q54@1"],
                                                                   "exactly one of")):
        code, _, err = call(edit_kpi_set.main, ["--kpi-csv", csv, *argv, *(["--drop"] if "X1" in argv[1] else [])],
                            capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_a_run_does_not_resume_on_an_edited_kpi_set(tmp_path):
    csv = kpi_folder(tmp_path)
    ws = csv.parent.parent
    (ws / "images").mkdir()
    R = Results.at(ws / "results" / "run_1")
    opts = phases.Options(str(ws), "local", "deft", 2, "FAR < 1% at Recall >= 100%", 8, "bayesian", 20, 5, None, 1)
    ps = pipeline_state.new(phases.asdict(opts))
    pipeline_state.save(R, ps, "started")
    phases._same_kpi_set(R, ps, opts)  # recorded
    digest = ps["kpi_sha256"]
    phases._same_kpi_set(R, ps, opts)  # unchanged: nothing to say
    assert pipeline_state.load(R)["kpi_sha256"] == digest
    csv.write_text(csv.read_text().replace("EXCESS_SOLDER", "PASS"))
    phases._same_kpi_set(R, ps, opts)  # the DEFT loop has not started: the new set is simply recorded
    assert ps["kpi_sha256"] != digest
    deft_state.init(R.root, kpi_target=opts.kpi_target, config={
        "workspace": str(ws), "backend": "local", "max_iterations": 2, "images_root": str(ws / "images"),
        "train_spec": str(csv), "training_csv": str(csv), "validation_csv": str(csv), "kpi_csv": str(csv),
        "sdg_pool": str(ws), "mining_pool_csv": str(csv)})
    csv.write_text(csv.read_text().replace("MISSING", "BRIDGE"))
    with pytest.raises(UserError, match="changed since this run's DEFT loop started.*--results-dir .*run_1_kpi_edited"):
        phases._same_kpi_set(R, ps, opts)


def test_the_report_banner_leads_with_the_samples_that_hold_the_deliverable(tmp_path):
    from PIL import Image

    from support.report_run import RunBuilder
    from tao_aoi.report import render

    b = RunBuilder(tmp_path / "run")
    b.init()
    b.finish(phase3=True)
    R = Results.at(b.results)
    bm = json.loads(R.best_model.read_text())
    (R.root / pinning.IMAGES_DIR).mkdir()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(R.root / pinning.IMAGES_DIR / "limiting_01_EXCESS_SOLDER_Q54_1.png")
    bm["limiting"] = {"samples": 1, "far": 0.309, "far_without": 0.0, "headline": pinning.headline(0.309, 1, 0.0),
                      "kpi_csv": "/w/kpi/testing_set.csv", "samples_holding": [
                          {"rank": 1, "label": "EXCESS_SOLDER", "input_path": "L1/SN9/TOP", "object_name": "Q54@1",
                           "siamese_score": 0.0003, "far_if_fixed": 0.0, "label_issue": True,
                           "image": f"{pinning.IMAGES_DIR}/limiting_01_EXCESS_SOLDER_Q54_1.png"}]}
    R.best_model.write_text(json.dumps({**bm, "passed": True}))  # met: nothing to relabel or drop, no lead
    html = render.render(b.results)[0].read_text(encoding="utf-8")
    assert "is held by" not in html.split('id="kpi-banner"', 1)[1].split("</section>", 1)[0]
    R.best_model.write_text(json.dumps({**bm, "passed": False}))
    html = render.render(b.results)[0].read_text(encoding="utf-8")
    box = html.split('id="kpi-banner"', 1)[1].split("</section>", 1)[0]
    pinned, rest = box.split('<div class="headline">KPI', 1)  # the held-by block comes before the KPI headline
    assert "FAR 30.9% is held by 1 sample; without it 0%" in pinned and "(iter2)" in pinned
    assert 'src="data:image/jpeg;base64,' in pinned and "flagged as a possible label error" in pinned
    assert "edit_kpi_set.py --kpi-csv /w/kpi/testing_set.csv --sample L1/SN9/TOP/Q54@1 --label PASS" in pinned
    assert "--sample L1/SN9/TOP/Q54@1 --drop" in pinned and "Nothing is relabelled or dropped automatically" in pinned
