"""Record a stage result in deft_state.json: the only way state changes.

Checks, in order: the transition table (an out-of-order stage is refused and the expected one
named), the stage's artifacts (exist, non-empty, inside the results folder; a train checkpoint
inside <R>/<iter>/train/), their content where it is a gate (metric result -> `passed` recomputed
from the contract; assemble's validation report must show zero missing files, leaks and bad
labels and at least one new row). Then one event is appended to loop_log.jsonl and the state is
replaced atomically. --status error marks the run failed; after fixing the cause, commit the same
stage again (ok) and the run resumes.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

from tao_aoi import cli, stages, state
from tao_aoi.errors import UserError
from tao_aoi.layout import ITER_RE


def build_parser() -> cli.ArgumentParser:
    p = cli.parser("commit_stage.py", __doc__)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--iter", required=True, help="baseline, iterN, final_automl, or run (for finalize)")
    p.add_argument("--stage", required=True, choices=stages.COMMIT_STAGES[1:])
    p.add_argument("--status", default="ok", choices=("ok", "error"))
    p.add_argument("--summary", default="", help="one line for the log and the report (say why on error)")
    p.add_argument("--duration-sec", type=float, default=0.0)
    p.add_argument("--source", help="train only: where the checkpoint came from, e.g. automl_phase1")
    g = p.add_argument_group("stage artifacts (which ones each stage needs: see stages.ARTIFACTS)")
    for key in stages.ARTIFACT_KEYS:
        g.add_argument("--" + key.replace("_", "-"), dest=key, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the committed event as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.iter != stages.RUN and not ITER_RE.match(args.iter):
        raise UserError(f"--iter {args.iter!r} must be baseline, iterN (N >= 1), final_automl or run")
    if (args.iter == stages.RUN) != (args.stage == "finalize"):
        raise UserError("--stage finalize goes with --iter run, and only it does")
    if args.source and args.stage != "train":
        raise UserError("--source applies to --stage train only")
    artifacts = {k: getattr(args, k) for k in stages.ARTIFACT_KEYS}
    st, event = state.commit(args.results_dir, label=args.iter, stage=args.stage, status=args.status,
                             summary=args.summary, duration_sec=args.duration_sec, artifacts=artifacts,
                             source=args.source)
    if args.json:
        cli.emit_json({k: v for k, v in event.items() if k != "patch"})
    else:
        nxt = stages.expected_next(st)
        print(f"committed seq={event['seq']} {args.iter}/{args.stage} status={args.status} run={st['status']}"
              f" next={nxt if nxt else 'none'}")
    return 0
