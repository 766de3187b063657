"""Run the AOI pipeline headless (no LLM): AutoML -> DEFT loop -> AutoML, or one phase of it.

Every stage is the same script the skills tell the agent to run, and every result is committed
through the single state writer. Prints a progress bar and one status line per stage, and at the
end the trajectory and the report's path. Killed at any moment and rerun with the same arguments,
it continues where it stopped (same --results-dir; without one, the newest unfinished run of the
workspace with the same arguments is resumed). A hard stop exits 2 with the reason; fix the cause
and rerun the same command to retry that stage.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli, phases
from tao_aoi.errors import UserError


@cli.command("run_pipeline.py", __doc__, next_step="open the report whose path it prints last; on a hard stop, fix "
             "the cause and rerun the same command")
@cli.option("--workspace")
@cli.option("--results-dir", required=False, help="run folder (default: resume the newest matching unfinished run, "
                                                  "else <workspace>/results/run_<YYYYMMDD_HHMMSS>)")
@cli.option("--backend")
@click.option("--phases", default="all", type=click.Choice(phases.PHASE_SETS))
@cli.option("--max-iterations", required=True)
@cli.option("--kpi-target", required=True)
@cli.option("--trials")
@cli.option("--algorithm")
@cli.deft_knobs
@cli.option("--seed")
@click.option("--yes", is_flag=True, help="approve the plan without asking (CI / batch)")
@cli.option("--quiet")
@cli.option("--json", help="print the final summary as JSON")
def command(args) -> int:
    if args.max_iterations < 1:
        raise UserError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    if args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    ws = Path(args.workspace).expanduser().resolve()
    if not ws.is_dir():
        raise UserError(f"--workspace {ws} is not a directory")
    opts = phases.Options.from_args(args, ws)
    results = phases.results_dir_for(opts, args.results_dir)
    if not args.yes and not phases.confirm(opts, results):
        print("not started (answer 'yes' or pass --yes)")
        return 1
    t0 = time.monotonic()
    summary = phases.run(opts, results, quiet=args.quiet)
    summary["wall_sec"] = round(time.monotonic() - t0, 1)
    if args.json:
        cli.emit_json(summary)
    else:
        print(phases.render_summary(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
