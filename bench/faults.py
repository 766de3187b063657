#!/usr/bin/env python3
"""What retrying infrastructure faults costs: nothing on a fault-free run, one job's time per fault.

Two measurements, both against the fake TAO ``docker`` of the tests (tests/support/fake_docker.py:
NVIDIA's 7.1.0 schema, what TAO writes; its network is this project's local model), both with a
baseline measured in the same run and interleaved with it, so load from other processes on a shared
host hits both alike:

1. per job, fault-free: a train job through ``backend.train`` (``ExternalBackend.run_job``: the request
   fingerprint, the pick-up check, the retry loop) against the same job through the bare
   ``submit_train`` + ``wait`` the backend used before (no retry machinery); --jobs pairs, medians and
   their ratio. A fake job lasts seconds and varies by more than the machinery costs, so the
   machinery's own work on a fault-free job is also timed alone: the request fingerprint (the spec's
   sha256), the pick-up check of the folder's record and the docker record's extra write (client pid),
   as a share of the bare job.
2. per run: ``run_pipeline.py --backend docker --phases all`` on the tiny workspace (2 trials, 1 DEFT
   iteration), fault-free against the same run with one container killed (exit 137) in DEFT's
   training and retried; --runs pairs. The retry backoff is 0 here (TAO_AOI_RETRY_BACKOFF_SEC=0): by
   default a first retry waits defaults.RETRY_BACKOFF_SEC (30 s) more, which the table adds.

Run: .venv/bin/python bench/faults.py [--jobs 8] [--runs 1] [--work DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from tao_aoi import defaults  # noqa: E402


def install_fake_docker(work: Path) -> dict[str, str]:
    """The tests' fake ``docker`` first on PATH; returns the environment for it."""
    bin_dir, state = work / "bin", work / "docker-state"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(exist_ok=True)
    exe = bin_dir / "docker"
    exe.write_text(f"#!{sys.executable}\n" + (ROOT / "tests/support/fake_docker.py").read_text())
    exe.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_DIR": str(state),
           "FAKE_TAO_PLUGIN": str(ROOT), "FAKE_TAO_MODE": "ok", "TAO_AOI_NO_REEXEC": "1",
           "TAO_AOI_JOB_POLL_SEC": "0.05", "TAO_AOI_RETRY_BACKOFF_SEC": "0"}
    os.environ.update(env)
    return env


def reset_counter(env: dict[str, str]) -> list[str]:
    """Count ``docker run`` calls from 1 again; returns the spec paths of the runs so far."""
    state = Path(env["FAKE_DOCKER_DIR"])
    calls = state / "calls.jsonl"
    specs = [c["argv"][-1] for c in map(json.loads, calls.read_text().splitlines())
             if c["argv"][0] == "run"] if calls.exists() else []
    calls.unlink(missing_ok=True)
    (state / "runs.count").unlink(missing_ok=True)
    return specs


def per_job(work: Path, env: dict[str, str], jobs: int) -> dict[str, float]:
    from support import tao_workspace
    from tao_aoi.backends import get_backend
    from tao_aoi.backends.base import TrainJob

    os.environ["FAKE_TAO_NETWORK"] = "hash"
    ws = tao_workspace.make(work / "ws-jobs")
    backend = get_backend("docker", poll_sec=0.05)

    def job(out: Path) -> TrainJob:
        return TrainJob(spec=ws / "specs/baseline_spec.yaml", train_csv=ws / "train/base/training_set.csv",
                        val_csv=ws / "train/base/validation_set.csv", images_root=ws / "images", output_dir=out)

    bare, managed = [], []
    for i in range(jobs):
        for kind in (("bare", "managed") if i % 2 == 0 else ("managed", "bare")):
            out = work / "jobs" / f"{kind}{i}"
            t0 = time.perf_counter()
            if kind == "bare":
                h = backend.submit_train(job(out))
                assert backend.wait(h, poll_sec=0.05) == "COMPLETE", h.detail
                bare.append(time.perf_counter() - t0)
            else:
                assert backend.train(job(out)).state == "COMPLETE"
                managed.append(time.perf_counter() - t0)
    b, m = statistics.median(bare), statistics.median(managed)
    from tao_aoi.backends.external import read_record, request_of, write_record

    done = work / "jobs" / "managed0"  # a folder holding a finished job, as every fault-free rerun finds it
    record = read_record(done)
    reps = 200
    t0 = time.perf_counter()
    for _ in range(reps):
        req = request_of("train", job(done))
        backend._pick_up(done.resolve(), req)
        write_record(done, record)
    alone = (time.perf_counter() - t0) / reps
    return {"bare_s": b, "managed_s": m, "ratio": m / b, "machinery_ms": 1000 * alone, "share": alone / b}


def pipeline(ws: Path, results: Path, env: dict[str, str], **extra: str) -> float:
    argv = [sys.executable, str(ROOT / "scripts/run_pipeline.py"), "--workspace", str(ws), "--results-dir",
            str(results), "--backend", "docker", "--phases", "all", "--max-iterations", "1", "--kpi-target",
            "FAR < 2% at Recall=100%", "--trials", "2", "--yes", "--quiet", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env, **extra})
    if proc.returncode != 0:
        raise SystemExit(f"run_pipeline.py failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def per_run(work: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    env = dict(env, FAKE_TAO_NETWORK="local")
    ws = work / "ws-tiny"
    subprocess.run([sys.executable, str(ROOT / "scripts/make_demo_workspace.py"), "--out", str(ws), "--preset",
                    "tiny", "--seed", "3"], check=True, capture_output=True, env={**os.environ, **env})
    reset_counter(env)
    clean, killed = [pipeline(ws, work / "runs" / "probe", env)], []
    specs = reset_counter(env)
    k = 1 + next(i for i, sp in enumerate(specs) if sp.endswith("/iter1/train/tao_spec.yaml"))
    for i in range(runs):
        killed.append(pipeline(ws, work / "runs" / f"killed{i}", env, FAKE_TAO_KILL_RUNS=str(k)))
        reset_counter(env)
        if i + 1 < runs:
            clean.append(pipeline(ws, work / "runs" / f"clean{i}", env))
            reset_counter(env)
    c, k_ = statistics.median(clean), statistics.median(killed)
    return {"clean_s": c, "killed_s": k_, "ratio": k_ / c, "runs": runs,
            "jobs": len(specs), "killed_job_spec": specs[k - 1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=8, help="fault-free train jobs per variant (per-job overhead)")
    ap.add_argument("--runs", type=int, default=1, help="pipeline runs per variant (fault-free / one kill; 0: none)")
    ap.add_argument("--work", type=Path, help="work folder (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        env = install_fake_docker(work)
        print(f"host: {os.cpu_count()} CPUs (shared hosts: compare the ratios, measured in the same run)")
        j = per_job(work, env, args.jobs)
        print("\n1. fault-free train job on the fake TAO: backend.train (retry machinery) vs submit_train + wait")
        print(f"   bare {j['bare_s']:.3f} s   managed {j['managed_s']:.3f} s   ratio {j['ratio']:.3f} "
              f"(medians of {args.jobs}, interleaved)")
        print(f"   the machinery alone: {j['machinery_ms']:.2f} ms per job = {100 * j['share']:.3f}% of a bare job")
        if args.runs < 1:
            return 0
        r = per_run(work, env, args.runs)
        backoff = defaults.RETRY_BACKOFF_SEC
        print(f"\n2. run_pipeline.py --backend docker, tiny, 2 trials, 1 iteration ({r['jobs']} docker jobs)")
        print(f"   fault-free {r['clean_s']:.1f} s   one container killed (DEFT train) and retried "
              f"{r['killed_s']:.1f} s   ratio {r['ratio']:.3f}   (+{backoff:g} s with the default first backoff: "
              f"{(r['killed_s'] + backoff) / r['clean_s']:.3f})")
        print(f"   killed job: {r['killed_job_spec']}")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
