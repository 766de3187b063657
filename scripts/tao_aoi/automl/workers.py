"""Several workers on one Optuna study: K-1 extra local processes beside this one, K SLURM jobs, or
docker workers on one GPU host (one GPU each).

Library logic, not the command's: it runs a study; automl.py passes in how to build one worker's
command line (its own options, parsed by click).
"""
from __future__ import annotations

import os
import subprocess
from typing import Any, Callable

from tao_aoi.automl import study
from tao_aoi.backends import get_backend
from tao_aoi.errors import HardStop


def run(cfg: study.SearchConfig, *, workers: int, backend: str, max_retries: int | None,
        worker_argv: Callable[[str], list[str]], on_trial: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run the study with ``workers`` workers; ``worker_argv(backend)`` is one extra worker's command
    line (the same study and options, the worker's own backend)."""
    if backend == "slurm":
        from tao_aoi.backends.slurm import SlurmBackend

        slurm = SlurmBackend()
        argv = worker_argv("local")
        handles = [slurm.submit_command(argv, output_dir=cfg.out_dir / "workers" / f"w{i}", name=f"automl-w{i}")
                   for i in range(workers)]
        states = [slurm.wait(h) for h in handles]
        bad = [f"{h.job_id}={s}" for h, s in zip(handles, states) if s != "COMPLETE"]
        if bad:
            raise HardStop(f"AutoML worker jobs failed: {', '.join(bad)} (logs in {cfg.out_dir / 'workers'})")
        return
    env = dict(os.environ, TAO_AOI_NO_REEXEC="1")
    if backend == "docker":
        from tao_aoi.backends.docker import GPUS_ENV, worker_gpus

        gpus = worker_gpus(workers)
        procs = [subprocess.Popen(worker_argv("docker"), env={**env, GPUS_ENV: g}) for g in gpus[1:]]
        mine = get_backend("docker", gpus=gpus[0], max_retries=max_retries)
    else:
        procs = [subprocess.Popen(worker_argv("local"), env=env) for _ in range(workers - 1)]
        mine = get_backend("local")
    study.work(cfg, mine, on_trial=on_trial)
    codes = [p.wait() for p in procs]
    if any(codes):
        raise HardStop(f"{sum(1 for c in codes if c)} AutoML worker process(es) failed (exit codes {codes})")
