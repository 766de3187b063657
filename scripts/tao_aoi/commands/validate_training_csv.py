"""Check a training CSV before any job trains on it; exit 2 listing what is wrong.

Every image exists for every light of the spec (input and golden), labels are written canonically
(PASS, MISSING, ...: TAO compares them case-sensitively), no sample repeats, both PASS and defect
rows are present, and (with --against) nothing leaks into the validation/KPI sets.
--report-json writes the full report (written also on failure: it is the evidence).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from tao_aoi import atomic, cli
from tao_aoi.data import changenet_csv, dataset_checks
from tao_aoi.errors import HardStop
from tao_aoi.state import read_only
from tao_aoi.tao import train_spec


@cli.command("validate_training_csv.py", __doc__, next_step="python3 scripts/train.py --train-csv CSV ... (or fix "
             "what it lists and run it again)")
@click.option("--csv", required=True, help="the training CSV")
@cli.option("--images-root", required=True)
@cli.option("--train-spec", required=True)
@click.option("--against", multiple=True, help="held-out CSV to check for leakage (repeatable)")
@click.option("--report-json", help="write the report here")
@cli.option("--json", help="print the report as JSON")
def command(args) -> int:
    if args.report_json:
        read_only.refuse_committed(Path(args.report_json).parent, "--report-json", "validate_training_csv.py")
    spec = train_spec.load(args.train_spec)
    lights, ext = train_spec.lights(spec, args.train_spec), train_spec.image_ext(spec, args.train_spec)
    raw = changenet_csv.read(args.csv, what="training CSV", canonicalize=False)
    against = [(a, changenet_csv.read(a, what="held-out CSV")) for a in args.against]
    report = dataset_checks.check(raw, args.csv, args.images_root, lights, ext, against)
    if args.report_json:
        atomic.write_json(args.report_json, report)
    if args.json:
        cli.emit_json(report)
    bad = dataset_checks.problems(report)
    if bad:
        raise HardStop(f"{args.csv}: " + "; ".join(bad))
    if not args.json:
        for w in dataset_checks.warnings(report):
            print(f"warning: {w}")
        print(f"ok: {report['rows']} rows, {len(lights)} light(s), labels {report['labels']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
