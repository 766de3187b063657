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

import click

from tao_aoi import cli, defaults
from tao_aoi.pipeline import compute_budget, preflight


@cli.command("preflight.py", __doc__, next_step="after the user approves: python3 scripts/run_pipeline.py "
             "--workspace W --max-iterations N --kpi-target T --yes (same options)")
@cli.option("--workspace")
@cli.option("--backend")
@cli.option("--phases", help="the phases the run will include (as run_pipeline.py --phases)")
@cli.option("--max-iterations")
@cli.option("--kpi-target")
@cli.option("--trials", default=None, show_default=False,
            help=f"AutoML trials per phase (default {defaults.AUTOML_TRIALS}, or from --time-limit)")
@cli.option("--algorithm")
@cli.deft_knobs
@click.option("--dry-run", is_flag=True,
              help="time short trainings and an inference on this host for the compute estimate")
@cli.option("--time-limit")
@cli.option("--epoch-sec")
@cli.option("--holdout-csv")
@cli.option("--json", help="print the report as JSON")
def command(args) -> int:
    budget = None
    if args.dry_run or args.time_limit or args.epoch_sec:
        budget = compute_budget.plan(args.workspace, backend=args.backend, phases=args.phases, trials=args.trials,
                               max_iterations=args.max_iterations, num_sdg=args.num_sdg,
                               top_k_per_target=args.top_k_per_target, algorithm=args.algorithm,
                               time_limit=args.time_limit, epoch_sec=args.epoch_sec)
    iterations = args.max_iterations if args.max_iterations is not None else (budget or {}).get("max_iterations")
    trials = args.trials if args.trials is not None else (budget or {}).get("trials") or defaults.AUTOML_TRIALS
    report = preflight.run(args.workspace, args.backend, iterations, args.kpi_target, trials=trials,
                           algorithm=args.algorithm, num_sdg=args.num_sdg, top_k_per_target=args.top_k_per_target,
                           min_similarity=args.min_similarity, budget=budget, phases=args.phases,
                           holdout_csv=args.holdout_csv)
    if args.json:
        cli.emit_json(report)
    else:
        print(preflight.render(report))
    return 0 if report["ready"] else 2


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
