"""KPI of an inference.csv at an operating point -> <output-dir>/metric_result.json.

Positive = any label other than --pass-label (case-insensitive); predicted defect iff
siamese_score > threshold; FAR = FP / (FP + TN). The operating point is the --kpi-target's "at"
clause when given, else --far-target (highest recall with FAR <= x), else --recall-target (the
largest threshold keeping recall >= r; at 100% just below the lowest defect score, ties count as
false alarms). With --kpi-target, `passed` is recomputed from the contract. Every FAR carries its
resolution (100 / PASS rows) and a 95% exact binomial interval. --calibration-csv (the same model's
inference.csv on the validation set) adds `calibrated`: the threshold chosen there at the same
operating point, applied unchanged to this set (what a threshold set before the KPI set existed
gives). `deployment` is the threshold to ship: the middle of the gap the operating point sits in,
with its margins. Exit 2 on bad input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from tao_aoi import atomic, cli, defaults, fmt
from tao_aoi.analysis import evaluation, metric_contract
from tao_aoi.errors import UserError
from tao_aoi.state import read_only


def _operating_point(args) -> tuple[dict[str, Any] | None, str, float]:
    contract = metric_contract.parse_kpi_target(args.kpi_target) if args.kpi_target else None
    if contract is not None:
        point = contract["operating_point"]
        given = {"recall_pct": args.recall_target, "far_pct": args.far_target}
        for name, flag in (("recall_pct", "--recall-target"), ("far_pct", "--far-target")):
            value = given[name]
            # Compare as stage_plan writes the flag (%g), so a plan-built command always agrees.
            if value is not None and (name != point["name"] or f"{value:g}" != f"{point['target']:g}"):
                raise UserError(f"{flag} {value:g} disagrees with --kpi-target {args.kpi_target!r}, whose operating "
                                f"point is {point['name']} {point['target']:g}; drop one of them")
        return contract, point["name"], float(point["target"])
    if args.far_target is not None:
        if args.recall_target is not None:
            raise UserError("give --recall-target or --far-target, not both")
        return None, "far_pct", args.far_target
    recall = defaults.RECALL_TARGET_PCT if args.recall_target is None else args.recall_target
    return None, "recall_pct", recall


@cli.command("analyze_kpi.py", __doc__, next_step="in a DEFT run, the commit_stage.py line next_stage.py printed; "
             "then python3 scripts/gap_analysis.py --inference-csv INFERENCE_CSV ... for the weakest samples")
@click.argument("inference_csv")
@cli.option("--output-dir", help="metric_result.json is written here")
@click.option("--recall-target", type=cli.RecallPercent(), default=None,
              help=f"operating point: recall in percent  [default: {defaults.RECALL_TARGET_PCT:g}]")
@click.option("--far-target", type=cli.Percent(), default=None,
              help="operating point: the highest recall with FAR <= this percent")
@cli.option("--pass-label")
@cli.option("--kpi-target")
@click.option("--calibration-csv", metavar="CSV", help="the same model's inference.csv on the validation set: "
              "choose the threshold there, report this set's KPI at it (calibrated)")
@cli.option("--json", help="print metric_result.json on stdout")
def command(args) -> int:
    read_only.refuse_committed(args.output_dir, "--output-dir", "analyze_kpi.py")
    contract, name, target = _operating_point(args)
    result = evaluation.analyze(args.inference_csv, point_name=name, point_target=target, contract=contract,
                                pass_label=args.pass_label, calibration_csv=args.calibration_csv)
    out = Path(args.output_dir) / evaluation.RESULT_NAME
    atomic.write_json(out, result)
    if args.json:
        cli.emit_json(result)
        return 0
    c = result["counts"]
    line = (f"FAR {fmt.num(result['far_pct'])}% at recall {fmt.num(result['recall_pct'])}% (threshold "
            f"{fmt.exact(result['threshold'])}; tp={c['tp']} fp={c['fp']} tn={c['tn']} fn={c['fn']}; precision "
            f"{fmt.num(result['precision_pct'])}%, F1 {fmt.num(result['f1'])})")
    if contract is not None:
        line += f"; {contract['text']}: {'PASSED' if result['passed'] else 'not met'}"
    print(line)
    for extra in evaluation.summary_lines(result):
        print(extra)
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
