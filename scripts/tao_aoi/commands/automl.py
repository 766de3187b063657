"""AutoML hyper-parameter search on Optuna, scored by FAR@100% recall on the validation set.

--algorithm: bayesian (TPE), random, cmaes, hyperband / asha (TPE + pruning on the per-epoch
validation FAR). Direction is minimize; a trial that predicts one class only is infeasible.
Trial 0 is the starting spec itself. Storage: SQLite in --results-dir by default; --storage takes
any Optuna URL (sqlite:///..., postgresql://..., or journal:<file> for a journal file on shared disk).
--workers K runs K workers on one study: local processes, or SLURM jobs with --backend slurm.
Rerunning the same command resumes the study (a trial killed mid-way is re-run, not lost).
A docker/slurm job ended by an infrastructure fault (container killed or out of memory, daemon or
pull failure, node failure) is retried --max-retries times in a fresh folder; a trial that still
fails is a failed trial, another is asked in its place and the study goes on. It stops (exit 2) only
once more trials failed than 25% of --trials (defaults.AUTOML_MAX_FAILED_SHARE, at least 1).
Writes <results-dir>/best_rec.json (best trial: params as nested specs, score, direction,
checkpoint; the runner-up; and every trial) and trials/trial_NNNN/.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli, fmt
from tao_aoi.automl import search_space, study, ties, workers
from tao_aoi.backends import get_backend
from tao_aoi.errors import UserError
from tao_aoi.layout import SCRIPTS_DIR, Workspace
from tao_aoi.state import run_lock

SCRIPT = SCRIPTS_DIR / "automl.py"


@cli.command("automl.py", __doc__, next_step="Phase 1: python3 scripts/seed_baseline.py --best-rec <results-dir>/"
             "best_rec.json --results-dir R --workspace W; Phase 3: python3 scripts/warm_start.py --results-dir R "
             "--register <results-dir>/best_rec.json")
@cli.option("--workspace")
@cli.option("--results-dir", help="study folder, e.g. <R>/automl/phase1")
@click.option("--train-csv", required=True)
@click.option("--val-csv", required=True, help="validation set (never the KPI set)")
@cli.option("--algorithm")
@cli.option("--trials")
@click.option("--storage", help="Optuna storage URL (default sqlite:///<results-dir>/study.db)")
@click.option("--workers", type=int, default=1, help="workers sharing the study (processes, or SLURM jobs)")
@click.option("--warm-start", help="checkpoint every trial fine-tunes from (Phase 3)")
@cli.option("--backend")
@cli.option("--spec", help="starting spec (default <workspace>/specs/baseline_spec.yaml)")
@cli.option("--search-space")
@cli.option("--images-root", help="default <workspace>/images")
@cli.option("--seed")
@cli.option("--max-retries")
@click.option("--worker", is_flag=True, hidden=True)  # internal: one extra worker
@cli.option("--quiet")
@cli.option("--json", help="print best_rec.json")
def command(args) -> int:
    cfg = config_from_args(args)
    if args.worker:  # started by the main process below, which holds the run lock
        study.work(cfg, get_backend(args.backend, max_retries=args.max_retries))  # docker: GPU from TAO_AOI_DOCKER_GPUS
        return 0
    with run_lock.hold_study(cfg.out_dir):  # a study inside a run folder (<R>/automl/<phase>) is part of that run
        return _search(args, cfg)


def _search(args, cfg: study.SearchConfig) -> int:
    if not args.quiet and not args.json:
        print(f"AutoML {args.algorithm}: {cfg.n_trials} trials, val FAR@100% recall (minimize) on {cfg.val_csv.name}"
              f"{', warm start ' + str(cfg.warm_start) if cfg.warm_start else ''}", flush=True)
    if args.workers > 1 or args.backend == "slurm":
        workers.run(cfg, workers=args.workers, backend=args.backend, max_retries=args.max_retries,
                    worker_argv=lambda backend: worker_argv(args, backend), on_trial=_printer(args, cfg.n_trials))
    else:
        backend = get_backend(args.backend, max_retries=args.max_retries)
        study.work(cfg, backend, on_trial=_printer(args, cfg.n_trials))
    rec = study.write_best(cfg)
    if args.json:
        cli.emit_json(rec)
    elif not args.quiet:
        b, r = rec["best"], rec.get("runner_up")
        runner = f" (runner-up: trial {r['trial']} val FAR@100%R {fmt.num(r['score'])}%)" if r else ""
        tie = ties.tie_text(rec.get("ties"))
        if tie:
            print(tie)
        print(f"best: trial {b['trial']} val FAR@100%R {fmt.num(b['score'])}%{runner} -> {cfg.out_dir / 'best_rec.json'}")
    else:
        print(json.dumps({"best_trial": rec["best"]["trial"], "score": rec["best"]["score"]}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)


def config_from_args(args) -> study.SearchConfig:
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
    space = search_space.load(args.search_space) if args.search_space else\
        search_space.default_for_backend("local" if args.backend == "slurm" else args.backend)
    return study.SearchConfig(
        spec=spec, train_csv=Path(args.train_csv).resolve(), val_csv=Path(args.val_csv).resolve(),
        images_root=Path(args.images_root).resolve() if args.images_root else ws.images,
        out_dir=Path(args.results_dir).resolve(), space=space, algorithm=args.algorithm, n_trials=args.trials,
        seed=args.seed, storage=args.storage, warm_start=warm, start_params=study.start_point(space, spec))


def _printer(args, n: int):
    def show(t: dict) -> None:
        if args.quiet or args.json:
            return
        value = "" if t["value"] is None else f" val FAR@100%R {fmt.num(t['value'])}%"
        params = ", ".join(f"{k.split('.')[-1]}={fmt.num(v) if isinstance(v, float) else v}"
                           for k, v in t["params"].items())
        # Optuna's number, as in trials/trial_NNNN, best_rec.json and the final "best: trial N" line.
        failed = f"  failed: {t['error'][:300]}" if t.get("error") else ""
        print(f"  trial {t['number']:>3} of {n} {t['state']:<8}{value}  ({params}){failed}", flush=True)
    return show


def worker_argv(args, backend: str = "local") -> list[str]:
    """This search's command line for one extra worker: same study and options, quiet; the local
    backend (on SLURM nodes too) or docker for workers sharing this GPU host."""
    same = cli.to_argv(command, args, drop=("workers", "backend", "json", "quiet", "worker"))
    return [sys.executable, str(SCRIPT), *same, "--worker", "--quiet", "--backend", backend]
