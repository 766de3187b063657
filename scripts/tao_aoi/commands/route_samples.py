"""Route the weak samples of kpi_gaps.parquet per label: sdg, mining, both, or dropped.

sdg = the label is in --sdg-labels and the pre-generated AnomalyGen pool (--sdg-pool: the folder
with reconstructed_image/ + original_image/, or its SDG_result.csv) has paired samples of it;
mining = the mining pool CSV has rows of it. Writes mining_gaps.parquet, sdg_gaps.parquet,
dropped.csv (with the reason), relabel_review.csv (samples that look mislabelled, for the user)
and routing_summary.json (row counts per label and route that add up to the input). Exit 2 when
neither route gets a row (stop the iteration) or on bad input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.deft import routing
from tao_aoi.state import read_only


@cli.command("route_samples.py", __doc__, next_step="the commit_stage.py line next_stage.py printed, then "
             "ingest_sdg.py (sdg) and mine_pool.py (mining) as next_stage.py prints them")
@click.option("--gaps", required=True, help="kpi_gaps.parquet from gap_analysis.py")
@click.option("--sdg-pool", required=True, help="AnomalyGen output folder or its SDG_result.csv")
@click.option("--mining-pool", required=True, help="mining pool CSV (a label column at least)")
@cli.option("--results-dir", help="output folder (e.g. <R>/iterN/routing)")
@cli.option("--sdg-labels")
@cli.option("--pass-label")
@click.option("--exclude-relabel", is_flag=True,
              help="keep rows that look mislabelled out of both routes (bucket 'relabel')")
@cli.option("--json", help="print routing_summary.json on stdout")
def command(args) -> int:
    read_only.refuse_committed(args.results_dir, "--results-dir", "route_samples.py")
    s = routing.run(args.gaps, args.sdg_pool, args.mining_pool, args.results_dir,
                    sdg_labels=args.sdg_labels.split(","), pass_label=args.pass_label,
                    exclude_relabel=args.exclude_relabel)
    if args.json:
        cli.emit_json(s)
        return 0
    for lbl, v in s["per_label"].items():
        extra = f" - {v['reason']}" if v["reason"] else ""
        print(f"{lbl:<20} {v['samples']:>5} samples -> {v['route']}{extra}")
    o, n, lights = s["outputs"], s["output_samples"], s["lights"]

    def count(name: str) -> str:
        return f"{n[name]} samples x {lights} lights = {o[name]} rows"

    print(f"mining {count('mining_gaps.parquet')}, sdg {count('sdg_gaps.parquet')}, dropped {count('dropped.csv')}, "
          f"{o['relabel_review.csv']} samples to review for relabelling; summary in "
          f"{Path(args.results_dir) / 'routing_summary.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
