"""Append one event to <results-dir>/loop_log.jsonl with the next seq (exclusive lock, fsync).

For progress notes that do not change state; stage results go through commit_stage.py, which
logs its own event. Never write the log with echo/jq: seq must stay 1, 2, 3, ... with no gap.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.errors import UserError
from tao_aoi.layout import ITER_RE
from tao_aoi.state import deft_state, stages


@cli.command("log_stage.py", __doc__, next_step="python3 scripts/next_stage.py --results-dir R (unchanged: a note is "
             "not a stage result; record results with commit_stage.py)")
@cli.option("--results-dir")
@cli.option("--iter")
@click.option("--stage", required=True, type=click.Choice(stages.ALL_STAGES))
@click.option("--status", required=True, type=click.Choice(("ok", "error")))
@click.option("--summary", required=True, help="one line for the log and the report")
@click.option("--duration-sec", type=float, default=0.0)
@cli.option("--json", help="print the logged event as JSON")
def command(args) -> int:
    if args.iter != stages.RUN and not ITER_RE.match(args.iter):
        raise UserError(f"--iter {args.iter!r} must be baseline, iterN (N >= 1), final_automl or run")
    event = deft_state.log(args.results_dir, label=args.iter, stage=args.stage, status=args.status,
                      summary=args.summary, duration_sec=args.duration_sec)
    if args.json:
        cli.emit_json(event)
    else:
        print(f"logged seq={event['seq']} {args.iter}/{args.stage} {args.status}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
