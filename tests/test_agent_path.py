"""The agent's path through a DEFT run: next_stage.py --run, the spot check's reused verdicts, where a
three-phase run is while it goes, and one progress count for the whole run.

The end-to-end tests drive the tiny demo workspace with real stages (real CPU model), every call a
real CLI process as an agent makes it (tests/agent_driver.py); only the agent's verdicts are simulated.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, hide_sdg_goldens, make_stub_workspace, restore_sdg_goldens, run_script
from hypothesis import given, settings
from hypothesis import strategies as st

import agent_driver
import deft_driver
from support.lock_holder import holder
from tao_aoi.analysis import rca_report, spot_check
from tao_aoi.layout import Results
from tao_aoi.pipeline import run_progress
from tao_aoi.state import deft_state, event_log, pipeline_state, stages

KPI = "FAR < 0% at Recall=100%"  # no model meets it: the loop runs every iteration


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


def commits(results: Path) -> list[tuple[str, str, str]]:
    return [(e["iter"], e["stage"], e["status"]) for e in event_log.read_events(Results.at(results).log)
            if e["kind"] == "commit"]


# --------------------------------------------------------------------------- the whole path, end to end


def test_two_iterations_in_at_most_six_calls_and_the_same_run_as_headless(tiny, tmp_path):
    """init + next_stage.py --run until complete: a review stop at each rca with a report to fill, the
    second asking only about samples the first did not judge; the stages and data equal a headless run's."""
    results = tmp_path / "run"
    agent = agent_driver.Agent()
    agent_driver.init(agent, tiny, results, 2, KPI)
    stops = agent_driver.with_run(agent, results)
    assert agent.count("cli") <= 6, agent.calls
    assert [(s["stopped"], s["step"]) for s in stops] == [("review", "baseline/rca"), ("review", "iter1/rca"),
                                                           ("complete", None)]
    # every stage ran once and was committed in the table's order; nothing failed
    expected = [("baseline", "train"), ("baseline", "evaluate"), ("baseline", "rca")]
    expected += [("iter1", s) for s in stages.ITER_STAGES] + [("iter2", s) for s in stages.ITER_STAGES[:-1]]
    expected += [("run", "finalize")]
    assert commits(results) == [("run", "init", "ok")] + [(i, s, "ok") for i, s in expected]
    ran = [r["step"] for s in stops for r in s["ran"] if r["status"] == "ok"]
    assert ran == [f"{i}/{s}" for i, s in expected]
    # the review: all 10 sheets the first time, then only samples no review judged before
    first, second = agent.sheets
    assert len(first) == 10 and 0 < len(second) < 10
    ledger = spot_check.load(results / "spot_check_verdicts.json")
    reviewed = json.loads((results / "iter1" / "rca" / "metrics.json").read_text())["rca_images"]
    reused = [s for s in reviewed if s.get("reused_from")]
    assert len(reused) == 10 - len(second) and all(s["reused_from"] == "baseline" for s in reused)
    assert all(ledger[spot_check.key(s["input_path"], s["object_name"])]["from"] == "baseline" for s in reused)
    report = (results / "iter1" / "rca" / "RCA_Report.md").read_text()
    assert f"{len(reused)} of 10 verdicts reused from earlier reviews" in report and not rca_report.report_problems(report)
    assert stops[1]["review"]["reused"] == len(reused)
    # counts say their unit
    routing = next(r["summary"] for r in stops[1]["ran"] if r["step"] == "iter1/routing")
    assert "samples x 2 lights = " in routing, routing
    # the same run as the headless runner's on the same workspace
    reference = tmp_path / "headless"
    run_script("run_pipeline.py", "--workspace", tiny, "--results-dir", reference, "--phases", "deft",
               "--max-iterations", "2", "--kpi-target", KPI, "--yes", "--quiet", check=True, timeout=900)
    ours, theirs = deft_state.load(results), deft_state.load(reference)
    assert deft_state.trajectory(ours) == deft_state.trajectory(theirs)
    assert ours["best_iteration"] == theirs["best_iteration"]
    for n in (1, 2):
        rel = Path(f"iter{n}/dataset/train_combined_iter{n}.csv")
        assert len((results / rel).read_text().splitlines()) == len((reference / rel).read_text().splitlines())
    assert not (results / ".run_owner.json").exists()
    # and once complete, next_stage.py says so with the trajectory
    done = run_script("next_stage.py", "--results-dir", results, "--run")
    assert done.returncode == 0 and "run complete" in done.stdout and "no stage committed" in done.stdout


def test_a_review_left_open_stops_again_without_rerunning_the_analysis(tiny, tmp_path):
    results = tmp_path / "run"
    agent = agent_driver.Agent()
    agent_driver.init(agent, tiny, results, 1, KPI)
    first = agent.cli("next_stage.py", "--results-dir", str(results), "--run")
    assert "stopped at baseline/rca: it needs your review (10 of 10 sheets to look at" in first.stdout
    assert f"then:    python3 {ROOT / 'scripts' / 'next_stage.py'} --results-dir {results} --run" in first.stdout
    report = results / "baseline" / "rca" / "RCA_Report.md"
    mtime = report.stat().st_mtime_ns
    again = agent.cli("next_stage.py", "--results-dir", str(results), "--run", "--json")
    out = json.loads(again.stdout)
    assert out["stopped"] == "review" and out["ran"] == [] and report.stat().st_mtime_ns == mtime
    assert len(out["review"]["to_look_at"]) == 10 and out["review"]["open"]
    # the printed path shows the same review and the check that records it
    shown = agent.cli("next_stage.py", "--results-dir", str(results))
    assert "review: " in shown.stdout and "--check-report" in shown.stdout and "--verdicts" in shown.stdout
    assert commits(results)[-1] == ("baseline", "evaluate", "ok")


def test_a_hard_stop_is_committed_and_the_next_call_retries_it(tiny, tmp_path):
    """A pool sample without its OK golden stops iter1/sdg (silent drop): exit 2 with what ran, the
    reason and the call; restored, the same call retries the stage and the run goes on."""
    ws = tmp_path / "ws"
    shutil.copytree(tiny, ws, ignore=shutil.ignore_patterns("results"))
    hide_sdg_goldens(ws, tmp_path / "moved")
    results = tmp_path / "run"
    agent = agent_driver.Agent()
    agent_driver.init(agent, ws, results, 1, KPI)
    agent.cli("next_stage.py", "--results-dir", str(results), "--run", check=True)
    agent.review(results / "baseline" / "rca" / "RCA_Report.md")
    stop = agent.cli("next_stage.py", "--results-dir", str(results), "--run", check=False)
    assert stop.returncode == 2 and "silent drop" in stop.stderr and stop.stderr.strip().count("\n") == 0
    assert "stopped at iter1/sdg: hard stop" in stop.stdout and "--run" in stop.stdout.splitlines()[-1]
    assert "baseline/rca" in stop.stdout and "iter1/routing" in stop.stdout  # what it did before the stop
    assert commits(results)[-1] == ("iter1", "sdg", "error")
    restore_sdg_goldens(ws, tmp_path / "moved")
    out = json.loads(agent.cli("next_stage.py", "--results-dir", str(results), "--run", "--json", check=True).stdout)
    assert out["stopped"] == "complete" and out["ran"][0]["step"] == "iter1/sdg"
    assert deft_state.load(results)["status"] == "complete"


def test_run_refuses_a_folder_another_run_holds_naming_it(tmp_path, stub_workspace, script):
    results = tmp_path / "run"
    script("init_deft_state.py", "--results-dir", results, "--workspace", stub_workspace, "--max-iterations", "1",
           "--kpi-target", KPI, check=True)
    proc = holder(results)
    try:
        refused = script("next_stage.py", "--results-dir", results, "--run")
        assert refused.returncode == 2 and f"pid {proc.pid}" in refused.stderr and "one run per results folder" in refused.stderr
    finally:
        proc.kill()
        proc.wait()
    assert commits(results) == [("run", "init", "ok")]


# --------------------------------------------------------------------------- a three-phase run, watched


def _pipeline_run(results: Path, ws: Path, *, done: list[str], trials_done: dict[str, int], trials: int = 3) -> None:
    """A three-phase run's own records as run_pipeline.py writes them: options, phases done, trial notes."""
    R = Results.at(results)
    ps = pipeline_state.new({"workspace": str(ws), "backend": "local", "phases": "all", "max_iterations": 2,
                             "kpi_target": "FAR < 2% at Recall >= 100%", "trials": trials, "algorithm": "bayesian",
                             "num_sdg": 20, "top_k_per_target": 5, "min_similarity": None, "seed": 0,
                             "time_limit": None})
    ps["done"] = done
    pipeline_state.save(R, ps, "pipeline started")
    for study, n in trials_done.items():
        for i in range(n):
            deft_state.log(R.root, label="run", stage="automl", status="ok",
                           summary=run_progress.trial_note(study, i, "PRUNED" if i == 1 else "COMPLETE", "val FAR 1%"))


def test_next_stage_reports_phase_1_progress_not_a_missing_init(tmp_path, stub_workspace, script):
    results = tmp_path / "run"
    _pipeline_run(results, stub_workspace, done=[], trials_done={"phase1": 2})
    out = script("next_stage.py", "--results-dir", results)
    assert out.returncode == 0, out.stderr
    assert "Phase 1 AutoML: 2 of 3 trials finished (1 COMPLETE, 1 PRUNED)" in out.stdout
    assert "step 2/26 of the run (3 Phase 1 trials + 17 DEFT stages + 3 Phase 3 trials + 3 Phase 3 stages" in out.stdout
    assert "no process runs it now" in out.stdout and "run_pipeline.py --results-dir" in out.stdout
    js = json.loads(script("next_stage.py", "--results-dir", results, "--json").stdout)
    assert js["phase"]["name"] == "automl1" and js["phase"]["trials"]["finished"] == 2 and js["stage"] is None
    assert js["progress"] == {"step": 2, "steps": 26, "units": run_progress.RunCount(
        max_iterations=2, phases="all", trials=3).units()}
    resume = run_script("run_pipeline.py", "--help")  # every flag of the resume call is one run_pipeline.py takes
    for flag in js["phase"]["resume"][1::2]:
        if flag.startswith("--"):
            assert flag in resume.stdout, flag
    refused = script("next_stage.py", "--results-dir", results, "--run")
    assert refused.returncode == 2 and "Phase 1 AutoML" in refused.stderr and "run_pipeline.py" in refused.stderr
    early = script("commit_stage.py", "--results-dir", results, "--iter", "baseline", "--stage", "train")
    assert early.returncode == 2 and "init_deft_state.py" not in early.stderr  # no hint that goes in circles
    assert f"next_stage.py --results-dir {results} shows where it is" in early.stderr
    proc = holder(results)
    try:
        watched = script("next_stage.py", "--results-dir", results)
        assert watched.returncode == 0 and f"pid {proc.pid}" in watched.stdout and "do not run stages" in watched.stdout
    finally:
        proc.kill()
        proc.wait()


def test_next_stage_reports_phase_3_progress_after_the_deft_loop(tmp_path, stub_workspace, script):
    results = tmp_path / "run"
    _pipeline_run(results, stub_workspace, done=["automl1"], trials_done={"phase1": 3})
    script("init_deft_state.py", "--results-dir", results, "--workspace", stub_workspace, "--max-iterations", "2",
           "--kpi-target", "FAR < 2% at Recall=100%", check=True)
    deft_driver.drive(results, with_notes=False, far_of=lambda n: 10.0)
    ps = pipeline_state.load(Results.at(results))
    ps["done"] = ["automl1", "deft"]
    pipeline_state.save(Results.at(results), ps, "deft done")
    for i in range(2):
        deft_state.log(results, label="run", stage="automl", status="ok",
                       summary=run_progress.trial_note("phase3", i, "COMPLETE"))
    out = script("next_stage.py", "--results-dir", results)
    assert out.returncode == 0, out.stderr
    assert "Phase 3 AutoML: 2 of 3 trials finished (2 COMPLETE); step 22/26 of the run" in out.stdout
    assert "trajectory" in out.stdout and "run complete" in out.stdout


# --------------------------------------------------------------------------- the progress count


def _states(results: Path) -> list[dict]:
    """The DEFT state after each commit, replayed from the log."""
    out, cur = [], None
    for e in event_log.read_events(Results.at(results).log):
        if e["kind"] == "commit":
            cur = deft_state.apply_patch(cur, e)
            out.append(cur)
    return out


@settings(max_examples=12, deadline=None)
@given(iterations=st.integers(1, 3), trials=st.integers(0, 4), met_at=st.integers(0, 4), phases=st.sampled_from(["all", "deft"]))
def test_one_count_for_the_whole_run_goes_up_by_one_and_ends_at_its_total(tmp_path_factory, iterations, trials,
                                                                            met_at, phases):
    """Phase 1 trials, every DEFT commit, Phase 3 trials and commits: 1, 2, ... total with no step shown
    twice; a loop that meets the KPI early jumps to the end of its part."""
    tmp = tmp_path_factory.mktemp("count")
    ws = make_stub_workspace(tmp / "ws")
    results = tmp / "run"
    from tao_aoi.commands import init_deft_state

    init_deft_state.main(["--results-dir", str(results), "--workspace", str(ws), "--max-iterations", str(iterations),
                          "--kpi-target", "FAR < 2% at Recall=100%"])
    deft_driver.drive(results, with_notes=False, phase3=phases == "all",
                      far_of=lambda n: 1.0 if n >= met_at and n != 4 else 10.0)
    count = run_progress.RunCount(max_iterations=iterations, phases=phases, trials=trials if phases == "all" else 0)
    seen = [count.at_trial("automl1", k) for k in range(1, count.trials + 1)] if phases == "all" else []
    states = _states(results)[1:]  # after init: every stage commit
    for i, s in enumerate(states):
        seen.append(count.at_state(s))
        if phases == "all" and s["status"] == "complete" and "final_automl" not in s["iterations"]:
            seen += [count.at_trial("automl3", k) for k in range(1, trials + 1)]
    assert seen == sorted(set(seen)) and seen[-1] == count.total  # rising, never repeated, ends at the total
    met = any(s.get("stop_reason") == "metric_met" for s in states)
    if not met:
        assert seen == list(range(1, count.total + 1))
    assert count.units().endswith(f"= {count.total} steps")


# --------------------------------------------------------------------------- the verdict ledger


def _sheet(path: str, obj: str, label: str) -> dict:
    return {"input_path": path, "object_name": obj, "label": label, "file": f"rca_images/{obj}.png"}


def _reviewed_report(tmp: Path, sheets: list[dict], verdicts: list[tuple[str, str]], iteration: str = "baseline") -> Path:
    d = tmp / iteration / "rca"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"rca_images": sheets, "report_mode": "agent"}))
    rows = "\n".join(f"| {i} | {s['label']} | {s['object_name']} | 0.5 | 0.1 | ![x]({s['file']}) | {v} | {why} |"
                     for i, (s, (v, why)) in enumerate(zip(sheets, verdicts), 1))
    (d / "RCA_Report.md").write_text(f"# RCA report\n\n{rca_report.SPOT_SECTION}\n\n| # | label | object_name | siamese_score "
                                     f"| weakness | image | verdict | why |\n|---|---|---|---|---|---|---|---|\n{rows}\n\n"
                                     f"## 6. Kept samples\n")
    return d / "RCA_Report.md"


def test_verdicts_are_reused_per_sample_and_label_and_a_change_is_kept(tmp_path):
    ledger = tmp_path / "spot_check_verdicts.json"
    first = [_sheet("./b1//top", "C1", "PASS"), _sheet("b2/top", "R2", "MISSING"), _sheet("b3/top", "R3", "BRIDGE")]
    report = _reviewed_report(tmp_path, first, [("edge case", "faint | glare"), ("systematic", "dark pad"),
                                                ("mislabeled", "bridge visible")])
    assert spot_check.record(report, ledger) == {"sheets": 3, "new": 3, "total": 3}
    assert spot_check.record(report, ledger)["new"] == 0  # rerunning records the same
    later = [_sheet("b1/top", "C1", "PASS"), _sheet("b2/top", "R2", "MISSING"), _sheet("b3/top", "R3", "PASS"),
             _sheet("b4/top", "U4", "PASS")]
    assert spot_check.reuse(later, ledger) == 2  # same folder however spelled; a relabelled sample is asked again
    assert [s.get("reused_from") for s in later] == ["baseline", "baseline", None, None]
    assert later[0]["why"] == "faint | glare"
    cells = [rca_report.review_cells(s) for s in later]
    assert cells[2] == [rca_report.TODO, rca_report.TODO] and cells[0][1].endswith("(reused from baseline)")
    # the agent keeps one reused verdict, changes the other, judges the new ones
    verdicts = [tuple(cells[0]), ("data quality", "golden shifted"), ("systematic", "x"), ("edge case", "y")]
    spot_check.record(_reviewed_report(tmp_path, later, verdicts, "iter1"), ledger)
    known = spot_check.load(ledger)
    assert known[spot_check.key("b1/top", "C1")] == {"verdict": "edge case", "why": "faint | glare", "label": "PASS",
                                                      "from": "baseline"}
    assert known[spot_check.key("b2/top", "R2")]["from"] == "iter1"
    assert known[spot_check.key("b3/top", "R3")] == {"verdict": "systematic", "why": "x", "label": "PASS", "from": "iter1"}


def test_a_broken_ledger_names_itself_and_the_fix(tmp_path):
    bad = tmp_path / "spot_check_verdicts.json"
    bad.write_text("{not json")
    with pytest.raises(Exception) as err:
        spot_check.load(bad)
    assert "gap_analysis.py --verdicts" in str(err.value) and "delete it" in str(err.value)


def test_next_stage_stays_light(tmp_path, stub_workspace, script):
    """next_stage.py (also while a three-phase run goes) imports no pandas or numpy."""
    results = tmp_path / "run"
    _pipeline_run(results, stub_workspace, done=[], trials_done={"phase1": 1})
    code = ("import sys, runpy; sys.argv = ['next_stage.py', '--results-dir', %r]; "
            "sys.path.insert(0, %r)\ntry:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'pandas' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'" %
            (str(results), str(ROOT / "scripts"), str(ROOT / "scripts" / "next_stage.py")))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"TAO_AOI_NO_REEXEC": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "Phase 1 AutoML" in proc.stdout, proc.stderr


def test_a_run_killed_after_phase_3_registered_resumes_at_its_evaluate(tiny, tmp_path, monkeypatch):
    """Between registering Phase 3's winner and evaluating it, DEFT's state is in progress again: a rerun
    must go on to that evaluate, not ask for a warm start from an unfinished DEFT run."""
    from tao_aoi.pipeline import deft_loop, phases

    opts = phases.Options(str(tiny), "local", "all", 1, "FAR < 2% at Recall >= 100%", 2, "bayesian", 20, 5, None, 0)
    R = Results.at(tmp_path / "run")
    real, calls = deft_loop.run_deft, []

    def killed_in_phase_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Phase 3's: final_automl is registered, its evaluate not run
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(deft_loop, "run_deft", killed_in_phase_3)
    with pytest.raises(KeyboardInterrupt):
        phases.run(opts, R, quiet=True)
    assert commits(R.root)[-1] == ("final_automl", "train", "ok")
    monkeypatch.setattr(deft_loop, "run_deft", real)
    summary = phases.run(opts, R, quiet=True)
    assert summary["deft_status"] == "complete" and [t["iteration"] for t in summary["trajectory"]][-1] == "final_automl"
    assert commits(R.root)[-3:] == [("final_automl", "train", "ok"), ("final_automl", "evaluate", "ok"),
                                    ("run", "finalize", "ok")]
    assert pipeline_state.load(R)["done"] == ["automl1", "deft", "automl3"]
