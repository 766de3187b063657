"""Durable run state: init, the single writer, transitions, refusals, retry, log integrity."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import deft_driver
from tao_aoi import atomic
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.state import deft_state, event_log, pipeline_state, schema_check, stages

KPI = "FAR < 2% at Recall=100%"


def init_args(results: Path, ws: Path, *extra: str) -> list[str]:
    return ["--results-dir", str(results), "--workspace", str(ws), "--max-iterations", "3", "--kpi-target", KPI,
            *extra]


def snapshot(results: Path) -> tuple[bytes, bytes]:
    return (results / "deft_state.json").read_bytes(), (results / "loop_log.jsonl").read_bytes()


def events(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "loop_log.jsonl").read_text().splitlines()]


@pytest.fixture
def run(tmp_path, stub_workspace, script) -> Path:
    results = tmp_path / "run"
    script("init_deft_state.py", *init_args(results, stub_workspace), check=True)
    return results


def test_init_writes_valid_state_and_first_event(run):
    st = json.loads((run / "deft_state.json").read_text())
    jsonschema.validate(st, schema_check.load_schema("deft_state"))
    assert st["status"] == "in_progress"
    assert st["metric_contract"]["name"] == "far_pct" and st["metric_contract"]["target"] == 2.0
    assert st["config"]["max_iterations"] == 3
    (ev,) = events(run)
    jsonschema.validate(ev, schema_check.load_schema("loop_event"))
    assert (ev["seq"], ev["stage"], ev["kind"]) == (1, "init", "commit")


def test_init_is_idempotent_and_refuses_a_different_config(run, stub_workspace, script):
    before = snapshot(run)
    again = script("init_deft_state.py", *init_args(run, stub_workspace))
    assert again.returncode == 0 and "resumed" in again.stdout
    other = script("init_deft_state.py", *init_args(run, stub_workspace, "--top-k-per-label", "7", "--num-sdg", "4"))
    assert other.returncode == 2
    assert "top_k_per_label=50" in other.stderr and other.stderr.count("\n") == 1
    assert snapshot(run) == before


def test_options_of_iterations_not_started_change_on_resume_and_are_recorded(run, stub_workspace, script):
    """num_sdg / top_k_per_target / min_similarity / max_iterations may change when a run resumes:
    one run/reconfigure commit records old, new and the iteration each applies from."""
    proc = script("init_deft_state.py", *init_args(run, stub_workspace, "--num-sdg", "4", "--min-similarity", "0.8"))
    assert proc.returncode == 0, proc.stderr
    assert "num_sdg 20 -> 4 (from iter1)" in proc.stdout
    st = deft_state.load(run)
    assert st["config"]["num_sdg"] == 4 and st["config"]["min_similarity"] == 0.8
    (change,) = st["config_changes"]
    assert change["changes"]["num_sdg"] == {"from": 20, "to": 4, "applies_from": "iter1"}
    last = events(run)[-1]
    assert (last["iter"], last["stage"], last["kind"]) == ("run", "reconfigure", "commit")
    jsonschema.validate(last, schema_check.load_schema("loop_event"))
    assert stages.expected_next(st) == stages.Step("baseline", "train")  # the position is unchanged
    again = script("init_deft_state.py", *init_args(run, stub_workspace, "--num-sdg", "4", "--min-similarity", "0.8"))
    assert again.returncode == 0 and len(deft_state.load(run)["config_changes"]) == 1  # idempotent


def test_applies_from_follows_the_stage_that_reads_the_option(run):
    deft_driver.drive(run, until=stages.Step("iter1", "mining"))  # routing and sdg of iter1 are done
    st, _ = deft_state.reconfigure(run, {"num_sdg": 3, "top_k_per_target": 2})
    changes = st["config_changes"][-1]["changes"]
    assert changes["num_sdg"]["applies_from"] == "iter2" and changes["top_k_per_target"]["applies_from"] == "iter1"


def test_max_iterations_lowered_below_the_unfinished_iteration_finalizes(run):
    deft_driver.drive(run, until=stages.Step("iter2", "sdg"))
    with pytest.raises(UserError, match="below iteration 1"):
        deft_state.reconfigure(run, {"max_iterations": 0})
    st, _ = deft_state.reconfigure(run, {"max_iterations": 1})
    assert stages.expected_next(st) == stages.Step("run", "finalize")
    assert stages.stop_reason(st) == "max_iterations"
    deft_driver.drive(run)
    st = deft_state.load(run)
    assert st["status"] == "complete" and st["best_iteration"] in ("baseline", "iter1")
    with pytest.raises(UserError, match="finished"):
        deft_state.reconfigure(run, {"num_sdg": 1})


@pytest.mark.parametrize("args, needle", [
    (["--max-iterations", "0"], "--max-iterations must be >= 1"),
    (["--kpi-target", "FAR < 2"], "% sign"),
    (["--kpi-target", "speed > 3%"], "unknown metric"),
    (["--min-similarity", "1.5"], "--min-similarity"),
])
def test_init_rejects_bad_arguments(tmp_path, stub_workspace, script, args, needle):
    base = {"--max-iterations": "3", "--kpi-target": KPI}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv] + [a for a in args if a not in base and a not in base.values()]
    proc = script("init_deft_state.py", "--results-dir", str(tmp_path / "r"), "--workspace", str(stub_workspace), *flat)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert not (tmp_path / "r" / "deft_state.json").exists()


def test_init_rejects_missing_workspace_inputs(tmp_path, stub_workspace, script):
    (stub_workspace / "kpi" / "testing_set.csv").unlink()
    proc = script("init_deft_state.py", *init_args(tmp_path / "r", stub_workspace))
    assert proc.returncode == 2 and "testing_set.csv" in proc.stderr


def test_full_run_follows_the_transition_table(run):
    final = deft_driver.drive(str(run))
    seen = [(e["iter"], e["stage"]) for e in events(run) if e["kind"] == "commit"]
    expected = [("run", "init"), ("baseline", "train"), ("baseline", "evaluate"), ("baseline", "rca")]
    for n in (1, 2, 3):
        expected += [(f"iter{n}", s) for s in ("routing", "sdg", "mining", "assemble", "train", "evaluate")]
        if n < 3:
            expected.append((f"iter{n}", "rca"))
    expected.append(("run", "finalize"))
    assert seen == expected
    assert final["status"] == "complete"
    assert final["stop_reason"] == "max_iterations"
    assert final["best_iteration"] == "iter3"
    assert [e["seq"] for e in events(run)] == list(range(1, len(events(run)) + 1))
    assert deft_state.load(run) == json.loads((run / "deft_state.json").read_text())


def test_metric_met_stops_early(tmp_path, stub_workspace, script):
    results = tmp_path / "r"
    script("init_deft_state.py", "--results-dir", str(results), "--workspace", str(stub_workspace),
           "--max-iterations", "5", "--kpi-target", "FAR < 4% at Recall=100%", check=True)
    final = deft_driver.drive(str(results))
    assert final["stop_reason"] == "metric_met"
    assert "iter3" not in final["iterations"]  # iter2 has FAR 3.33% < 4%
    assert final["iterations"]["iter2"]["metric_result"]["passed"] is True


def test_passed_is_recomputed_not_trusted(run, script):
    deft_driver.drive(str(run))  # reach a state where we can inspect an evaluate
    st = deft_state.load(run)
    base = st["iterations"]["baseline"]["metric_result"]
    assert base["value"] == 10.0 and base["passed"] is False


def _commit(script, run, *args):
    return script("commit_stage.py", "--results-dir", str(run), *args)


def test_out_of_order_commit_is_refused_and_changes_nothing(run, script):
    before = snapshot(run)
    proc = _commit(script, run, "--iter", "baseline", "--stage", "evaluate")
    assert proc.returncode == 2
    assert "baseline/train is expected next" in proc.stderr and proc.stderr.count("\n") == 1
    assert snapshot(run) == before


@pytest.mark.parametrize("mutate, needle", [
    ("missing", "does not exist or is empty"),
    ("outside", "must be inside"),
    ("no_flag", "needs --checkpoint"),
    ("foreign_flag", "does not belong to stage"),
])
def test_bad_train_artifacts_are_refused(run, tmp_path, script, mutate, needle):
    ckpt = run / "baseline" / "train" / "best.ckpt"
    spec = tmp_path / "spec.yaml"
    spec.write_text("x: 1\n")
    args = ["--iter", "baseline", "--stage", "train", "--training-spec", str(spec)]
    if mutate == "missing":
        args += ["--checkpoint", str(ckpt)]
    elif mutate == "outside":
        other = run / "elsewhere.ckpt"
        other.write_text("w")
        args += ["--checkpoint", str(other)]
    elif mutate == "foreign_flag":
        ckpt.parent.mkdir(parents=True)
        ckpt.write_text("w")
        args += ["--checkpoint", str(ckpt), "--gaps", str(spec)]
    before = snapshot(run)
    proc = _commit(script, run, *args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert snapshot(run) == before


def test_assemble_proof_must_show_a_clean_merge(run):
    # walk to the assemble stage of iter1
    while True:
        st = deft_state.load(run)
        step = stages.expected_next(st)
        if step == stages.Step("iter1", "assemble"):
            break
        from tao_aoi.state import stage_plan
        argv = stage_plan.plan(st, step, str(run))["commit"]
        deft_driver.fake_outputs(st, step, argv)
        deft_state.commit(run, label=step.iter, stage=step.stage,
                     artifacts={k.replace("-", "_"): v for k, v in deft_driver._flags(argv).items()
                                if k not in ("results-dir", "iter", "stage")})
    from tao_aoi.state import stage_plan
    argv = stage_plan.plan(st, step, str(run))["commit"]
    deft_driver.fake_outputs(st, step, argv)
    flags = deft_driver._flags(argv)
    atomic.write_json(flags["validation-report"], {"missing_file_count": 0, "leakage_count": 3,
                                                   "bad_label_count": 0, "new_rows": 5})
    arts = {k.replace("-", "_"): v for k, v in flags.items() if k not in ("results-dir", "iter", "stage")}
    with pytest.raises(UserError, match="leakage_count=3"):
        deft_state.commit(run, label="iter1", stage="assemble", artifacts=arts)
    atomic.write_json(flags["validation-report"], {"missing_file_count": 0, "leakage_count": 0,
                                                   "bad_label_count": 0, "new_rows": 0})
    with pytest.raises(UserError, match="new_rows=0"):
        deft_state.commit(run, label="iter1", stage="assemble", artifacts=arts)


def test_failed_stage_blocks_others_and_can_be_retried(run, tmp_path, script):
    proc = _commit(script, run, "--iter", "baseline", "--stage", "train", "--status", "error",
                   "--summary", "train.py exited 2: images/x.png unreadable")
    assert proc.returncode == 0
    st = deft_state.load(run)
    assert st["status"] == "failed" and st["failure"]["stage"] == "train"
    assert st["iterations"]["baseline"]["status"] == "failed"
    nxt = script("next_stage.py", "--results-dir", str(run), "--json", check=True)
    out = json.loads(nxt.stdout)
    assert out["retry"] is True and out["stage"] == "train"
    before = snapshot(run)
    refused = _commit(script, run, "--iter", "baseline", "--stage", "evaluate")
    assert refused.returncode == 2 and "failed at baseline/train" in refused.stderr
    assert snapshot(run) == before
    ckpt = run / "baseline" / "train" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("weights")
    spec = tmp_path / "spec.yaml"
    spec.write_text("x: 1\n")
    ok = _commit(script, run, "--iter", "baseline", "--stage", "train", "--checkpoint", str(ckpt),
                 "--training-spec", str(spec))
    assert ok.returncode == 0, ok.stderr
    st = deft_state.load(run)
    assert st["status"] == "in_progress" and st["failure"] is None
    assert stages.expected_next(st) == stages.Step("baseline", "evaluate")


def test_phase3_registration_after_finalize(run):
    final = deft_driver.drive(str(run), phase3=True)
    assert final["status"] == "complete"
    assert final["iterations"]["final_automl"]["status"] == "complete"
    # synthetic final_automl FAR 2.0 beats iter3's 2.5 -> it becomes the deliverable
    assert final["best_iteration"] == "final_automl"
    finals = [e for e in events(run) if e["stage"] == "finalize"]
    assert len(finals) == 2


def test_complete_run_refuses_more_commits(run, script):
    deft_driver.drive(str(run), phase3=True)
    proc = _commit(script, run, "--iter", "iter4", "--stage", "routing")
    assert proc.returncode == 2 and "complete" in proc.stderr


def test_corrupt_last_log_line_is_refused_naming_the_line(run, script):
    with open(run / "loop_log.jsonl", "a") as fh:
        fh.write('{"seq": 2, "oops"\n')
    before = snapshot(run)
    proc = script("log_stage.py", "--results-dir", str(run), "--iter", "baseline", "--stage", "note",
                  "--status", "ok", "--summary", "hello")
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "corrupt" in proc.stderr
    proc2 = _commit(script, run, "--iter", "baseline", "--stage", "train")
    assert proc2.returncode == 2 and "line 2" in proc2.stderr
    assert snapshot(run) == before


def test_partial_last_line_is_refused(run, script):
    with open(run / "loop_log.jsonl", "a") as fh:
        fh.write('{"seq": 2')
    proc = script("log_stage.py", "--results-dir", str(run), "--iter", "baseline", "--stage", "note",
                  "--status", "ok", "--summary", "x")
    assert proc.returncode == 2 and "line 2 is incomplete" in proc.stderr


def test_edited_log_seq_gap_is_refused(run):
    lines = (run / "loop_log.jsonl").read_text().splitlines()
    ev = json.loads(lines[0])
    ev["seq"] = 5
    (run / "loop_log.jsonl").write_text(json.dumps(ev) + "\n")
    with pytest.raises(UserError, match="line 1 has seq 5"):
        deft_state.load(run)


def test_kill_between_log_append_and_state_write_rolls_forward(run, tmp_path, monkeypatch):
    ckpt = run / "baseline" / "train" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("w")
    spec = tmp_path / "s.yaml"
    spec.write_text("a: 1\n")

    def die(*a, **k):
        raise SystemExit("killed")

    monkeypatch.setattr(deft_state.atomic, "write_json", die)
    with pytest.raises(SystemExit):
        deft_state.commit(run, label="baseline", stage="train", artifacts={"checkpoint": str(ckpt), "training_spec": str(spec)})
    monkeypatch.undo()
    raw = json.loads((run / "deft_state.json").read_text())
    assert raw["last_seq"] == 1 and events(run)[-1]["seq"] == 2  # file lags the log by one commit
    st = deft_state.load(run)
    assert st["last_seq"] == 2 and st["last_commit"]["stage"] == "train"
    assert deft_state.repair(run) is True
    assert json.loads((run / "deft_state.json").read_text()) == st
    assert stages.expected_next(st) == stages.Step("baseline", "evaluate")


def test_log_before_init_then_init_continues_the_sequence(tmp_path, stub_workspace, script):
    results = tmp_path / "r"
    results.mkdir()
    script("log_stage.py", "--results-dir", str(results), "--iter", "run", "--stage", "preflight", "--status", "ok",
           "--summary", "checks passed", check=True)
    script("init_deft_state.py", *init_args(results, stub_workspace), check=True)
    assert [(e["seq"], e["stage"]) for e in events(results)] == [(1, "preflight"), (2, "init")]
    assert deft_state.load(results)["last_seq"] == 2


def test_next_stage_prints_commands_that_exist(run, script):
    out = json.loads(script("next_stage.py", "--results-dir", str(run), "--json", check=True).stdout)
    assert (out["iteration"], out["stage"]) == ("baseline", "train")
    assert out["commands"][0].startswith("python3 ") and "scripts/train.py" in out["commands"][0]
    assert "commit_stage.py" in out["commit"]
    human = script("next_stage.py", "--results-dir", str(run), check=True).stdout
    assert "next: baseline/train" in human


def test_generated_validators_are_current():
    """schema_validators.py must be regenerated whenever a schema file changes."""
    assert Path(schema_check.GENERATED).read_text() == schema_check.generate_code(),\
        "run: python3 -m tao_aoi.state.schema_check --regenerate (from scripts/)"


def test_schema_validators_agree_with_jsonschema(run):
    """The compiled validators (run time) and jsonschema (reference) accept and reject the same documents."""
    from tao_aoi.state import schema_validators

    deft_driver.drive(str(run))
    pipeline_state.save(Results.at(run), pipeline_state.new({"phases": "deft"}), "pipeline started")
    docs = [("deft_state", deft_state.load(run)), ("pipeline_state", pipeline_state.load(Results.at(run)))] +\
        [("loop_event", e) for e in events(run)]
    broken = []
    for name, doc in docs[:6]:
        for key in list(doc)[:12]:
            for junk in ({"unexpected": [1]}, None, -3, "x"):
                bad = dict(doc)
                bad[key] = junk
                broken.append((name, bad))
            dropped = dict(doc)
            del dropped[key]
            broken.append((name, dropped))
    rejected = 0
    for name, doc in docs + broken:
        ref_ok = jsonschema.Draft7Validator(schema_check.load_schema(name)).is_valid(doc)
        try:
            schema_validators.VALIDATORS[name](doc)
            fast_ok = True
        except schema_check.SchemaViolation:
            fast_ok = False
        assert ref_ok == fast_ok, (name, doc)
        rejected += not ref_ok
    assert rejected > len(broken) // 2


def test_event_log_tail_reader_handles_long_logs(tmp_path):
    log = tmp_path / "loop_log.jsonl"
    for i in range(1, 3001):
        event_log.append(log, event_log.make_event(i, iter="baseline", stage="note", status="ok",
                                                   summary="x" * (i % 50), duration_sec=0, kind="log"))
    assert event_log.next_seq(log) == 3001
    assert len(event_log.read_events(log)) == 3000


def test_state_scripts_import_no_pandas_or_numpy():
    """The state scripts run dozens of times per run: their cold start must stay near bare Python."""
    import subprocess
    import sys

    from conftest import SCRIPTS

    code = ("import sys; sys.path.insert(0, %r)\n"
            "import tao_aoi.commands.log_stage, tao_aoi.commands.commit_stage, tao_aoi.commands.next_stage\n"
            "import tao_aoi.commands.init_deft_state, tao_aoi.commands.repair_state, tao_aoi.state.deft_state, tao_aoi.state.stage_plan\n"
            "import tao_aoi.state.run_lock, tao_aoi.state.pipeline_state, tao_aoi.pipeline.run_progress\n"
            "import tao_aoi.analysis.spot_check\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'jsonschema', 'yaml') if m in sys.modules))") % str(SCRIPTS)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported by the state scripts: {out}"


def test_resolve_versions(script):
    ok = script("resolve_versions.py", "images.tao_toolkit.pyt", check=True)
    assert ok.stdout.strip().startswith("nvcr.io/nvidia/tao/tao-toolkit:")
    bad = script("resolve_versions.py", "images.tao_toolkit.nope")
    assert bad.returncode == 2 and "images.tao_toolkit.nope" in bad.stderr


def test_next_stage_prints_the_trajectory(run, script):
    """The skills tell the agent to report the trajectory from next_stage.py --json: it must be there."""
    deft_driver.drive(run)
    proc = script("next_stage.py", "--results-dir", run, "--json")
    out = json.loads(proc.stdout)
    st = deft_state.load(run)
    assert [t["iteration"] for t in out["trajectory"]] == ["baseline", "iter1", "iter2", "iter3"]
    assert [t["kpi_value"] for t in out["trajectory"]] == [st["iterations"][t]["metric_result"]["value"]
                                                            for t in ("baseline", "iter1", "iter2", "iter3")]
    assert out["kpi_target"] == KPI and out["best_iteration"] == st["best_iteration"]
    text = script("next_stage.py", "--results-dir", run).stdout
    assert "run complete" in text and "trajectory" in text and "iter3" in text
