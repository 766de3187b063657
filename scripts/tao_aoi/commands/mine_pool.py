"""Mine real labelled images similar to the weak samples (cosine k-NN over one embedder).

Embeds the targets (mining_gaps.parquet from route_samples.py) and the mining pool with the same
backend embedder (a settings mismatch is a hard stop), keeps each target's --top-k-per-target
nearest pool rows with cosine >= --min-similarity (default: the floor the embedder was calibrated
for, recorded in its settings: SigLIP 0.9, the local embedder 0.8), among pool rows of the target's
own label unless --any-label (a target that pins the KPI keeps its --top-k-per-target nearest rows
of its label even below the floor), leaves rows mined by earlier iterations out of the search (the
--history ledger) and pool rows that are validation/KPI samples (--exclude). Writes mined_rows.csv
(ChangeNet rows + similarity, target; paths relative to --images-root), knn_summary.csv (one row per
target) and mining_summary.json. With --embedding-cache the pool is embedded once per pool content.
Exit 2: empty pool with targets routed to mining (also once held-out rows are removed), embedder
mismatch, bad input.
"""
from __future__ import annotations

from typing import Sequence

import click

from tao_aoi import cli, defaults, fmt
from tao_aoi.backends import get_backend
from tao_aoi.deft import mining
from tao_aoi.state import read_only


@cli.command("mine_pool.py", __doc__, next_step="the commit_stage.py line next_stage.py printed, then "
             "python3 scripts/assemble_dataset.py --results-dir R --iter N")
@click.option("--targets", required=True, help="mining_gaps.parquet (weak samples routed to mining)")
@click.option("--mining-pool", required=True, help="mining pool CSV (ChangeNet columns, labelled)")
@cli.option("--images-root", required=True)
@cli.option("--results-dir", help="output folder, e.g. <R>/iterN/mining")
@cli.option("--train-spec", required=True)
@cli.option("--backend", help="where the embedder runs")
@cli.option("--top-k-per-target")
@cli.option("--min-similarity")
@cli.option("--history", help="ledger of rows mined by earlier iterations (<R>/mining_history.json)")
@cli.option("--iteration")
@click.option("--exclude", multiple=True, help="held-out CSV whose samples must never be mined (repeatable)")
@click.option("--embedding-cache", help="folder to cache the pool's embeddings across iterations")
@click.option("--method", default="auto", type=click.Choice(mining.METHODS),
              help=f"k-NN search: exact (numpy, blocked), ann (faiss HNSW) or auto (ann from "
                   f"mining.ANN_MIN_POOL = {mining.ANN_MIN_POOL:g} pool rows; see bench/mining.py)")
@click.option("--any-label", is_flag=True, default=not defaults.MINE_SAME_LABEL,
              help="search every pool row, not only those with the target's label")
@cli.option("--max-retries")
@cli.option("--json", help="print mining_summary.json")
def command(args) -> int:
    read_only.refuse_committed(args.results_dir, "--results-dir", "mine_pool.py")
    backend = get_backend(args.backend, max_retries=args.max_retries)
    summary = mining.mine(args.targets, args.mining_pool, args.images_root, args.results_dir, args.train_spec,
                          backend, args.top_k_per_target, args.min_similarity, args.history,
                          args.iteration, exclude=args.exclude, cache_dir=args.embedding_cache, method=args.method,
                          same_label=not args.any_label)
    if args.json:
        cli.emit_json(summary)
    elif not summary["targets"]:
        print("no weak samples were routed to mining; wrote empty mined_rows.csv and knn_summary.csv")
    else:
        print(f"mined {summary['mined']} new pool samples (CSV rows) for {summary['targets']} weak samples "
              f"({summary['above_floor']} neighbour pairs >= {fmt.num(summary['min_similarity'])}, "
              f"{summary['mined_earlier']} pool samples mined earlier, {summary['excluded_heldout']} held-out pool "
              f"samples excluded; search {summary['method']}, pool embeddings {summary['pool_embeddings']})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
