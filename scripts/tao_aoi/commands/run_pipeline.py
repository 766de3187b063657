"""Run the AOI pipeline headless (no LLM): AutoML -> DEFT loop -> AutoML, or one phase of it.

Every stage is the same script the skills tell the agent to run, and every result is committed
through the single state writer. Prints a progress bar and one status line per stage, and at the
end the trajectory and the report's path. Killed at any moment and rerun with the same arguments,
it continues where it stopped (same --results-dir; without one, the newest unfinished run of the
workspace with the same arguments is resumed). The pre-flight checks run first: a hard blocker (a
missing input, leakage, an empty pool, ...) exits 2 before anything starts. A hard stop exits 2 with
the reason; fix the cause and rerun the same command to retry that stage (--num-sdg,
--top-k-per-target, --min-similarity and --max-iterations may change on that rerun: they apply
from the iterations not started yet). --time-limit 8h instead of --max-iterations: a dry run on
this host turns it into max_iterations and trials (the values you give are kept), shown to confirm;
with --yes used and recorded, and a resumed run keeps it.
On docker/slurm a job ended by an infrastructure fault (container killed or out of memory, docker
daemon or pull failure, SLURM node failure, preemption or OUT_OF_MEMORY, a lost poll) is retried
--max-retries times in a fresh job folder after a doubling backoff, logged as a retry event and
shown in the report; past that, or for any error of the job itself, the run stops (exit 2) naming
the fault, and rerunning the same command resumes at that job. An AutoML trial that still fails is a
failed trial and the study goes on; it stops only once more trials failed than 25% of --trials
(defaults.AUTOML_MAX_FAILED_SHARE, at least 1).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli, defaults
from tao_aoi.backends import faults
from tao_aoi.errors import UserError
from tao_aoi.pipeline import compute_budget, phases
from tao_aoi.state import run_lock


@cli.command("run_pipeline.py", __doc__, next_step="open the report whose path it prints last; on a hard stop, fix "
             "the cause and rerun the same command")
@cli.option("--workspace")
@cli.option("--results-dir", required=False, help="run folder (default: resume the newest matching unfinished run, "
                                                  "else <workspace>/results/run_<YYYYMMDD_HHMMSS>)")
@cli.option("--backend")
@cli.option("--phases")
@cli.option("--max-iterations", help="DEFT iterations at most (never guessed; or --time-limit)")
@cli.option("--kpi-target", required=True)
@cli.option("--trials", default=None, show_default=False,
            help=f"AutoML trials per phase (default {defaults.AUTOML_TRIALS}, or from --time-limit)")
@cli.option("--time-limit")
@cli.option("--epoch-sec")
@cli.option("--algorithm")
@cli.deft_knobs
@cli.option("--seed")
@cli.option("--holdout-csv")
@cli.option("--max-retries")
@click.option("--yes", is_flag=True, help="approve the plan without asking (CI / batch)")
@cli.option("--quiet")
@cli.option("--json", help="print the final summary as JSON")
def command(args) -> int:
    if args.max_iterations is None and args.time_limit is None and args.phases != "automl":
        raise UserError("max_iterations is required and never guessed: pass --max-iterations N, or --time-limit "
                        "(e.g. 8h) to have it estimated for you to confirm")
    if args.max_iterations is not None and args.max_iterations < 1:
        raise UserError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    ws = Path(args.workspace).expanduser().resolve()
    if not ws.is_dir():
        raise UserError(f"--workspace {ws} is not a directory")
    given = phases.Options.from_args(args, ws)
    results = phases.results_dir_for(given, args.results_dir)
    run_lock.refuse_if_running(results.root)  # a second start exits at once, before pre-flight and any dry run
    budget = phases.plan_budget(given, results, epoch_sec=args.epoch_sec)
    opts = phases.effective(given, budget)
    checks = phases.preflight_checks(opts)
    if not args.yes and not phases.confirm(opts, results, checks["warnings"], budget):
        print("not started (answer 'yes' or pass --yes)")
        return 1
    if not args.quiet:
        if budget and args.yes:
            print(compute_budget.summary_line(budget), flush=True)
        for w in checks["warnings"] if args.yes else ():
            print(f"warning: {w}", flush=True)
    t0 = time.monotonic()
    with faults.configured(args.max_retries):  # the backends its stage commands create in-process
        summary = phases.run(given, results, quiet=args.quiet, budget=budget)
    summary["wall_sec"] = round(time.monotonic() - t0, 1)
    if args.json:
        cli.emit_json(summary)
    else:
        print(phases.render_summary(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
