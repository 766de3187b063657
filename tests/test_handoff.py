"""Phase handoffs and the deliverable: seed_baseline, warm_start (+ register), prepare_inference_spec."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import deft_driver
import mini_workspace
from tao_aoi.analysis import metric_contract
from tao_aoi.state import deft_state, stages

KPI = "FAR < 2% at Recall=100%"


@pytest.fixture
def ws(tmp_path) -> Path:
    return mini_workspace.build(tmp_path / "ws")


def fake_trial(tmp: Path, number: int, value: float, *, defect: int = 5, lr: float = 0.003, feasible=True) -> dict:
    d = tmp / "automl" / "trials" / f"trial_{number:04d}" / "train"
    d.mkdir(parents=True, exist_ok=True)
    (d / "best.ckpt").write_bytes(b"weights %d" % number)
    (d / "experiment.yaml").write_text(yaml.safe_dump({"train": {"optim": {"lr": lr}, "num_epochs": 3}}))
    return {"number": number, "state": "COMPLETE", "value": value, "params": {"train.optim.lr": lr},
            "feasible": feasible, "pred_counts": {"defect": defect, "pass": 50 - defect},
            "checkpoint": str(d / "best.ckpt")}


def write_best_rec(tmp: Path, trials: list[dict], base_spec: Path) -> Path:
    best = min((t for t in trials if t["feasible"]), key=lambda t: t["value"])
    rec = {"schema_version": 1, "metric_name": "val_far_pct_at_recall_100", "direction": "minimize",
           "base_spec": str(base_spec), "train_csv": str(base_spec), "trials": trials,
           "best": {"trial": best["number"], "score": best["value"], "params": best["params"]}}
    p = tmp / "automl" / "best_rec.json"
    p.write_text(json.dumps(rec))
    return p


def test_seed_baseline_skips_a_collapsed_winner_and_commits_through_the_writer(ws, tmp_path, script):
    trials = [fake_trial(tmp_path, 0, 0.0, defect=0, lr=0.01),   # best value but predicts PASS only
              fake_trial(tmp_path, 1, 1.5, lr=0.004),
              fake_trial(tmp_path, 2, 3.0, lr=0.002)]
    rec = write_best_rec(tmp_path, trials, ws / "specs/baseline_spec.yaml")
    R = tmp_path / "run"
    proc = script("seed_baseline.py", "--best-rec", rec, "--results-dir", R, "--workspace", ws,
                  "--max-iterations", "2", "--kpi-target", KPI, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["seeded"] and out["trial"] == 1
    merged = yaml.safe_load((R / "baseline_spec_automl.yaml").read_text())
    assert merged["train"]["optim"]["lr"] == 0.004
    assert merged["train"]["num_epochs"] == 3  # budget key untouched (from the baseline spec)
    assert (ws / "specs/baseline_spec_automl.yaml").read_text() == (R / "baseline_spec_automl.yaml").read_text()
    st = deft_state.load(R)
    base = st["iterations"]["baseline"]
    assert base["source"] == "automl_phase1" and base["stage_completed"] == "train"
    assert Path(base["artifacts"]["checkpoint"]).read_bytes() == b"weights 1"
    assert st["config"]["train_spec"] == str(R / "baseline_spec_automl.yaml")
    assert stages.expected_next(st) == stages.Step("baseline", "evaluate")
    again = script("seed_baseline.py", "--best-rec", rec, "--results-dir", R, "--workspace", ws, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["seeded"] is False


def test_the_baseline_is_the_trial_the_search_reports_as_best(tmp_path):
    """The objective (FAR over recall 90-100%) chose best_rec's ``best``; the baseline is that trial,
    not the one with the lowest plain FAR@100%; unusable, the next by the same objective."""
    from tao_aoi.pipeline import handoff

    trials = [fake_trial(tmp_path, 0, 28.3), fake_trial(tmp_path, 4, 20.0), fake_trial(tmp_path, 5, 11.4),
              fake_trial(tmp_path, 6, 15.1)]
    for t, objective in zip(trials, (9.0, 1.79, 3.5, 2.2)):
        t["objective"] = objective
    rec = {"direction": "minimize", "trials": trials, "best": {"trial": 4}}
    assert handoff.sane_winner(rec, "best_rec.json")["number"] == 4 == rec["best"]["trial"]
    Path(trials[1]["checkpoint"]).unlink()
    assert handoff.sane_winner(rec, "best_rec.json")["number"] == 6
    for t in trials:  # a record from before the objective: the plain value
        del t["objective"]
    assert handoff.sane_winner(rec, "best_rec.json")["number"] == 5


def test_seed_baseline_with_only_collapsed_trials_is_a_hard_stop(ws, tmp_path, script):
    rec = write_best_rec(tmp_path, [fake_trial(tmp_path, 0, 0.0, defect=50, feasible=True)],
                         ws / "specs/baseline_spec.yaml")
    proc = script("seed_baseline.py", "--best-rec", rec, "--results-dir", tmp_path / "run", "--workspace", ws,
                  "--max-iterations", "2", "--kpi-target", KPI)
    assert proc.returncode == 2 and "no usable AutoML trial" in proc.stderr
    assert not (tmp_path / "run" / "deft_state.json").exists()


def _init(script, R: Path, ws: Path, kpi: str = KPI, iters: int = 3) -> None:
    script("init_deft_state.py", "--results-dir", R, "--workspace", ws, "--max-iterations", str(iters),
           "--kpi-target", kpi, check=True)


def test_warm_start_uses_the_best_iteration_not_the_last(ws, tmp_path, script):
    R = tmp_path / "run"
    _init(script, R, ws)
    deft_driver.drive(str(R), far_of=lambda n: {0: 9.0, 1: 4.0, 2: 1.0, 3: 6.0}[n])  # iter2 best, iter3 regressed
    proc = script("warm_start.py", "--results-dir", R)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["best_iteration"] == "iter2"
    assert out["train_csv"].endswith("iter2/dataset/train_combined_iter2.csv")
    assert "/iter2/train/" in out["checkpoint"]
    space = json.loads(Path(out["search_space"]).read_text())
    assert space["params"]["model.classify.embed_dec"] == {"type": "categorical", "choices": [32]}  # pinned


def test_warm_start_after_phase3_registered_resumes_with_the_recorded_inputs(ws, tmp_path, script):
    """A run killed during final_automl's evaluate (DEFT no longer 'complete') resumes Phase 3 where it was."""
    R = tmp_path / "run"
    _init(script, R, ws)
    deft_driver.drive(str(R), far_of=lambda n: {0: 9.0, 1: 4.0, 2: 1.0, 3: 6.0}[n])
    first = json.loads(script("warm_start.py", "--results-dir", R, check=True).stdout)
    st = deft_driver.drive(str(R), phase3=True, until=stages.Step("final_automl", "evaluate"))
    assert st["status"] == "in_progress" and "final_automl" in st["iterations"]
    again = script("warm_start.py", "--results-dir", R)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == first


def test_warm_start_refuses_after_a_deft_hard_stop(ws, tmp_path, script):
    R = tmp_path / "run"
    _init(script, R, ws)
    script("commit_stage.py", "--results-dir", R, "--iter", "baseline", "--stage", "train", "--status", "error",
           "--summary", "train failed", check=True)
    proc = script("warm_start.py", "--results-dir", R)
    assert proc.returncode == 2 and "Phase 3 is skipped" in proc.stderr


def test_regressed_phase3_never_becomes_the_deliverable(ws, tmp_path, script):
    R = tmp_path / "run"
    _init(script, R, ws)
    final = deft_driver.drive(str(R), phase3=True, far_of=lambda n: {0: 9.0, 1: 4.0, 2: 3.0, 3: 2.5, 4: 7.0}[n])
    assert final["iterations"]["final_automl"]["metric_result"]["value"] == 7.0
    proc = script("prepare_inference_spec.py", "--results-dir", R, "--json")
    assert proc.returncode == 0, proc.stderr
    bm = json.loads(proc.stdout)
    assert bm["iteration"] == "iter3" and "did not improve" in bm["phase3_note"]
    assert "scored 7% vs iter3's 2.5%" in bm["phase3_note"]  # rounded for people, with the contract's unit
    spec = yaml.safe_load((R / "best_model_inference_spec.yaml").read_text())
    assert spec["inference"]["checkpoint"] == bm["checkpoint"]
    assert "train" not in spec


def test_improved_phase3_becomes_the_deliverable(ws, tmp_path, script):
    R = tmp_path / "run"
    _init(script, R, ws)
    final = deft_driver.drive(str(R), phase3=True, far_of=lambda n: {0: 9.0, 1: 4.0, 2: 3.0, 3: 2.5, 4: 1.0}[n])
    assert final["best_iteration"] == "final_automl"
    script("prepare_inference_spec.py", "--results-dir", R, check=True)
    bm = json.loads((R / "best_model.json").read_text())
    assert bm["iteration"] == "final_automl" and bm["phase3_note"] is None


@pytest.mark.parametrize("text, values, expected", [
    ("FAR < 2% at Recall=100%", [5.0, 1.0, 1.0], "iter1"),               # minimize, tie -> earlier
    ("recall >= 99% at FAR <= 1%", [97.0, 99.5, 99.2], "iter1"),         # maximize
])
def test_pick_best_follows_the_contract_direction(text, values, expected):
    contract = metric_contract.parse_kpi_target(text)
    point = contract["constraints"][0]
    cands = [(lb, {"name": contract["name"], "value": v, "constraints": {point["name"]: point["target"]}})
             for lb, v in zip(["baseline", "iter1", "iter2"], values)]
    assert metric_contract.pick_best(contract, cands) == expected


def test_constraints_come_before_the_metric():
    contract = metric_contract.parse_kpi_target("FAR < 2% at Recall=100%")
    cands = [("baseline", {"name": "far_pct", "value": 0.5, "constraints": {"recall_pct": 98.0}}),
             ("iter1", {"name": "far_pct", "value": 3.0, "constraints": {"recall_pct": 100.0}})]
    assert metric_contract.pick_best(contract, cands) == "iter1"
