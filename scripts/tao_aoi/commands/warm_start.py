"""Phase 2 -> 3: the inputs for AutoML refinement, and registering its winner back into the run.

Without --register: picks the best DEFT iteration by the metric contract and prints (and writes
<R>/automl/phase3/warm_start.json) its combined training CSV, its checkpoint, its spec and a search
space with the architecture pinned and the learning rate narrowed for fine-tuning. Exit 2 if DEFT
hard-stopped (Phase 3 is skipped).
With --register BEST_REC: copies Phase 3's winning checkpoint into <R>/final_automl/train/ and
commits it; then run next_stage.py (evaluate on the KPI set, then finalize: a regressed Phase 3
never becomes the deliverable).
"""
from __future__ import annotations

from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.automl import search_space
from tao_aoi.pipeline import handoff


@cli.command("warm_start.py", __doc__, next_step="without --register: python3 scripts/automl.py with the printed "
             "train CSV, --warm-start checkpoint and --search-space; with --register: python3 scripts/next_stage.py "
             "--results-dir R")
@cli.option("--results-dir")
@cli.option("--search-space", help="base space to narrow (default: the backend's model space)")
@click.option("--register", metavar="BEST_REC", help="Phase 3 best_rec.json to register as final_automl")
def command(args) -> int:
    if args.register:
        out = handoff.register_phase3(args.results_dir, args.register)
    else:
        space = search_space.load(args.search_space) if args.search_space else None
        out = handoff.warm_start_inputs(args.results_dir, space)
    cli.emit_json(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
