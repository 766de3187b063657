"""Check a training CSV before any job trains on it; exit 2 listing what is wrong.

Every image exists for every light of the spec (input and golden), labels are written canonically
(PASS, MISSING, ...: TAO compares them case-sensitively), no sample repeats, both PASS and defect
rows are present, and (with --against) nothing leaks into the validation/KPI sets.
--report-json writes the full report (written also on failure: it is the evidence).
"""
from __future__ import annotations

from typing import Sequence

from tao_aoi import atomic, changenet_csv, cli, dataset_checks, train_spec
from tao_aoi.errors import HardStop


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("validate_training_csv.py", __doc__)
    p.add_argument("--csv", required=True)
    p.add_argument("--images-root", required=True)
    p.add_argument("--train-spec", required=True, help="spec giving the lights (dataset.classify.input_map) and image_ext")
    p.add_argument("--against", action="append", default=[], help="held-out CSV to check for leakage (repeatable)")
    p.add_argument("--report-json", help="write the report here")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
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
