"""AutoML hyper-parameter search on Optuna, scored by FAR@100% recall on the validation set.

--algorithm: bayesian (TPE), random, cmaes, hyperband / asha (TPE + pruning on the per-epoch
validation FAR). Direction is minimize; a trial that predicts one class only is infeasible.
Trial 0 is the starting spec itself. Storage: SQLite in --results-dir by default; --storage takes
any Optuna URL (sqlite:///..., postgresql://..., or journal:<file> for a journal file on shared disk).
--workers K runs K workers on one study: local processes, or SLURM jobs with --backend slurm.
Rerunning the same command resumes the study (a trial killed mid-way is re-run, not lost).
Writes <results-dir>/best_rec.json (best trial: params as nested specs, score, direction,
checkpoint; and every trial) and trials/trial_NNNN/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from tao_aoi import automl, cli, defaults, run_lock, search_space
from tao_aoi.backends import get_backend
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import Workspace

SCRIPT = Path(__file__).resolve().parents[2] / "automl.py"


def build_parser() -> cli.ArgumentParser:
    p = cli.parser("automl.py", __doc__)
    p.add_argument("--workspace", required=True)
    p.add_argument("--results-dir", required=True, help="study folder, e.g. <R>/automl/phase1")
    p.add_argument("--train-csv", required=True)
    p.add_argument("--val-csv", required=True, help="validation set (never the KPI set)")
    p.add_argument("--algorithm", default="bayesian", choices=automl.ALGORITHMS)
    p.add_argument("--trials", type=int, default=defaults.AUTOML_TRIALS)
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<results-dir>/study.db)")
    p.add_argument("--workers", type=int, default=1, help="workers sharing the study (processes, or SLURM jobs)")
    p.add_argument("--warm-start", help="checkpoint every trial fine-tunes from (Phase 3)")
    p.add_argument("--backend", default="local", choices=defaults.BACKENDS)
    p.add_argument("--spec", help="starting spec (default <workspace>/specs/baseline_spec.yaml)")
    p.add_argument("--search-space", help="YAML/JSON search space (default: the backend's model space)")
    p.add_argument("--images-root", help="default <workspace>/images")
    p.add_argument("--seed", type=int, default=defaults.SEED)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: one extra worker
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="print best_rec.json")
    return p


def config_from_args(args) -> automl.SearchConfig:
    ws = Workspace.at(args.workspace)
    if args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    spec = Path(args.spec).resolve() if args.spec else ws.baseline_spec
    for flag, p in (("--spec", spec), ("--train-csv", Path(args.train_csv)), ("--val-csv", Path(args.val_csv))):
        if not p.is_file():
            raise UserError(f"{flag} {p} does not exist")
    if Path(args.val_csv).resolve() == ws.kpi_csv:
        raise UserError("--val-csv is the KPI set; AutoML must score on the validation set (the KPI set is "
                        "reserved for DEFT's evaluation)")
    warm = Path(args.warm_start).resolve() if args.warm_start else None
    if warm is not None and not warm.is_file():
        raise UserError(f"--warm-start {warm} does not exist")
    space = search_space.load(args.search_space) if args.search_space else \
        search_space.default_for_backend("local" if args.backend == "slurm" else args.backend)
    return automl.SearchConfig(
        spec=spec, train_csv=Path(args.train_csv).resolve(), val_csv=Path(args.val_csv).resolve(),
        images_root=Path(args.images_root).resolve() if args.images_root else ws.images,
        out_dir=Path(args.results_dir).resolve(), space=space, algorithm=args.algorithm, n_trials=args.trials,
        seed=args.seed, storage=args.storage, warm_start=warm, start_params=automl.start_point(space, spec))


def _printer(args, n: int):
    def show(t: dict) -> None:
        if args.quiet or args.json:
            return
        value = "" if t["value"] is None else f" val FAR@100%R {t['value']:.3f}%"
        params = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                           for k, v in t["params"].items())
        print(f"  trial {t['number'] + 1:>3}/{n} {t['state']:<8}{value}  ({params})", flush=True)
    return show


def _worker_argv(argv: Sequence[str]) -> list[str]:
    args = [a for a in argv if a not in ("--json",)]
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--workers", "--backend"):
            skip = True
            continue
        if a.startswith(("--workers=", "--backend=")):
            continue
        out.append(a)
    return out + ["--worker", "--quiet", "--backend", "local"]


def run_workers(args, argv: Sequence[str], cfg: automl.SearchConfig) -> None:
    """Extra workers on the same study: K-1 local processes (this one is the K-th) or K SLURM jobs."""
    worker_argv = [sys.executable, str(SCRIPT), *_worker_argv(argv)]
    if args.backend == "slurm":
        from tao_aoi.backends.slurm import SlurmBackend

        slurm = SlurmBackend()
        handles = [slurm.submit_command(worker_argv, output_dir=cfg.out_dir / "workers" / f"w{i}", name=f"automl-w{i}")
                   for i in range(args.workers)]
        states = [slurm.wait(h) for h in handles]
        bad = [f"{h.job_id}={s}" for h, s in zip(handles, states) if s != "COMPLETE"]
        if bad:
            raise HardStop(f"AutoML worker jobs failed: {', '.join(bad)} (logs in {cfg.out_dir / 'workers'})")
        return
    env = dict(os.environ, TAO_AOI_NO_REEXEC="1")
    procs = [subprocess.Popen(worker_argv, env=env) for _ in range(args.workers - 1)]
    automl.work(cfg, get_backend("docker" if args.backend == "docker" else "local"),
                on_trial=_printer(args, cfg.n_trials))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise HardStop(f"{sum(1 for c in codes if c)} AutoML worker process(es) failed (exit codes {codes})")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if args.worker:  # started by the main process below, which holds the run lock
        automl.work(cfg, get_backend("local"))
        return 0
    with run_lock.hold_study(cfg.out_dir):  # a study inside a run folder (<R>/automl/<phase>) is part of that run
        return _search(args, argv, cfg)


def _search(args, argv: Sequence[str], cfg: automl.SearchConfig) -> int:
    if not args.quiet and not args.json:
        print(f"AutoML {args.algorithm}: {cfg.n_trials} trials, val FAR@100% recall (minimize) on {cfg.val_csv.name}"
              f"{', warm start ' + str(cfg.warm_start) if cfg.warm_start else ''}", flush=True)
    if args.workers > 1 or args.backend == "slurm":
        run_workers(args, argv, cfg)
    else:
        automl.work(cfg, get_backend(args.backend), on_trial=_printer(args, cfg.n_trials))
    rec = automl.write_best(cfg)
    if args.json:
        cli.emit_json(rec)
    elif not args.quiet:
        b = rec["best"]
        print(f"best: trial {b['trial']} val FAR@100%R {b['score']:.3f}% -> {cfg.out_dir / 'best_rec.json'}")
    else:
        print(json.dumps({"best_trial": rec["best"]["trial"], "score": rec["best"]["score"]}))
    return 0
