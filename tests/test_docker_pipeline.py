"""The GPU path end to end against the fake TAO (support/fake_docker.py), which merges every spec into
NVIDIA's 7.1.0 schema and writes what TAO writes: AutoML with K docker workers, each on its own GPU and
pruned on TAO's per-epoch validation, and the whole three-phase run on the demo workspace (the fake's
network is this project's local model, so the loop has real scores to improve); then the same run with
containers killed (exit 137) by the fake: retried, it delivers what the fault-free run delivers, and
past the retry bound it stops naming the fault and the same command resumes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_script

from support import tao_workspace
from support.docker_fixture import fake_docker  # noqa: F401
from tao_aoi.backends.external import read_record
from tao_aoi.tao import schema

KPI = "FAR < 2% at Recall=100%"


def runs(state: Path) -> list[list[str]]:
    return [c["argv"] for c in map(json.loads, (state / "calls.jsonl").read_text().splitlines())
            if c["argv"][0] == "run"]


def test_automl_docker_workers_each_get_a_gpu_and_feed_the_pruner(fake_docker, tmp_path):
    ws = tao_workspace.make(tmp_path / "ws")
    out = tmp_path / "automl"
    proc = run_script("automl.py", "--workspace", ws, "--backend", "docker", "--workers", "2", "--trials", "4",
                      "--algorithm", "hyperband", "--spec", ws / "specs/baseline_spec.yaml", "--train-csv",
                      ws / "train/base/training_set.csv", "--val-csv", ws / "train/base/validation_set.csv",
                      "--images-root", ws / "images", "--results-dir", out, "--json",
                      env={"TAO_AOI_GPU_IDS": "0,1", "TAO_AOI_JOB_POLL_SEC": "0.05"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(proc.stdout)
    gpus = {next(a for a in argv if a.startswith("--gpus")) for argv in runs(fake_docker)}
    assert gpus == {"--gpus=device=0", "--gpus=device=1"}
    trials = [t for t in rec["trials"] if t["state"] == "COMPLETE"]
    assert trials and all(t["intermediate"] for t in trials)  # TAO's per-epoch val_loss reached the pruner
    assert set(rec["space"]["params"]) >= {"train.optim.lr", "dataset.classify.fpratio_sampling"}
    assert "train.optim.momentum" in rec["space"]["inactive"]  # adamw: TAO never reads momentum
    for t in trials:  # every trial's spec went through NVIDIA's schema (the fake merged it too)
        schema.check(Path(t["checkpoint"]).parent / "tao_spec.yaml", "train")


def test_too_few_gpus_for_the_workers_is_a_user_error(fake_docker, tmp_path):
    ws = tao_workspace.make(tmp_path / "ws")
    proc = run_script("automl.py", "--workspace", ws, "--backend", "docker", "--workers", "3", "--trials", "3",
                      "--spec", ws / "specs/baseline_spec.yaml", "--train-csv", ws / "train/base/training_set.csv",
                      "--val-csv", ws / "train/base/validation_set.csv", "--images-root", ws / "images",
                      "--results-dir", tmp_path / "a", env={"TAO_AOI_GPU_IDS": "0,1"})
    assert proc.returncode == 2 and "needs 3 GPUs (one per worker) but TAO_AOI_GPU_IDS gives 2" in proc.stderr


MANUAL = "TAO_AOI_DOCKER_PRESETS"  # e.g. demo,large: the bigger presets, run by hand (minutes each)


@pytest.mark.parametrize("preset", ["tiny", *[pytest.param(p, marks=pytest.mark.slow) for p in ("demo", "large")]])
def test_run_pipeline_docker_all_phases_delivers_a_tao_checkpoint(fake_docker, tmp_path, monkeypatch, preset):
    if preset != "tiny" and preset not in os.environ.get(MANUAL, "").split(","):
        pytest.skip(f"the {preset} preset on docker is a manual check: {MANUAL}={preset} pytest {__file__}")
    monkeypatch.setenv("FAKE_TAO_NETWORK", "local")
    ws = tmp_path / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", preset, "--seed", "3", check=True)
    results = tmp_path / "results"
    argv = [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--workspace", str(ws), "--results-dir",
            str(results), "--backend", "docker", "--phases", "all", "--max-iterations", "1", "--kpi-target", KPI,
            "--trials", "2", "--yes", "--quiet", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, TAO_AOI_NO_REEXEC="1", TAO_AOI_JOB_POLL_SEC="0.05"))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    summary = json.loads(proc.stdout)
    assert [t["iteration"] for t in summary["trajectory"]] == ["baseline", "iter1", "final_automl"]
    # every train job published what TAO's top-k checkpointer kept (model_best_*.pth), never the latest
    records = [read_record(p.parent) for p in results.rglob("train/backend_job.json")]
    assert records and {r["checkpoint_kind"] for r in records} == {"best (top-k checkpointer)"}
    bm = json.loads((results / "best_model.json").read_text())
    ckpt = Path(bm["checkpoint"])
    origin = ckpt.parent / "backend_job.json"
    if not origin.exists():  # the baseline is an adopted AutoML trial: follow it to the trial's own job
        origin = next(p for p in results.rglob("trials/*/train/backend_job.json")
                      if Path(p.parent / "best.ckpt").read_bytes() == ckpt.read_bytes())
    assert Path(read_record(origin.parent)["published_from"]).name.startswith("model_best_")
    assert ckpt.read_bytes()[:4] == b"PK\x03\x04"  # (the fake's network writes the local model's weights)
    verbs = {tuple(argv[-4:-2]) for argv in runs(fake_docker)}
    assert verbs == {("visual_changenet", "train"), ("visual_changenet", "inference"),
                     ("embedding", "image_embeddings")}  # mining embeds through the data-services image
    # the SDG pairs picked for the limiting samples were chosen in SigLIP's space (TAO's embedder), not the local one
    settings = json.loads((results / "sdg_cache" / "pool_embeddings.parquet.settings.json").read_text())
    assert settings["embedder"] == "tao-data-services" and settings["model"] == "SigLIP"
    alloc = json.loads((results / "iter1" / "sdg" / "allocation.json").read_text())
    assert any(t["picked"] for t in alloc["targeted"])
    # the deliverable's inference spec is a TAO spec too
    spec = results / "best_model_inference_spec.yaml"
    cfg = schema.merged(spec)
    assert cfg.model.backbone.type.startswith("fan_") and yaml.safe_load(spec.read_text())["task"] == "classify"


def test_the_docker_dry_run_passes_taos_rules_on_the_demo_spec(fake_docker, tmp_path):
    """The 1-epoch dry run shortens num_epochs below the demo spec's checkpoint_interval: TAO (and
    tao_schema) refuse that unless the intervals come down too."""
    from tao_aoi.pipeline import compute_budget

    ws = tmp_path / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", check=True)
    costs = compute_budget.measure(ws, "docker")
    assert costs.source.startswith("measured 1-epoch docker job")


def pipeline(ws: Path, results: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    argv = [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--workspace", str(ws), "--results-dir",
            str(results), "--backend", "docker", "--phases", "all", "--max-iterations", "1", "--kpi-target", KPI,
            "--trials", "2", "--yes", "--quiet", "--json"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, TAO_AOI_NO_REEXEC="1", TAO_AOI_JOB_POLL_SEC="0.05",
                                   TAO_AOI_RETRY_BACKOFF_SEC="0", **env))
    return proc, time.monotonic() - t0


def fresh_counter(state: Path) -> list[str]:
    """Start counting ``docker run`` calls from 1 again; returns the spec paths of the runs so far."""
    specs = [argv[-1] for argv in runs(state)]
    (state / "runs.count").unlink(missing_ok=True)
    (state / "calls.jsonl").unlink(missing_ok=True)
    return specs


def figures(results: Path) -> dict:
    """What a run delivers: the deliverable, every KPI figure, the searches' trials, the training sets."""
    bm = json.loads((results / "best_model.json").read_text())
    st = json.loads((results / "deft_state.json").read_text())
    studies = {p: json.loads((results / "automl" / p / "best_rec.json").read_text()) for p in ("phase1", "phase3")}
    rel = os.path.relpath(results, results.parent.parent)  # SDG rows live under the results folder
    return {"deliverable": (bm["iteration"], bm["metric_result"]["value"], bm["threshold"], bm["passed"]),
            "scores": pd.read_csv(st["iterations"][bm["iteration"]]["artifacts"]["inference_csv"])["siamese_score"]
            .tolist(),
            "kpi": {k: (v.get("metric_result") or {}).get("value") for k, v in st["iterations"].items()},
            "trials": {p: [(t["number"], t["state"], t["value"], t["params"]) for t in r["trials"]]
                       for p, r in studies.items()},
            "combined": {c.name: c.read_text().replace(rel, "R").replace(results.name, "R")
                         for c in sorted(results.glob("iter*/dataset/train_combined_iter*.csv"))}}


def log_events(results: Path) -> list[dict]:
    return [json.loads(x) for x in (results / "loop_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_containers_are_retried_and_the_run_delivers_what_a_fault_free_run_delivers(fake_docker, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("FAKE_TAO_NETWORK", "local")
    ws = tmp_path / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    ref, ref_sec = pipeline(ws, tmp_path / "reference")
    assert ref.returncode == 0, (ref.stdout[-2000:], ref.stderr[-3000:])
    specs = fresh_counter(fake_docker)
    trial1 = 1 + next(i for i, sp in enumerate(specs) if "/automl/phase1/trials/trial_0001/train/" in sp)
    iter1 = 1 + next(i for i, sp in enumerate(specs) if sp.endswith("/iter1/train/tao_spec.yaml"))

    # one OOM kill in a Phase 1 trial and one in the DEFT iteration's training (one run later: the retry)
    results = tmp_path / "killed"
    proc, killed_sec = pipeline(ws, results, FAKE_TAO_KILL_RUNS=f"{trial1},{iter1 + 1}")
    print(f"\ntiny docker run, all phases: fault-free {ref_sec:.1f}s, two containers killed and retried "
          f"{killed_sec:.1f}s ({killed_sec / ref_sec:.2f}x; retry backoff 0 s here, 30 s + 60 s by default)")
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert figures(results) == figures(tmp_path / "reference")
    retries = [e for e in log_events(results) if e["stage"] == "retry"]
    assert [(e["iter"], e["kind"], e["status"]) for e in retries] == [("run", "log", "error"), ("iter1", "log", "error")]
    assert retries[0]["summary"].startswith("automl phase1 trial 1: docker train job")
    assert all("attempt 1 of 3: container killed (exit 137" in e["summary"] for e in retries)
    assert (results / "automl/phase1/trials/trial_0001/train.attempt1/train.log").is_file()
    assert (results / "iter1/train.attempt1/model_epoch_000_step_00001.pth").read_bytes() == b"partial"
    html = (results / "DEFT_Loop_Report.html").read_text()
    assert "2 infrastructure faults retried" in html and "container killed (exit 137" in html

    # past the bound: iter1's training killed three times -> a hard stop naming the fault; the same command resumes
    fresh_counter(fake_docker)
    bounded = tmp_path / "bounded"
    stop, _ = pipeline(ws, bounded, FAKE_TAO_KILL_RUNS=f"{iter1},{iter1 + 1},{iter1 + 2}")
    assert stop.returncode == 2 and stop.stderr.count("\n") == 1, stop.stderr[-3000:]
    assert "iter1/train failed in train.py: docker train job" in stop.stderr
    assert "after 3 attempt(s): infrastructure fault, container killed (exit 137" in stop.stderr
    st = json.loads((bounded / "deft_state.json").read_text())
    assert st["status"] == "failed" and (st["failure"]["iter"], st["failure"]["stage"]) == ("iter1", "train")
    assert json.loads((bounded / "pipeline_state.json").read_text())["status"] == "failed"
    resumed, _ = pipeline(ws, bounded)
    assert resumed.returncode == 0, (resumed.stdout[-2000:], resumed.stderr[-3000:])
    assert figures(bounded) == figures(tmp_path / "reference")
    assert sorted(p.name for p in (bounded / "iter1").glob("train.attempt*")) == \
        ["train.attempt1", "train.attempt2", "train.attempt3"]
    assert sum(e["stage"] == "retry" for e in log_events(bounded)) == 2
