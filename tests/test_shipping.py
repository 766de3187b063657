"""What a user ships on, end to end on the tiny workspace with real processes: a sealed holdout scored once by the
deliverable at the shipped threshold, the shipped threshold in the inference spec (eval_margin), the calibrated
KPI of every candidate, and committed results that no command may overwrite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_script

from tao_aoi import fmt
from tao_aoi.data import changenet_csv
from tao_aoi.state import deft_state

KPI = "FAR < 2% at Recall=100%"


@pytest.fixture(scope="module")
def split_ws(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny workspace with its KPI set split in half: one half stays the KPI set, the other is the holdout."""
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    kpi = changenet_csv.read(ws / "kpi" / "testing_set.csv")
    rng = np.random.default_rng(0)
    half = np.zeros(len(kpi), dtype=bool)
    for _, idx in kpi.groupby("label").indices.items():  # stratified: both halves keep every family
        half[rng.permutation(idx)[: len(idx) // 2]] = True
    holdout = ws / "holdout.csv"
    changenet_csv.write(kpi[half], holdout)
    changenet_csv.write(kpi[~half], ws / "kpi" / "testing_set.csv")
    return ws, holdout


def _run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), *argv], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))


@pytest.fixture(scope="module")
def shipped(split_ws, tmp_path_factory) -> tuple[Path, Path, Path, subprocess.CompletedProcess]:
    ws, holdout = split_ws
    results = tmp_path_factory.mktemp("run") / "run"
    proc = _run(["--workspace", str(ws), "--results-dir", str(results), "--phases", "deft", "--max-iterations", "1",
                 "--kpi-target", KPI, "--holdout-csv", str(holdout), "--yes"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, holdout, results, proc


def test_holdout_is_scored_once_by_the_deliverable_at_the_shipped_threshold(shipped):
    ws, holdout, results, proc = shipped
    bm = json.loads((results / "best_model.json").read_text())
    st = deft_state.load(results)
    assert st["config"]["holdout_csv"] == str(holdout.resolve())
    ho = bm["holdout"]
    scored = results / "holdout" / bm["iteration"] / "inference.csv"
    assert ho["inference_csv"] == str(scored) and ho["rows"] == len(changenet_csv.read(holdout))
    df = pd.read_csv(scored)
    flagged = df["siamese_score"] > bm["deployment"]["threshold"]
    defect = df["label"] != "PASS"
    assert ho["threshold"] == bm["deployment"]["threshold"]
    assert ho["far_pct"] == pytest.approx(100 * (flagged & ~defect).sum() / (~defect).sum())
    assert ho["recall_pct"] == pytest.approx(100 * (flagged & defect).sum() / defect.sum())
    assert ho["far_ci95_pct"][0] <= ho["far_pct"] <= ho["far_ci95_pct"][1]
    # only the deliverable scored it, after the choice: no other holdout folder, nothing in any stage reads it
    assert [p.name for p in (results / "holdout").iterdir()] == [bm["iteration"]]
    assert st["final_artifacts"]["holdout_inference"] == str(scored)
    # nothing the run trained on holds a holdout sample (mining excludes them, assembly checks them)
    keys = set(changenet_csv.read(holdout)[["input_path", "object_name"]].itertuples(index=False, name=None))
    combined_csvs = sorted(results.glob("iter*/dataset/train_combined_iter?.csv"))
    assert combined_csvs
    for combined in combined_csvs:
        trained = set(changenet_csv.read(combined)[["input_path", "object_name"]].itertuples(index=False, name=None))
        assert not keys & trained
    report = json.loads(next(results.glob("iter1/dataset/validation_report.json")).read_text())
    assert report["leakage_count"] == 0
    # the summary names the three figures, the report shows the holdout beside the contract figure
    assert "Holdout (" in proc.stdout and "what to expect on the line" in proc.stdout
    html = (results / "DEFT_Loop_Report.html").read_text()
    figures = html.split('id="figures"')[1].split("</div>")[0]
    assert "sealed rows, shipped threshold" in figures and "No holdout" not in figures
    bm = json.loads((results / "best_model.json").read_text())
    headline = html.split('id="figures-headline">')[1].split("</div>")[0]
    assert headline.startswith(f"Contract FAR {fmt.num(bm['metric_result']['far_pct'])}%")
    assert f"holdout FAR {fmt.num(ho['far_pct'])}% at recall {fmt.num(ho['recall_pct'])}% on {ho['rows']} unseen" in headline


def test_the_inference_spec_ships_the_deployment_threshold_with_its_margin(shipped):
    ws, holdout, results, proc = shipped
    bm = json.loads((results / "best_model.json").read_text())
    spec = yaml.safe_load((results / "best_model_inference_spec.yaml").read_text())
    dep = bm["deployment"]
    assert spec["model"]["classify"]["eval_margin"] == dep["threshold"]
    kpi = pd.read_csv(st_inference(results, bm["iteration"]))
    gaps = np.abs(kpi["siamese_score"].to_numpy() - dep["threshold"])
    assert gaps.min() >= 1e-6  # never within 1e-6 of a KPI score
    assert dep["margin"]["to_defect"] > 0 and bm["threshold"] == bm["metric_result"]["threshold"]
    assert bm["calibrated"]["kpi"]["far_pct"] is not None  # every candidate carries its calibrated KPI
    st = deft_state.load(results)
    for label, rec in st["iterations"].items():
        assert "calibrated" in rec["metric_result"] and "far_ci95_pct" in rec["metric_result"], label
        assert Path(rec["artifacts"]["validation_inference"]).is_file()


def st_inference(results: Path, label: str) -> Path:
    return results / label / "inference" / "inference.csv"


def test_a_holdout_sharing_samples_with_the_run_is_refused(split_ws, tmp_path):
    ws, holdout = split_ws
    leaky = tmp_path / "leaky.csv"
    changenet_csv.write(pd.concat([changenet_csv.read(holdout), changenet_csv.read(ws / "kpi" / "testing_set.csv")[:3]]),
                        leaky)
    proc = run_script("init_deft_state.py", "--results-dir", tmp_path / "r", "--workspace", ws, "--max-iterations", "1",
                      "--kpi-target", KPI, "--holdout-csv", leaky)
    assert proc.returncode == 2 and "a holdout must be rows no decision of the run sees" in proc.stderr
    assert not (tmp_path / "r" / "deft_state.json").exists()
    proc = _run(["--workspace", str(ws), "--results-dir", str(tmp_path / "r2"), "--phases", "deft",
                 "--max-iterations", "1", "--kpi-target", KPI, "--holdout-csv", str(leaky), "--yes"])
    assert proc.returncode == 2 and "holdout set shares 3 sample(s)" in proc.stderr


# --------------------------------------------------------------------------- committed results are read-only


def test_commands_refuse_to_write_into_committed_folders(shipped, tmp_path):
    """An RCA-only question answered into a run's own evaluate folder must not replace its evidence."""
    ws, holdout, results, _ = shipped
    inf = results / "baseline" / "inference"
    before = (inf / "metric_result.json").read_bytes()
    cases = [
        ("analyze_kpi.py", inf / "inference.csv", "--output-dir", inf, "--recall-target", "99"),
        ("gap_analysis.py", "--inference-csv", inf / "inference.csv", "--train-spec", ws / "specs" / "baseline_spec.yaml",
         "--images-root", ws / "images", "--results-dir", results / "baseline" / "rca"),
        ("infer.py", "--backend", "local", "--spec", results / "baseline" / "train" / "experiment.yaml", "--checkpoint",
         results / "baseline" / "train" / "best.ckpt", "--csv", ws / "kpi" / "testing_set.csv", "--images-root",
         ws / "images", "--output-dir", inf / "validation"),
        ("assemble_dataset.py", "--results-dir", results, "--iter", "1"),
        ("analyze_kpi.py", inf / "inference.csv", "--output-dir", results),  # the run folder itself holds best_model.json
    ]
    for script, *args in cases:
        proc = run_script(script, *args)
        assert proc.returncode == 2, (script, proc.stderr)
        assert "committed results are read-only" in proc.stderr and "/adhoc/" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert (inf / "metric_result.json").read_bytes() == before
    # the fresh folder it names works, and a folder outside any run is never refused
    fresh = proc.stderr.split("--output-dir ")[-1].strip()
    assert Path(fresh).parent == results / "adhoc"
    ok = run_script("analyze_kpi.py", inf / "inference.csv", "--output-dir", fresh, "--recall-target", "99")
    assert ok.returncode == 0, ok.stderr
    assert run_script("analyze_kpi.py", inf / "inference.csv", "--output-dir", tmp_path / "mine").returncode == 0
    # the run is untouched: next_stage and the report still agree with it
    nxt = run_script("next_stage.py", "--results-dir", results, "--json")
    assert nxt.returncode == 0 and json.loads(nxt.stdout)["stage"] is None
