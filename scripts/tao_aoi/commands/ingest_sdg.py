"""Ingest pre-generated synthetic defects (AnomalyGen pool) for the labels routed to SDG.

Allocates --num-sdg rows across those labels in proportion to their weak counts, after the
limiting families' priority share; those priority rows go to the pool pairs nearest each limiting
sample (cosine over the --backend embedder, as mining compares; the pool is embedded once per pool
content with --embedding-cache; the local embedder is standardised by the --reference-pool's real
images, embedded once into mining's cache). Stages each sample's NG image and OK golden for every light as
<object_name>_<light><ext>, and writes sdg_rows.csv (ChangeNet rows, paths relative to
--images-root; target and similarity for the targeted picks) and allocation.json.
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
@cli.option("--backend", help="where the embedder for the targeted picks runs")
@click.option("--embedding-cache", help="folder to cache the SDG pool's embeddings across iterations")
@click.option("--reference-pool", help="mining pool CSV: real images a standardising embedder (the local one) is "
                                       "standardised by for the targeted picks")
@click.option("--reference-cache", help="the mining stage's --embedding-cache (the reference pool is embedded once)")
@cli.option("--json", help="print allocation.json")
def command(args) -> int:
    from tao_aoi.backends import get_backend

    read_only.refuse_committed(args.results_dir, "--results-dir", "ingest_sdg.py")
    alloc = sdg.ingest(args.routing, args.sdg_pool, args.num_sdg, args.results_dir, args.images_root,
                       args.train_spec, args.history, args.iteration, backend=get_backend(args.backend),
                       cache_dir=args.embedding_cache, reference_pool=args.reference_pool,
                       reference_cache=args.reference_cache)
    if args.json:
        cli.emit_json(alloc)
    else:
        parts = ", ".join(f"{k}={v}" for k, v in alloc["ingested"].items()) or "no label routed to SDG"
        picked = sum(len(t["picked"]) for t in alloc["targeted"])
        aimed = (f"; {picked} of them the pairs nearest {len(alloc['targeted'])} limiting sample(s)"
                 if alloc["targeted"] else "")
        print(f"ingested {alloc['total_ingested']} synthetic samples (training CSV rows, every light each: {parts}"
              f"{aimed}) -> {args.results_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
