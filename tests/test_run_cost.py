"""Compute estimate and --time-limit: durations, the cost model, the budget fit, and the estimate
checked against a real run on the tiny workspace (within 2x, measured in the same process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, run_script
from hypothesis import given, settings
from hypothesis import strategies as st

from support.docker_fixture import fake_docker  # noqa: F401  (fixture: the fake TAO docker first on PATH)
from tao_aoi import defaults
from tao_aoi.errors import UserError
from tao_aoi.pipeline import compute_budget

KPI = "FAR < 0.1% at Recall=100%"  # never met on the tiny demo: every planned iteration runs


@pytest.mark.parametrize("text, sec", [("8h", 28800), ("90m", 5400), ("1h30m", 5400), ("3600s", 3600),
                                       ("1.5h", 5400), (" 2H ", 7200), ("1h0m30s", 3630)])
def test_durations(text, sec):
    assert compute_budget.parse_duration(text) == sec


@pytest.mark.parametrize("text", ["8", "h", "", "-1h", "0m", "8hours", "1d", "m30"])
def test_bad_durations_are_refused_with_the_flag(text):
    with pytest.raises(UserError, match="--time-limit"):
        compute_budget.parse_duration(text)


COSTS = compute_budget.UnitCosts(source="test", epoch_sec_per_row=0.01, train_job_sec=5.0, infer_sec_per_row=0.002,
                           infer_job_sec=3.0, decode_sec_per_row=0.004, automl_epoch_sec=0.02, automl_trial_sec=0.1,
                           study_open_sec=1.0, rca_sec=2.0, first_use_sec=1.5)
WORK = compute_budget.Workload(phases="all", epochs=10, train_rows=1000, val_rows=200, kpi_rows=300, pool_rows=500,
                         mining_targets=40, trials=8, max_iterations=3, num_sdg=20, top_k_per_target=5)


def test_a_trial_counts_every_epoch_over_its_rows_and_the_validation_pass():
    e = compute_budget.estimate(WORK, COSTS)
    trial = 5.0 + 10 * (0.01 * 1000 + 0.02) + 3.0 + 0.002 * 200 + 0.1
    assert e["per_trial_sec"] == pytest.approx(trial, abs=0.01)
    assert e["phase1_sec"] == pytest.approx(1.5 + 1.0 + 0.004 * 1200 + 8 * trial, abs=0.1)
    # Phase 3 trains on the grown set: more rows per epoch than Phase 1.
    assert e["phase3_sec"] > e["phase1_sec"] - 1.5 - 0.004 * 1200 and e["final_training_rows"] > 1000
    deft_only = compute_budget.estimate(replace(WORK, phases="deft"), COSTS)
    assert deft_only["phase1_sec"] == deft_only["phase3_sec"] == 0 and deft_only["deft_sec"] > e["deft_sec"]
    assert compute_budget.estimate(replace(WORK, algorithm="hyperband"), COSTS)["pruned_trials"].startswith("counted in full")


@settings(max_examples=200, deadline=None)
@given(trials=st.integers(1, 15), iterations=st.integers(1, 8), phases=st.sampled_from(["all", "deft", "automl"]))
def test_more_work_never_costs_less(trials, iterations, phases):
    w = replace(WORK, phases=phases, trials=trials, max_iterations=iterations)
    base = compute_budget.estimate(w, COSTS)["total_sec"]
    assert compute_budget.estimate(replace(w, trials=trials + 1), COSTS)["total_sec"] >= base
    assert compute_budget.estimate(replace(w, max_iterations=iterations + 1), COSTS)["total_sec"] >= base


@settings(max_examples=200, deadline=None)
@given(limit=st.floats(60, 20000), lasts=st.one_of(st.none(), st.integers(1, 12)),
       phases=st.sampled_from(["all", "deft", "automl"]))
def test_the_budget_fit_fits_and_is_the_largest_of_its_policy(limit, lasts, phases):
    w = replace(WORK, phases=phases)
    try:
        chosen, out = compute_budget.fit(limit, w, COSTS, trials=None, max_iterations=None, sdg_lasts=lasts)
    except UserError as exc:
        smallest = replace(w, trials=1, max_iterations=1)
        assert compute_budget.estimate(smallest, COSTS)["total_sec"] > limit and "--time-limit" in str(exc)
        return
    assert out["estimate"]["total_sec"] <= limit
    cap = min(defaults.TIME_BUDGET_MAX_ITERATIONS, lasts or defaults.TIME_BUDGET_MAX_ITERATIONS)
    if phases != "automl":
        assert 1 <= chosen.max_iterations <= cap
        if chosen.max_iterations < cap:
            assert compute_budget.estimate(replace(chosen, max_iterations=chosen.max_iterations + 1), COSTS)["total_sec"] > limit
    if phases != "deft" and chosen.trials < defaults.TIME_BUDGET_MAX_TRIALS:
        assert compute_budget.estimate(replace(chosen, trials=chosen.trials + 1), COSTS)["total_sec"] > limit


def test_values_the_user_gave_are_kept():
    chosen, out = compute_budget.fit(1e6, WORK, COSTS, trials=2, max_iterations=None)
    assert chosen.trials == 2 and chosen.max_iterations == defaults.TIME_BUDGET_MAX_ITERATIONS
    chosen, _ = compute_budget.fit(1e6, WORK, COSTS, trials=None, max_iterations=2, sdg_lasts=1)
    assert chosen.max_iterations == 2 and chosen.trials == defaults.TIME_BUDGET_MAX_TRIALS


def test_the_sdg_pool_caps_the_iterations_a_time_limit_plans():
    chosen, out = compute_budget.fit(1e6, WORK, COSTS, trials=None, max_iterations=None, sdg_lasts=3)
    assert chosen.max_iterations == 3 and "SDG pool lasts 3" in out["notes"][0]


def test_epoch_time_from_a_tao_status_file(tmp_path):
    status = tmp_path / "status.json"
    status.write_text("\n".join(json.dumps(x) for x in [
        {"status": "STARTED", "message": "Starting"},
        {"status": "RUNNING", "epoch": 0, "time_per_epoch": "0:01:02.500000", "kpi": {}},
        "not json", {"status": "RUNNING", "epoch": 1, "time_per_epoch": "0:01:04"}]) + "\nnot json\n")
    assert compute_budget.epoch_seconds(status) == 64.0
    assert compute_budget.epoch_seconds(tmp_path / "absent.json") is None


def test_a_configured_epoch_time_needs_no_training(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "2", check=True)
    costs = compute_budget.measure(ws, "docker", epoch_sec=600.0)
    assert costs.train_job_sec == defaults.EXTERNAL_JOB_SEC and costs.decode_sec_per_row == 0
    w = compute_budget.workload(ws, phases="all", trials=5, max_iterations=2, num_sdg=20, top_k_per_target=5,
                          algorithm="bayesian")
    e = compute_budget.estimate(w, costs)
    assert e["per_trial_sec"] >= w.epochs * 600 + 2 * defaults.EXTERNAL_JOB_SEC
    assert e["total_sec"] >= (2 * 5 + 2) * w.epochs * 600  # 10 trials + 2 iterations, each a full training


# ------------------------------------------------------------------ against a real run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


def pipeline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/run_pipeline.py"), *args], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, TAO_AOI_NO_REEXEC="1"), stdin=subprocess.DEVNULL)


def test_without_yes_the_time_limit_estimate_is_shown_and_nothing_starts(tiny, tmp_path):
    results = tmp_path / "run"
    proc = pipeline("--workspace", str(tiny), "--results-dir", str(results), "--kpi-target", KPI,
                    "--time-limit", "2m", "--trials", "2")
    assert proc.returncode == 1, proc.stderr
    assert "time limit 2m -> max_iterations" in proc.stdout and "estimated" in proc.stdout
    assert "pass --yes" in proc.stdout and not results.exists()


def test_time_limit_estimate_is_within_2x_of_the_real_run(tiny, tmp_path):
    results = tmp_path / "run"
    args = ["--workspace", str(tiny), "--results-dir", str(results), "--kpi-target", KPI, "--time-limit", "40s",
            "--trials", "3", "--yes", "--quiet", "--json"]
    proc = pipeline(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    ps = json.loads((results / "pipeline_state.json").read_text())
    budget = ps["budget"]
    assert budget["time_limit"] == "40s" and budget["trials"] == 3 and budget["max_iterations"] >= 1
    assert ps["options"]["max_iterations"] is None  # the user gave a time limit, not a number
    assert len(summary["trajectory"]) == 1 + budget["max_iterations"] + 1  # baseline, iterations, Phase 3
    ratio = budget["estimate"]["total_sec"] / summary["wall_sec"]
    print(f"estimate {budget['estimate']['total_sec']} s vs run {summary['wall_sec']} s: ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0, (budget, summary["wall_sec"])
    assert "time limit 40s -&gt; max_iterations" in (results / "DEFT_Loop_Report.html").read_text()
    again = pipeline(*args)  # the same command: the run is resumed with the budget it was confirmed with
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((results / "pipeline_state.json").read_text())["budget"] == budget


def test_another_time_limit_on_a_resume_is_refused_before_any_dry_run(tiny, tmp_path):
    results = tmp_path / "run"
    first = pipeline("--workspace", str(tiny), "--results-dir", str(results), "--kpi-target", KPI, "--phases", "deft",
                     "--max-iterations", "1", "--yes", "--quiet")
    assert first.returncode == 0, first.stderr[-2000:]
    proc = pipeline("--workspace", str(tiny), "--results-dir", str(results), "--kpi-target", KPI, "--phases", "deft",
                    "--time-limit", "1h", "--yes", "--quiet")
    assert proc.returncode == 2 and "time_limit" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_docker_dry_run_times_one_tao_job(fake_docker, tmp_path):
    """Against the fake docker: one 1-epoch job and one inference job, no local-only measurement."""
    from support import tao_workspace

    ws = tao_workspace.make(tmp_path / "ws")
    costs = compute_budget.measure(ws, "docker")
    assert costs.source.startswith("measured 1-epoch docker job") and costs.decode_sec_per_row == 0
    assert costs.epoch_sec_per_row > 0 and costs.train_job_sec >= 0 and costs.rca_sec > 0
    runs = [json.loads(x)["argv"] for x in (fake_docker / "calls.jsonl").read_text().splitlines()]
    assert sum(1 for a in runs if a[0] == "run") == 2  # a training and an inference, nothing more
