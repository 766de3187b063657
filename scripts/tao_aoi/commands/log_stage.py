"""Append one event to <results-dir>/loop_log.jsonl with the next seq (exclusive lock, fsync).

For progress notes that do not change state; stage results go through commit_stage.py, which
logs its own event. Never write the log with echo/jq: seq must stay 1, 2, 3, ... with no gap.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

from tao_aoi import cli, stages, state
from tao_aoi.errors import UserError
from tao_aoi.layout import ITER_RE


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("log_stage.py", __doc__)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--iter", required=True, help="baseline, iterN, final_automl or run")
    p.add_argument("--stage", required=True, choices=stages.ALL_STAGES)
    p.add_argument("--status", required=True, choices=("ok", "error"))
    p.add_argument("--summary", required=True)
    p.add_argument("--duration-sec", type=float, default=0.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.iter != stages.RUN and not ITER_RE.match(args.iter):
        raise UserError(f"--iter {args.iter!r} must be baseline, iterN (N >= 1), final_automl or run")
    event = state.log(args.results_dir, label=args.iter, stage=args.stage, status=args.status,
                      summary=args.summary, duration_sec=args.duration_sec)
    if args.json:
        cli.emit_json(event)
    else:
        print(f"logged seq={event['seq']} {args.iter}/{args.stage} {args.status}")
    return 0
