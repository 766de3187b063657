"""Assemble iteration N's training set: previous rows unchanged + this iteration's SDG and mined rows.

Reads the run's config from <R>/deft_state.json. Writes <R>/iterN/dataset/train_combined_iterN.csv,
train_combined_iterN_provenance.csv (source per row: base_train / previous_iter / sdg / mined) and
validation_report.json. Hard stops (exit 2): zero new rows, a missing image for any light,
non-canonical labels, or any leak into the validation or KPI sets (compared on resolved identity).
"""
from __future__ import annotations

from typing import Sequence

from tao_aoi import assembly, cli


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("assemble_dataset.py", __doc__)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--iter", required=True, type=int, help="iteration number N (>= 1)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = assembly.assemble(args.results_dir, args.iter)
    if args.json:
        cli.emit_json(report)
    else:
        src = report["new_by_source"]
        print(f"iter{args.iter}: {report['previous_rows']} previous + {report['new_rows']} new "
              f"(sdg {src['sdg']}, mined {src['mined']}, {report['duplicates_dropped']} duplicates dropped) = "
              f"{report['combined_rows']} rows; 0 missing files, 0 leaks")
    return 0
