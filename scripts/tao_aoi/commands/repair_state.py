"""Rebuild deft_state.json and pipeline_state.json from loop_log.jsonl (after a hand edit or a crash).

Both files are views of the log, and every command that reads a run refuses one that disagrees with
it (exit 2, naming the file). This rewrites each as the log replayed; a file that disagreed is kept
beside it as <name>.edited. The log itself is the record and cannot be rebuilt: if one of its lines
was edited, the error names the line - undo that edit, or start a new run in a new --results-dir.
Holds the run lock, so it is refused while a run is going.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

from tao_aoi import cli
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.state import deft_state, pipeline_state


@cli.command("repair_state.py", __doc__, next_step="python3 scripts/next_stage.py --results-dir R (or rerun the "
             "same run_pipeline.py command)")
@cli.option("--results-dir")
@cli.option("--json", help="print {deft_state, pipeline_state}: what was done to each")
def command(args) -> int:
    R = Results.at(args.results_dir)
    if not R.log.is_file():
        raise UserError(f"{R.log} does not exist; there is no record to rebuild from (is --results-dir the run's "
                        f"folder?)")
    done = {"deft_state": deft_state.rebuild(R.root), "pipeline_state": pipeline_state.rebuild(R)}
    if args.json:
        cli.emit_json(done)
    else:
        print("\n".join(done.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
