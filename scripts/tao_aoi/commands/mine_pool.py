"""Mine real labelled images similar to the weak samples (cosine k-NN over one embedder).

Embeds the targets (mining_gaps.parquet from route_samples.py) and the mining pool with the same
backend embedder (a settings mismatch is a hard stop), keeps each target's --top-k-per-target
nearest pool rows with cosine >= --min-similarity (default: the floor the embedder was calibrated
for, recorded in its settings: SigLIP 0.9, the local embedder 0.8), among pool rows of the target's
own label unless --any-label, leaves rows mined by earlier iterations out of the search (the
--history ledger) and pool rows that are validation/KPI samples (--exclude). Writes mined_rows.csv
(ChangeNet rows + similarity, target; paths relative to --images-root), knn_summary.csv (one row per
target) and mining_summary.json. With --embedding-cache the pool is embedded once per pool content.
Exit 2: empty pool with targets routed to mining (also once held-out rows are removed), embedder
mismatch, bad input.
"""
from __future__ import annotations

from typing import Sequence

from tao_aoi import cli, defaults, mining
from tao_aoi.backends import get_backend


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("mine_pool.py", __doc__)
    p.add_argument("--targets", required=True, help="mining_gaps.parquet (weak samples routed to mining)")
    p.add_argument("--mining-pool", required=True, help="mining pool CSV (ChangeNet columns, labelled)")
    p.add_argument("--images-root", required=True)
    p.add_argument("--results-dir", required=True, help="output folder, e.g. <R>/iterN/mining")
    p.add_argument("--train-spec", required=True, help="spec with the lights and image_ext")
    p.add_argument("--backend", default="local", choices=defaults.BACKENDS, help="where the embedder runs")
    p.add_argument("--top-k-per-target", type=int, default=defaults.TOP_K_PER_TARGET)
    p.add_argument("--min-similarity", type=float, default=None,
                   help="cosine floor (default: the embedder's calibrated floor, defaults.MIN_SIMILARITY_BY_EMBEDDER)")
    p.add_argument("--any-label", dest="same_label", action="store_false", default=defaults.MINE_SAME_LABEL,
                   help="search every pool row, not only those with the target's label")
    p.add_argument("--history", required=True, help="ledger of rows mined by earlier iterations (<R>/mining_history.json)")
    p.add_argument("--iteration", required=True, help="this iteration's label, e.g. iter2")
    p.add_argument("--exclude", action="append", default=[], help="held-out CSV whose samples must never be mined")
    p.add_argument("--embedding-cache", help="folder to cache the pool's embeddings across iterations")
    p.add_argument("--method", default="auto", choices=mining.METHODS,
                   help=f"k-NN search: exact (numpy, blocked), ann (faiss HNSW) or auto (ann from "
                        f"mining.ANN_MIN_POOL = {mining.ANN_MIN_POOL:g} pool rows; see bench/mining.py)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    summary = mining.mine(args.targets, args.mining_pool, args.images_root, args.results_dir, args.train_spec,
                          get_backend(args.backend), args.top_k_per_target, args.min_similarity, args.history,
                          args.iteration, exclude=args.exclude, cache_dir=args.embedding_cache, method=args.method,
                          same_label=args.same_label)
    if args.json:
        cli.emit_json(summary)
    elif not summary["targets"]:
        print("no weak samples were routed to mining; wrote empty mined_rows.csv and knn_summary.csv")
    else:
        print(f"mined {summary['mined']} new rows for {summary['targets']} targets "
              f"({summary['above_floor']} candidates >= {summary['min_similarity']:g}, "
              f"{summary['mined_earlier']} mined earlier, {summary['excluded_heldout']} held-out pool rows excluded; "
              f"search {summary['method']}, pool embeddings {summary['pool_embeddings']})")
    return 0
