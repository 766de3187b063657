"""The state survives concurrency and SIGKILL: gap-free seqs, a parseable state that agrees with the log."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, run_script

from tao_aoi.state import deft_state, schema_check

KPI = "FAR < 2% at Recall=100%"


def log_lines(results: Path) -> list[dict]:
    return [json.loads(x) for x in (results / "loop_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_400_concurrent_log_stage_calls_get_seqs_1_to_400(tmp_path):
    results = tmp_path / "r"
    results.mkdir()

    def worker(w: int) -> None:
        for i in range(50):
            run_script("log_stage.py", "--results-dir", str(results), "--iter", "baseline", "--stage", "note",
                       "--status", "ok", "--summary", f"w{w}-{i}", check=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(worker, range(8)))
    lines = log_lines(results)
    assert [e["seq"] for e in lines] == list(range(1, 401))
    assert sorted(e["summary"] for e in lines) == sorted(f"w{w}-{i}" for w in range(8) for i in range(50))
    for e in lines:
        jsonschema.validate(e, schema_check.load_schema("loop_event"))


def _events(results: Path) -> int:
    """Lines in the log, counted without parsing (the run is writing it)."""
    try:
        return (results / "loop_log.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _driver(results: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'scripts'}:{ROOT / 'tests'}", TAO_AOI_NO_REEXEC="1")
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "deft_driver.py"), str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _check_consistent(results: Path) -> None:
    """What must hold right after a SIGKILL, before anything repairs the folder."""
    lines = log_lines(results)  # every line parses (no torn line)
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    commits = [e for e in lines if e["kind"] == "commit"]
    if not (results / "deft_state.json").exists():
        assert len(commits) <= 1  # killed during init: the log's init event rebuilds it
        return
    raw = json.loads((results / "deft_state.json").read_text())  # parses
    jsonschema.validate(raw, schema_check.load_schema("deft_state"))
    commit_seqs = [e["seq"] for e in commits]
    # the file is at the last commit, or one behind it with that commit's patch in the log
    assert raw["last_seq"] == commit_seqs[-1] or raw["last_seq"] == commit_seqs[-2]
    st = deft_state.load(results)
    assert st["last_seq"] == commit_seqs[-1]
    assert st["last_commit"]["seq"] == commit_seqs[-1] or st["status"] == "failed"


def _commit_trace(results: Path) -> list[tuple]:
    return [(e["iter"], e["stage"], e["status"]) for e in log_lines(results) if e["kind"] == "commit"]


def _final_view(results: Path) -> dict:
    st = deft_state.load(results)
    return {
        "status": st["status"],
        "best": st["best_iteration"],
        "stop": st["stop_reason"],
        "iterations": {k: (v["status"], v["stage_completed"], sorted(v["artifacts"].items()),
                           (v.get("metric_result") or {}).get("value"))
                       for k, v in st["iterations"].items()},
    }


@pytest.mark.slow
def test_sigkill_at_20_random_moments_then_rerun_matches_uninterrupted(tmp_path, stub_workspace):
    reference = tmp_path / "reference"
    run_script("init_deft_state.py", "--results-dir", str(reference), "--workspace", str(stub_workspace),
               "--max-iterations", "3", "--kpi-target", KPI, check=True)
    assert _driver(reference).wait() == 0
    total = len(log_lines(reference))

    results = tmp_path / "killed"
    run_script("init_deft_state.py", "--results-dir", str(results), "--workspace", str(stub_workspace),
               "--max-iterations", "3", "--kpi-target", KPI, check=True)
    rng = random.Random(20261122)
    kills = 0
    for i in range(20):
        # the i-th kill lands at a random moment once the run is (i+0.5)/20 through its events
        target = int(total * (i + 0.5) / 20)
        proc = _driver(results)
        while proc.poll() is None and _events(results) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_consistent(results)
    assert kills >= 15, f"only {kills} of 20 kills landed before the run finished"
    proc = _driver(results)
    assert proc.wait() == 0, proc.stderr.read().decode()
    _check_consistent(results)
    assert _commit_trace(results) == _commit_trace(reference)
    view = _final_view(results)
    ref = _final_view(reference)
    # artifact paths differ only by the results folder name
    assert json.dumps(view).replace(str(results), "R") == json.dumps(ref).replace(str(reference), "R")
