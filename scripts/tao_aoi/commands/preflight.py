"""Pre-flight: every read-only check and the nine-section summary before the single approval.

Sections: workspace/host/platform/network; credentials (names only); container images
(PRESENT/MISSING, or not needed for local); data (rows per CSV and label, missing files, leakage);
Phase 1, Phase 2 and Phase 3 configuration (only those of --phases); compute estimate (--dry-run
times short trainings, an inference and a gap analysis on this host; --epoch-sec takes a known
epoch time instead; --time-limit 8h turns a time budget into max_iterations and trials); the
confirmation line. Hard blockers (missing inputs, leakage, empty pool, bad KPI text, no
--max-iterations) exit 2; blockers the run fixes itself after approval are listed apart.
Writes nothing.
"""
from __future__ import annotations

from typing import Sequence

from tao_aoi import cli, defaults, preflight, run_cost
from tao_aoi.errors import UserError


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("preflight.py", __doc__)
    p.add_argument("--workspace", required=True)
    p.add_argument("--backend", default="local", choices=defaults.BACKENDS)
    p.add_argument("--phases", default="all", choices=("all", "automl", "deft"),
                   help="the phases the run will include (as run_pipeline.py --phases)")
    p.add_argument("--max-iterations", type=int)
    p.add_argument("--kpi-target")
    p.add_argument("--trials", type=int, help=f"AutoML trials per phase (default {defaults.AUTOML_TRIALS}, or from "
                                              f"--time-limit)")
    p.add_argument("--algorithm", default="bayesian")
    p.add_argument("--num-sdg", type=int, default=defaults.NUM_SDG)
    p.add_argument("--top-k-per-target", type=int, default=defaults.TOP_K_PER_TARGET)
    p.add_argument("--min-similarity", type=float, default=defaults.MIN_SIMILARITY)
    p.add_argument("--dry-run", action="store_true",
                   help="time short trainings and an inference on this host for the compute estimate")
    p.add_argument("--time-limit", help="e.g. 8h, 90m, 1h30m, 3600s: estimate max_iterations and trials that fit "
                                        "(implies --dry-run unless --epoch-sec is given)")
    p.add_argument("--epoch-sec", type=float, help="a known seconds-per-epoch on the base set (docker/slurm) "
                                                   "instead of a measured one")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.epoch_sec is not None and not args.epoch_sec > 0:
        raise UserError(f"--epoch-sec must be a positive number of seconds, got {args.epoch_sec}")
    budget = None
    if args.dry_run or args.time_limit or args.epoch_sec:
        budget = run_cost.plan(args.workspace, backend=args.backend, phases=args.phases, trials=args.trials,
                               max_iterations=args.max_iterations, num_sdg=args.num_sdg,
                               top_k_per_target=args.top_k_per_target, algorithm=args.algorithm,
                               time_limit=args.time_limit, epoch_sec=args.epoch_sec)
    iterations = args.max_iterations if args.max_iterations is not None else (budget or {}).get("max_iterations")
    trials = args.trials if args.trials is not None else (budget or {}).get("trials") or defaults.AUTOML_TRIALS
    report = preflight.run(args.workspace, args.backend, iterations, args.kpi_target, trials=trials,
                           algorithm=args.algorithm, num_sdg=args.num_sdg, top_k_per_target=args.top_k_per_target,
                           min_similarity=args.min_similarity, budget=budget, phases=args.phases)
    if args.json:
        cli.emit_json(report)
    else:
        print(preflight.render(report))
    return 0 if report["ready"] else 2
