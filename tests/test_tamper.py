"""Tamper-evident state: hand edits of deft_state.json, pipeline_state.json or the log are refused by every
reader (exit 2, naming the file and the recovery), the recovery works, and a crash never looks like tampering."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deft_driver
from support.lock_holder import holder
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.state import deft_state, event_log, pipeline_state

KPI = "FAR < 2% at Recall=100%"
SDG_LABELS = ("PASS", "MISSING", "BRIDGE", "EXCESS_SOLDER")


# --------------------------------------------------------------------------- a real stopped run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


class Stopped:
    """run_pipeline.py --phases deft hard-stopped at iter1/sdg (pool samples without their OK golden)."""

    def __init__(self, tiny: Path, tmp: Path) -> None:
        self.ws = tmp / "ws"
        shutil.copytree(tiny, self.ws, ignore=shutil.ignore_patterns("results"))
        self.ok_dir = self.ws / "augmentation/anomalygen/original_image"
        self.moved = tmp / "moved"
        self.moved.mkdir()
        for label in SDG_LABELS:
            victim = sorted(self.ok_dir.glob(f"*+{label}_*"))[0]
            shutil.move(str(victim), self.moved / victim.name)
        self.R = tmp / "run"
        first = self.pipeline()
        assert first.returncode == 2 and "silent drop" in first.stderr, first.stderr[-2000:]

    def argv(self) -> list[str]:
        return ["--workspace", str(self.ws), "--results-dir", str(self.R), "--phases", "deft", "--max-iterations",
                "1", "--kpi-target", KPI, "--yes", "--quiet", "--json"]

    def pipeline(self) -> subprocess.CompletedProcess:
        return run_script("run_pipeline.py", *self.argv())

    def fix_pool(self) -> None:
        for f in self.moved.iterdir():
            shutil.move(str(f), self.ok_dir / f.name)


@pytest.fixture
def stopped(tiny, tmp_path) -> Stopped:
    return Stopped(tiny, tmp_path)


def hand_edit(path: Path, code: str) -> None:
    """The edit an agent makes with python -c: load, change, dump (the issue's one-liner)."""
    subprocess.run([sys.executable, "-c", f"import json; P={str(path)!r}; s=json.load(open(P)); {code}; "
                                          f"json.dump(s, open(P,'w'))"], check=True)


def refused(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert proc.stderr.count("\n") == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def readers(s: Stopped) -> list[subprocess.CompletedProcess]:
    return [run_script("next_stage.py", "--results-dir", str(s.R)), s.pipeline(),
            run_script("render_report.py", "--results-dir", str(s.R))]


def test_a_hand_edited_deft_state_is_refused_and_rebuilt_from_the_log(stopped):
    s = stopped
    assert deft_state.load(s.R)["status"] == "failed"
    hand_edit(s.R / "deft_state.json", "s['status']='complete'")
    for proc in readers(s):
        refused(proc, f"{s.R}/deft_state.json does not match loop_log.jsonl",
                "'status' is 'complete' in the file but 'failed' per the log", "edited by hand",
                f"repair_state.py --results-dir {s.R}")
    fixed = run_script("repair_state.py", "--results-dir", str(s.R))
    assert fixed.returncode == 0, fixed.stderr
    assert "deft_state.json: rebuilt from the log" in fixed.stdout and "'status' was 'complete'" in fixed.stdout
    assert "pipeline_state.json: agrees with the log" in fixed.stdout
    assert json.loads((s.R / "deft_state.json.edited").read_text())["status"] == "complete"  # kept for the user
    nxt = run_script("next_stage.py", "--results-dir", str(s.R), check=True)
    assert "next: iter1/sdg" in nxt.stdout and "RETRY" in nxt.stdout
    again = run_script("repair_state.py", "--results-dir", str(s.R), check=True)
    assert again.stdout.count("agrees with the log") == 2
    s.fix_pool()  # the hard stop's real cause; the same command then resumes the run
    done = s.pipeline()
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["deft_status"] == "complete"


def test_a_hand_edited_pipeline_state_is_refused_and_rebuilt_from_the_log(stopped):
    s = stopped
    hand_edit(s.R / "pipeline_state.json", "s['status']='complete'; s['done']=['deft']")
    for proc in readers(s):
        refused(proc, f"{s.R}/pipeline_state.json does not match loop_log.jsonl", "'done' is ['deft'] in the file",
                f"repair_state.py --results-dir {s.R}")
    fixed = run_script("repair_state.py", "--results-dir", str(s.R), check=True)
    assert "pipeline_state.json: rebuilt from the log" in fixed.stdout
    assert "deft_state.json: agrees with the log" in fixed.stdout
    assert json.loads((s.R / "pipeline_state.json").read_text())["status"] == "failed"
    again = s.pipeline()  # resumes (retries iter1/sdg) instead of being refused: same hard stop, same cause
    assert again.returncode == 2 and "silent drop" in again.stderr and "edited by hand" not in again.stderr


def test_an_edited_log_line_is_refused_naming_it_and_undoing_the_edit_recovers(stopped):
    s = stopped
    log = s.R / "loop_log.jsonl"
    original = log.read_bytes()
    lines = original.decode().splitlines()
    ev = json.loads(lines[2])
    ev["status"] = "ok" if ev["status"] == "error" else "error"
    lines[2] = json.dumps(ev, sort_keys=True, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    for proc in readers(s) + [run_script("repair_state.py", "--results-dir", str(s.R))]:
        refused(proc, f"{log} line 3", "edited or added by hand", "undo that edit")
    log.write_bytes(original)
    assert run_script("next_stage.py", "--results-dir", str(s.R)).returncode == 0


def test_a_hand_appended_log_line_is_refused_by_log_stage_and_readers(stopped):
    s = stopped
    log = s.R / "loop_log.jsonl"
    last = json.loads(log.read_text().splitlines()[-1])
    forged = {k: v for k, v in last.items() if k != "chain"} | {"seq": last["seq"] + 1, "summary": "forged"}
    with open(log, "a") as fh:
        fh.write(json.dumps(forged) + "\n")
    n = last["seq"] + 1
    note = run_script("log_stage.py", "--results-dir", str(s.R), "--iter", "run", "--stage", "note", "--status", "ok",
                      "--summary", "x")
    refused(note, f"{log} line {n}", "edited or added by hand")
    refused(run_script("next_stage.py", "--results-dir", str(s.R)), f"line {n}")


# --------------------------------------------------------------------------- crashes are not tampering


def test_a_kill_between_a_pipeline_event_and_its_file_rolls_forward(tmp_path, monkeypatch):
    R = Results.at(tmp_path / "run")
    ps = pipeline_state.new({"phases": "deft"})
    pipeline_state.save(R, ps, "pipeline started")
    before = json.loads(R.pipeline_state.read_text())
    ps["done"].append("deft")

    def killed(*a, **k):
        raise SystemExit("killed")

    monkeypatch.setattr(pipeline_state.atomic, "write_json", killed)
    with pytest.raises(SystemExit):
        pipeline_state.save(R, ps, "deft done")
    monkeypatch.undo()
    assert json.loads(R.pipeline_state.read_text()) == before  # the file lags the log by one event
    view = pipeline_state.load(R)
    assert view["done"] == ["deft"] and view["last_seq"] == 2
    assert "rebuilt from the log at seq 2" in pipeline_state.rebuild(R)
    assert json.loads(R.pipeline_state.read_text()) == view


# --------------------------------------------------------------------------- properties on a driven run


@pytest.fixture(scope="module")
def driven(tmp_path_factory) -> Path:
    """A complete DEFT run driven through commit_stage (notes in between), and its log."""
    tmp = tmp_path_factory.mktemp("driven")
    ws = tmp / "ws"
    (ws / "images").mkdir(parents=True)
    for rel in ("specs/baseline_spec.yaml", "train/base/training_set.csv", "train/base/validation_set.csv",
                "kpi/testing_set.csv"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text("x\n")
    R = tmp / "run"
    run_script("init_deft_state.py", "--results-dir", R, "--workspace", ws, "--max-iterations", "2",
               "--kpi-target", KPI, check=True)
    deft_driver.drive(str(R))
    return R


def _leaves(doc, path=()):
    if isinstance(doc, dict) and doc:
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list) and doc:
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=12),
                         st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edit_of_a_state_value_is_refused_and_repair_restores_it(driven, tmp_path_factory, data):
    R = tmp_path_factory.mktemp("edit") / "run"
    shutil.copytree(driven, R)
    original = json.loads((R / "deft_state.json").read_text())
    paths = sorted(_leaves(original), key=repr)
    path = data.draw(st.sampled_from(paths))
    edited = copy.deepcopy(original)
    node = edited
    for key in path[:-1]:
        node = node[key]
    new = data.draw(JSON_SCALARS.filter(lambda v: json.dumps(v) != json.dumps(node[path[-1]])))
    node[path[-1]] = new
    (R / "deft_state.json").write_text(json.dumps(edited))
    with pytest.raises(UserError) as err:
        deft_state.load(R)
    msg = str(err.value)
    assert "deft_state.json" in msg and "repair_state.py" in msg
    assert "rebuilt from the log" in deft_state.rebuild(R)
    assert deft_state.load(R) == original


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_kill_after_any_commit_append_is_rolled_forward_not_refused(driven, tmp_path_factory, data):
    """Log cut right after a commit's line, state file one commit behind: exactly what SIGKILL leaves."""
    events = event_log.read_events(driven / "loop_log.jsonl")
    commits = [i for i, e in enumerate(events) if e["kind"] == "commit"]
    k = data.draw(st.sampled_from(commits[1:]))
    R = tmp_path_factory.mktemp("kill") / "run"
    R.mkdir()
    lines = (driven / "loop_log.jsonl").read_text().splitlines(keepends=True)
    (R / "loop_log.jsonl").write_text("".join(lines[: k + 1]))
    behind = None
    for e in events[:k]:
        if e["kind"] == "commit":
            behind = deft_state.apply_patch(behind, e)
    (R / "deft_state.json").write_text(json.dumps(behind))
    rolled = deft_state.load(R)
    assert rolled == deft_state.apply_patch(behind, events[k])
    assert deft_state.repair(R) is True and json.loads((R / "deft_state.json").read_text()) == rolled


def test_a_state_file_from_another_run_is_refused(driven, tmp_path, stub_workspace):
    other = tmp_path / "other"
    run_script("init_deft_state.py", "--results-dir", other, "--workspace", stub_workspace, "--max-iterations", "2",
               "--kpi-target", KPI, check=True)
    shutil.copy(driven / "deft_state.json", other / "deft_state.json")
    proc = run_script("next_stage.py", "--results-dir", other)
    refused(proc, "deft_state.json is at seq", "the log was cut", "repair_state.py")


def test_repair_state_holds_the_run_lock_and_needs_a_log(tmp_path, driven):
    R = tmp_path / "run"
    shutil.copytree(driven, R)
    proc = holder(R)
    try:
        refused(run_script("repair_state.py", "--results-dir", R), f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
    refused(run_script("repair_state.py", "--results-dir", tmp_path / "nothing"), "loop_log.jsonl does not exist")


def test_chain_covers_every_field_of_every_line(driven):
    events = event_log.read_events(driven / "loop_log.jsonl")
    assert all(len(e["chain"]) == 64 for e in events)
    assert len({e["chain"] for e in events}) == len(events)
    for i, e in enumerate(events):
        for key in e:
            if key == "chain":
                continue
            forged = dict(e, **{key: "x" if e[key] != "x" else "y"})
            previous = events[i - 1]["chain"] if i else event_log.GENESIS
            assert event_log.chain_hash(previous, forged) != e["chain"], key
