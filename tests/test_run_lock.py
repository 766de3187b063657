"""One run per results folder: real processes contend for the run lock; stale locks are taken over safely."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_script

from support.lock_holder import holder
from tao_aoi import defaults
from tao_aoi.errors import UserError
from tao_aoi.layout import Results, run_of_study
from tao_aoi.state import deft_state, run_lock

KPI = "FAR < 2% at Recall=100%"
def init_args(results: Path, ws: Path) -> list[str]:
    return ["--results-dir", str(results), "--workspace", str(ws), "--max-iterations", "2", "--kpi-target", KPI]


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path, stub_workspace):
    results = tmp_path / "run"
    proc = holder(results)
    try:
        t0 = time.monotonic()
        second = run_script("init_deft_state.py", *init_args(results, stub_workspace))
        elapsed = time.monotonic() - t0
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert f"pid {proc.pid} on {os.uname().nodename}" in second.stderr and "since 20" in second.stderr
        assert "one run per results folder" in second.stderr and "new --results-dir" in second.stderr
        assert proc.poll() is None and elapsed < defaults.RUN_LOCK_STEP_WAIT_SEC / 2, elapsed  # never waited
        t0 = time.monotonic()
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            with run_lock.hold(results):
                pass
        assert time.monotonic() - t0 < defaults.RUN_LOCK_SETTLE_SEC / 4  # at once: no settling, no queueing
        assert not (results / "deft_state.json").exists() and not (results / "loop_log.jsonl").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_step_holder_is_waited_for_not_refused(tmp_path, stub_workspace):
    results = tmp_path / "run"
    proc = holder(results, kind="step", seconds=0.8)
    t0 = time.monotonic()
    second = run_script("init_deft_state.py", *init_args(results, stub_workspace))
    assert second.returncode == 0, second.stderr
    assert time.monotonic() - t0 > 0.3  # it queued behind the step
    assert proc.wait() == 0


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, stub_workspace):
    results = tmp_path / "run"
    proc = holder(results)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    owner = json.loads((results / ".run_owner.json").read_text())
    assert owner["pid"] == proc.pid  # left behind: the process could not clean up
    with run_lock.hold(results, kind="run") as note:
        assert note and f"pid {proc.pid}" in note and "ended without releasing it" in note
        assert json.loads((results / ".run_owner.json").read_text())["pid"] == os.getpid()
    assert not (results / ".run_owner.json").exists()  # a clean exit removes it
    assert run_script("init_deft_state.py", *init_args(results, stub_workspace)).returncode == 0


def _fake_owner(results: Path, **fields) -> None:
    results.mkdir(parents=True, exist_ok=True)
    owner = {"host": os.uname().nodename, "pid": 1, "start": None, "boot_id": None, "since": "2026-01-01T00:00:00Z",
             "command": "run_pipeline.py", "kind": "run", "token": "x"} | fields
    (results / ".run_owner.json").write_text(json.dumps(owner))


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    """The owner file names a live pid, but that pid started at another time: another process, take over."""
    results = tmp_path / "run"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _fake_owner(results, pid=live.pid, start="1")
        with run_lock.hold(results) as note:
            assert note and f"pid {live.pid}" in note
        # the same pid with its real start time is the holder: refused, although the flock is free
        _fake_owner(results, pid=live.pid, start=run_lock.process_start(live.pid))
        with pytest.raises(UserError, match=f"names run_pipeline.py \\(pid {live.pid}.*still running.*delete"):
            with run_lock.hold(results):
                pass
    finally:
        live.kill()
        live.wait()
    with run_lock.hold(results) as note:  # now it is gone
        assert note and "ended without releasing it" in note


def test_an_owner_on_another_host_is_not_stolen(tmp_path):
    results = tmp_path / "run"
    _fake_owner(results, host="gpu-node-17", pid=4242)
    with pytest.raises(UserError) as err:
        with run_lock.hold(results):
            pass
    msg = str(err.value)
    assert "pid 4242 on gpu-node-17" in msg and "cannot be told" in msg and "delete" in msg
    assert ".run_owner.json" in msg
    (results / ".run_owner.json").unlink()  # the documented recovery once that host's run is known gone
    with run_lock.hold(results) as note:
        assert note is None


def test_holds_nest_within_one_process(tmp_path):
    results = tmp_path / "run"
    with run_lock.hold(results, kind="run"):
        with run_lock.hold(results):  # the runner calls the step scripts in-process
            assert run_lock.holder(results)["pid"] == os.getpid()
        assert (results / ".run_owner.json").exists()
    assert run_lock.holder(results) is None


def test_readers_and_notes_work_while_a_run_holds_the_folder(tmp_path, stub_workspace, script):
    results = tmp_path / "run"
    script("init_deft_state.py", *init_args(results, stub_workspace), check=True)
    proc = holder(results)
    try:
        nxt = script("next_stage.py", "--results-dir", str(results))
        assert nxt.returncode == 0 and f"pid {proc.pid}" in nxt.stdout and "next: baseline/train" in nxt.stdout
        held = json.loads(script("next_stage.py", "--results-dir", str(results), "--json").stdout)["held_by"]
        assert held["pid"] == proc.pid and "token" not in held
        assert script("log_stage.py", "--results-dir", str(results), "--iter", "baseline", "--stage", "note",
                      "--status", "ok", "--summary", "watching").returncode == 0
        assert script("render_report.py", "--results-dir", str(results)).returncode == 0
        commit = script("commit_stage.py", "--results-dir", str(results), "--iter", "baseline", "--stage", "train",
                        "--checkpoint", str(results / "x"), "--training-spec", str(results / "y"))
        assert commit.returncode == 2 and f"pid {proc.pid}" in commit.stderr
    finally:
        proc.kill()
        proc.wait()
    assert run_lock.holder(results) is None  # left behind by a dead process: not a holder


# --------------------------------------------------------------------------- run_pipeline.py, for real


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


def pipeline(ws: Path, results: Path) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--workspace", str(ws), "--results-dir",
            str(results), "--phases", "deft", "--max-iterations", "2", "--kpi-target", KPI, "--yes", "--quiet",
            "--json"]


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))


def assert_valid_complete_run(results: Path) -> None:
    st = deft_state.load(results)  # checks deft_state.json and pipeline_state.json against the chained log
    assert st["status"] == "complete"
    seqs = [json.loads(x)["seq"] for x in (results / "loop_log.jsonl").read_text().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert json.loads((results / "pipeline_state.json").read_text())["status"] == "complete"
    assert not (results / ".run_owner.json").exists()


def test_two_concurrent_run_pipeline_starts(tiny, tmp_path):
    """Started together: one runs, the other is refused while it runs, naming it; the run ends valid."""
    results = tmp_path / "run"
    a, b = start(pipeline(tiny, results)), start(pipeline(tiny, results))
    first_done = None
    while first_done is None:
        for p in (a, b):
            if p.poll() is not None:
                first_done = p
                break
        time.sleep(0.02)
    winner = b if first_done is a else a
    err = first_done.stderr.read()
    assert first_done.returncode == 2, err
    assert f"pid {winner.pid} on {os.uname().nodename}" in err and "run_pipeline.py" in err and err.count("\n") == 1
    assert winner.poll() is None  # refused while the other runs (how fast: bench/run_lock.py)
    out, err = winner.communicate(timeout=600)
    assert winner.returncode == 0, err[-2000:]
    assert json.loads(out)["deft_status"] == "complete"
    assert_valid_complete_run(results)


def test_a_second_start_while_a_run_goes_is_refused_at_once(tiny, tmp_path):
    results = tmp_path / "run"
    first = start(pipeline(tiny, results))
    while not (results / ".run_owner.json").exists():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.02)
    second = subprocess.run(pipeline(tiny, results), capture_output=True, text=True,
                            env=dict(os.environ, TAO_AOI_NO_REEXEC="1"), timeout=60)
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    assert first.poll() is None  # refused at once, not after waiting for the first (bench/run_lock.py times it)
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert_valid_complete_run(results)


def test_a_killed_run_is_resumed_by_taking_over_its_lock(tiny, tmp_path):
    results = tmp_path / "run"
    first = start(pipeline(tiny, results))
    while first.poll() is None and not (results / "baseline" / "inference").exists():
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert json.loads((results / ".run_owner.json").read_text())["pid"] == first.pid
    again = subprocess.run(pipeline(tiny, results), capture_output=True, text=True,
                           env=dict(os.environ, TAO_AOI_NO_REEXEC="1"), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_valid_complete_run(results)
    notes = [json.loads(x)["summary"] for x in (results / "loop_log.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "log"]
    assert any(f"pid {first.pid}" in n and "took over the run lock" in n for n in notes), notes


def test_automl_into_a_run_folder_holds_its_lock(tmp_path):
    results = tmp_path / "results" / "run_1"
    assert run_of_study(results / "automl" / "phase1") == results.resolve()
    assert run_of_study(tmp_path / "elsewhere" / "automl" / "phase1") is None  # not a run folder
    proc = holder(results)
    try:
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            with run_lock.hold_study(results / "automl" / "phase1"):
                pass
    finally:
        proc.kill()
        proc.wait()
    assert Results.at(results).run_lock.exists()
