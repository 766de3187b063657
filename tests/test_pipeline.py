"""The headless pipeline on the embedded default, end to end, and its crash safety.

A real run on the `tiny` demo workspace (real CPU model, real stages): the DEFT phase alone and all
three phases, then the same runs killed with SIGKILL at random moments and rerun, which must end
in the same deliverable, the same combined training sets and a gap-free log.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_script
from tao_aoi import state

KPI = "FAR < 2% at Recall=100%"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


def pipeline_argv(ws: Path, results: Path, phases: str, iterations: int = 2, trials: int = 3) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--workspace", str(ws), "--results-dir",
            str(results), "--phases", phases, "--max-iterations", str(iterations), "--kpi-target", KPI,
            "--trials", str(trials), "--yes", "--quiet", "--json"]


def run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))


def log_seqs(results: Path) -> list[int]:
    return [json.loads(x)["seq"] for x in (results / "loop_log.jsonl").read_text().splitlines()]


def commits(results: Path) -> list[tuple[str, str, str]]:
    out = []
    for line in (results / "loop_log.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["kind"] == "commit":
            out.append((e["iter"], e["stage"], e["status"]))
    return out


def combined_csvs(results: Path) -> dict[str, str]:
    """Combined training CSVs with the results folder's own path masked (SDG rows live under it)."""
    out = {}
    for p in sorted(results.glob("iter*/dataset/train_combined_iter*.csv")):
        out[p.name] = p.read_text().replace(os.path.relpath(results, results.parent.parent), "R") \
            .replace(results.name, "R")
    return out


def deliverable(results: Path) -> tuple[str, float]:
    bm = json.loads((results / "best_model.json").read_text())
    return bm["iteration"], round(bm["metric_result"]["value"], 9)


def test_deft_phase_end_to_end(tiny, tmp_path):
    results = tmp_path / "run"
    proc = run(pipeline_argv(tiny, results, "deft"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    st = state.load(results)
    assert st["status"] == "complete"
    assert log_seqs(results) == list(range(1, len(log_seqs(results)) + 1))
    assert summary["deliverable"]["iteration"] == st["best_iteration"]
    assert (results / "DEFT_Loop_Report.html").exists()
    base = pd.read_csv(tiny / "train/base/training_set.csv")
    c1 = pd.read_csv(results / "iter1/dataset/train_combined_iter1.csv")
    assert len(c1) > len(base) and c1.iloc[: len(base)]["object_name"].tolist() == base["object_name"].tolist()
    prov = pd.read_csv(results / "iter1/dataset/train_combined_iter1_provenance.csv")
    assert set(prov["source"]) >= {"base_train"} and len(prov) == len(c1)
    # the trajectory is recorded for every evaluated iteration
    values = [t["kpi_value"] for t in summary["trajectory"]]
    assert len(values) >= 2 and all(v is not None for v in values)


def _kill_loop(argv: list[str], results: Path, kills: int, seed: int, window: float) -> int:
    rng = random.Random(seed)
    done = 0
    for _ in range(kills * 3):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))
        time.sleep(rng.uniform(0.5, window))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            done += 1
        proc.wait()
        if done >= kills:
            break
    return done


@pytest.mark.slow
@pytest.mark.parametrize("phases, kills", [("deft", 10), ("all", 10)])
def test_killed_runs_end_like_an_uninterrupted_run(tiny, tmp_path, phases, kills):
    reference = tmp_path / "reference"
    t0 = time.monotonic()
    proc = run(pipeline_argv(tiny, reference, phases))
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = time.monotonic() - t0

    results = tmp_path / "killed"
    argv = pipeline_argv(tiny, results, phases)
    done = _kill_loop(argv, results, kills, seed=11 if phases == "deft" else 12, window=max(2.0, full / 3))
    assert done >= kills, f"only {done} kills landed before the run finished"
    final = run(argv)
    assert final.returncode == 0, final.stderr[-3000:]
    assert log_seqs(results) == list(range(1, len(log_seqs(results)) + 1))
    assert commits(results) == commits(reference)
    assert deliverable(results) == deliverable(reference)
    assert combined_csvs(results) == combined_csvs(reference)
