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

import click

from tao_aoi import cli
from tao_aoi.errors import UserError
from tao_aoi.layout import ITER_RE
from tao_aoi.state import deft_state, stages


def artifact_options(fn):
    """One --<artifact> PATH option per key of stages.ARTIFACT_KEYS (which ones a stage needs: stages.ARTIFACTS)."""
    for key in reversed(stages.ARTIFACT_KEYS):
        fn = click.option("--" + key.replace("_", "-"), key, metavar="PATH", help="stage artifact")(fn)
    return fn


@cli.command("commit_stage.py", __doc__, next_step="python3 scripts/next_stage.py --results-dir R")
@cli.option("--results-dir")
@cli.option("--iter")
@click.option("--stage", required=True, type=click.Choice(stages.COMMIT_STAGES[1:]))
@click.option("--status", default="ok", type=click.Choice(("ok", "error")))
@click.option("--summary", default="", show_default=False, help="one line for the log and the report (say why on error)")
@click.option("--duration-sec", type=float, default=0.0)
@click.option("--source", help="train only: where the checkpoint came from, e.g. automl_phase1")
@artifact_options
@cli.option("--json", help="print the committed event as JSON")
def command(args) -> int:
    if args.iter != stages.RUN and not ITER_RE.match(args.iter):
        raise UserError(f"--iter {args.iter!r} must be baseline, iterN (N >= 1), final_automl or run")
    if (args.iter == stages.RUN) != (args.stage == "finalize"):
        raise UserError("--stage finalize goes with --iter run, and only it does")
    if args.source and args.stage != "train":
        raise UserError("--source applies to --stage train only")
    artifacts = {k: getattr(args, k) for k in stages.ARTIFACT_KEYS}
    st, event = deft_state.commit(args.results_dir, label=args.iter, stage=args.stage, status=args.status,
                             summary=args.summary, duration_sec=args.duration_sec, artifacts=artifacts,
                             source=args.source)
    if args.json:
        cli.emit_json({k: v for k, v in event.items() if k != "patch"})
    else:
        nxt = stages.expected_next(st)
        print(f"committed seq={event['seq']} {args.iter}/{args.stage} status={args.status} run={st['status']}"
              f" next={nxt if nxt else 'none'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
