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

from tao_aoi import cli, defaults, sdg_ingest


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("ingest_sdg.py", __doc__)
    p.add_argument("--routing", required=True, help="route_samples.py output folder (holds sdg_gaps.parquet)")
    p.add_argument("--sdg-pool", required=True, help="AnomalyGen output folder (reconstructed_image/, original_image/)")
    p.add_argument("--num-sdg", type=int, default=defaults.NUM_SDG, help="rows to ingest (default %(default)s)")
    p.add_argument("--results-dir", required=True, help="output folder, e.g. <R>/iterN/sdg")
    p.add_argument("--images-root", required=True, help="root the training CSV paths are relative to")
    p.add_argument("--train-spec", required=True, help="spec with the lights and image_ext")
    p.add_argument("--history", required=True, help="ledger of samples used by earlier iterations (<R>/sdg_history.json)")
    p.add_argument("--iteration", required=True, help="this iteration's label, e.g. iter2")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    alloc = sdg_ingest.ingest(args.routing, args.sdg_pool, args.num_sdg, args.results_dir, args.images_root,
                              args.train_spec, args.history, args.iteration)
    if args.json:
        cli.emit_json(alloc)
    else:
        parts = ", ".join(f"{k}={v}" for k, v in alloc["ingested"].items()) or "no label routed to SDG"
        print(f"ingested {alloc['total_ingested']} synthetic rows ({parts}) -> {args.results_dir}")
    return 0
