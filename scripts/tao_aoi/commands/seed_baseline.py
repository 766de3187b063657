"""Phase 1 -> 2: make the AutoML winner DEFT's baseline (no retrain).

Deep-merges the winning parameters onto the baseline spec into
<workspace>/specs/baseline_spec_automl.yaml (epochs untouched), initialises the run on that spec
(pass --max-iterations and --kpi-target, or init it yourself with --train-spec pointing there),
copies the winning checkpoint into <R>/baseline/train/ and commits baseline/train with
source automl_phase1, so next_stage.py continues at baseline/evaluate. A winner that predicts one
class only is skipped for the next best. Idempotent.
"""
from __future__ import annotations

from typing import Sequence

import click

from tao_aoi import cli, fmt
from tao_aoi.pipeline import handoff, run_config


@cli.command("seed_baseline.py", __doc__, next_step="python3 scripts/next_stage.py --results-dir R (continues at "
             "baseline/evaluate)")
@click.option("--best-rec", required=True, help="Phase 1 best_rec.json (automl.py)")
@cli.option("--results-dir")
@cli.option("--workspace")
@cli.option("--max-iterations", help="initialise the run (else it must exist)")
@cli.option("--kpi-target", help="with --max-iterations: the KPI contract, e.g. 'FAR < 2% at Recall=100%'")
@cli.option("--backend")
@cli.deft_knobs
@cli.option("--holdout-csv")
@cli.option("--json")
def command(args) -> int:
    config = None
    if args.max_iterations is not None or args.kpi_target is not None:
        if args.max_iterations is None or args.kpi_target is None:
            from tao_aoi.errors import UserError

            raise UserError("give both --max-iterations and --kpi-target to initialise the run, or neither")
        config = run_config.deft_config(
            workspace=args.workspace, max_iterations=args.max_iterations, backend=args.backend, num_sdg=args.num_sdg,
            top_k_per_target=args.top_k_per_target, min_similarity=args.min_similarity, holdout_csv=args.holdout_csv)
    out = handoff.seed_baseline(args.best_rec, args.results_dir, args.workspace, config, args.kpi_target)
    if args.json:
        cli.emit_json(out)
    elif out["seeded"]:
        print(f"seeded baseline from AutoML trial {out['trial']} (val FAR {fmt.num(out['score'])}%); spec {out['spec']}")
    else:
        print(f"nothing to do: {out['reason']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
