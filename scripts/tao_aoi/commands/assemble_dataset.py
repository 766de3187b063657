"""Assemble iteration N's training set: previous rows unchanged + this iteration's SDG and mined rows.

Reads the run's config from <R>/deft_state.json. Writes <R>/iterN/dataset/train_combined_iterN.csv,
train_combined_iterN_provenance.csv (source per row: base_train / previous_iter / sdg / mined) and
validation_report.json. Hard stops (exit 2): zero new rows, a missing image for any light,
non-canonical labels, or any leak into the validation or KPI sets (compared on resolved identity).
"""
from __future__ import annotations

from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.deft import assembly
from tao_aoi.layout import Results
from tao_aoi.state import read_only


def iteration_number(value: str) -> int:
    """`2` or `iter2` -> 2: --iter names an iteration as log_stage.py/commit_stage.py do, or by its number."""
    digits = value[4:] if value.startswith("iter") else value
    if not digits.isdigit() or int(digits) < 1:
        raise click.BadParameter(f"{value!r} is not a DEFT iteration; give N or iterN with N >= 1")
    return int(digits)


@cli.command("assemble_dataset.py", __doc__, next_step="the commit_stage.py line next_stage.py printed, then train.py "
             "on <R>/iterN/dataset/train_combined_iterN.csv")
@cli.option("--results-dir")
@click.option("--iter", required=True, callback=lambda ctx, param, value: iteration_number(value),
              help="the iteration: N or iterN (N >= 1)")
@cli.option("--json", help="print validation_report.json")
def command(args) -> int:
    read_only.refuse_committed(Results.at(args.results_dir).combined_csv(args.iter).parent, "--results-dir/--iter",
                               "assemble_dataset.py")
    report = assembly.assemble(args.results_dir, args.iter)
    if args.json:
        cli.emit_json(report)
    else:
        src = report["new_by_source"]
        print(f"iter{args.iter}: {report['previous_rows']} previous + {report['new_rows']} new samples "
              f"(sdg {src['sdg']}, mined {src['mined']}, {report['duplicates_dropped']} duplicates dropped) = "
              f"{report['combined_rows']} samples (training CSV rows, every light each); 0 missing files, 0 leaks")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
