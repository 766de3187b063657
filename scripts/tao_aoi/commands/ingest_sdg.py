"""Ingest pre-generated synthetic defects (AnomalyGen pool) for the labels routed to SDG.

Allocates --num-sdg rows across those labels in proportion to their weak counts, stages each
sample's NG image and OK golden for every light as <object_name>_<light><ext>, and writes
sdg_rows.csv (ChangeNet rows, paths relative to --images-root) and allocation.json.
Hard stops (exit 2, with numbers): allocation mismatch (a label has fewer unused samples than
allocated) and silent drop (a routed label's sample lacks its OK golden or a light). Samples used
by an earlier iteration (per --history) are never ingested again.
"""
from __future__ import annotations

from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.deft import sdg
from tao_aoi.state import read_only


@cli.command("ingest_sdg.py", __doc__, next_step="python3 scripts/mine_pool.py --targets <R>/iterN/routing/"
             "mining_gaps.parquet ... (next_stage.py prints the exact line after this stage's commit)")
@click.option("--routing", required=True, help="route_samples.py output folder (holds sdg_gaps.parquet)")
@click.option("--sdg-pool", required=True, help="AnomalyGen output folder (reconstructed_image/, original_image/)")
@cli.option("--num-sdg")
@cli.option("--results-dir", help="output folder, e.g. <R>/iterN/sdg")
@cli.option("--images-root", required=True, help="root the training CSV paths are relative to")
@cli.option("--train-spec", required=True)
@cli.option("--history", help="ledger of samples used by earlier iterations (<R>/sdg_history.json)")
@cli.option("--iteration")
@cli.option("--json", help="print allocation.json")
def command(args) -> int:
    read_only.refuse_committed(args.results_dir, "--results-dir", "ingest_sdg.py")
    alloc = sdg.ingest(args.routing, args.sdg_pool, args.num_sdg, args.results_dir, args.images_root,
                              args.train_spec, args.history, args.iteration)
    if args.json:
        cli.emit_json(alloc)
    else:
        parts = ", ".join(f"{k}={v}" for k, v in alloc["ingested"].items()) or "no label routed to SDG"
        print(f"ingested {alloc['total_ingested']} synthetic samples (training CSV rows, every light each: {parts}) "
              f"-> {args.results_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
