"""Pick the deliverable among all complete candidates and write best_model.json + its inference spec.

Candidates: baseline, every evaluated DEFT iteration and final_automl (Phase 3). Choice by the
metric contract: constraints first, then its direction, ties to the earlier candidate. Writes
<R>/best_model.json (checkpoint, threshold, metric, the candidate table) and
<R>/best_model_inference_spec.yaml. Safe to rerun (e.g. after Phase 3 registers its result).
"""
from __future__ import annotations

from typing import Sequence

from tao_aoi import cli, fmt
from tao_aoi.pipeline import deliverable


@cli.command("prepare_inference_spec.py", __doc__, next_step="the commit_stage.py line next_stage.py printed "
             "(finalize), then python3 scripts/render_report.py --results-dir R")
@cli.option("--results-dir")
@cli.option("--json", help="print best_model.json")
def command(args) -> int:
    model = deliverable.prepare(args.results_dir)
    if args.json:
        cli.emit_json(model)
    else:
        r = model["metric_result"]
        print(f"deliverable: {model['iteration']} {r['name']}={fmt.num(r['value'])}{r.get('unit', '')} "
              f"(passed={model['passed']}) checkpoint={model['checkpoint']}")
        if model["phase3_note"]:
            print(model["phase3_note"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
