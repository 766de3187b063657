#!/usr/bin/env python3
"""Mining k-NN: exact numpy blocked search vs faiss HNSW (and faiss IndexFlatIP, a second exact baseline).

For each pool size and embedding dimension, a child process builds clustered unit embeddings
(tight and loose clusters around failure modes, so some top-k neighbours fall below the 0.9 floor), then runs
each method as mine_pool.py does (rows already unit length, `mining.knn_exact`, `mining.hnsw_index`
+ `mining.hnsw_search` with the single-threaded deterministic build) and reports build and query
time, the ratio to exact numpy measured in the same child, recall@k of HNSW against exact (also
restricted to neighbours above the 0.9 floor) and the peak memory above the pool itself. An HNSW build
forecast (power law through the previous sizes) above --hnsw-budget seconds is skipped and shown as
a forecast (~). Prints the crossover (smallest pool where HNSW build + query beats exact) per dimension.
Dimensions: 216 = the version-1 local embedder with 2 lights (version 2 has 50-73: cheaper still), 768 = a ViT-B-sized
TAO embedding. Run: .venv/bin/python bench/mining.py [--sizes 10000,100000] [--dims 216] [--targets 500]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from tao_aoi.deft import mining  # noqa: E402

FLOOR = 0.9
BUILD_GROWTH = 1.4  # HNSW build time ~ N^1.4 (measured here: 10k -> 100k rows took 24-25x longer)


def _mem() -> dict[str, float]:
    """VmRSS / VmHWM of this process in MB."""
    with open("/proc/self/status") as fh:
        return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in fh if line.startswith(("VmRSS", "VmHWM"))}


def _reset_peak() -> float:
    """Return freed heap to the OS (else a method reuses the previous one's pages unseen), reset VmHWM."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _mem()["VmRSS"]


def clustered(n: int, d: int, rng: np.random.Generator, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Unit rows around random centres, tight and loose (cosine to the centre 0.86..0.97)."""
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, len(centres), m)]
        spread = rng.uniform(0.25, 0.6, (m, 1)).astype(np.float32) / np.float32(math.sqrt(d))
        x += rng.standard_normal((m, d), dtype=np.float32) * spread
        out[s:s + m] = x
    return mining.unit_rows(out, inplace=True)


def cell(n: int, d: int, n_targets: int, k: int, hnsw: bool) -> dict:
    """One pool size x dimension, every method, in this (fresh) process."""
    import faiss

    rng = np.random.default_rng(n * 1000 + d)
    centres = mining.unit_rows(rng.standard_normal((max(50, n // 200), d), dtype=np.float32), inplace=True)
    pool = clustered(n, d, rng, centres)
    targets = clustered(n_targets, d, rng, centres)
    res: dict = {"n": n, "d": d, "pool_mb": pool.nbytes / 2**20, "threads": faiss.omp_get_max_threads()}

    base = _reset_peak()
    t0 = time.perf_counter()
    es, ei = mining.knn_exact(targets, pool, k, unit=True)
    res["exact"] = {"build": 0.0, "query": time.perf_counter() - t0, "peak_mb": _mem()["VmHWM"] - base}

    base = _reset_peak()
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(pool)
    t1 = time.perf_counter()
    fs, fi = flat.search(targets, k)
    res["flat"] = {"build": t1 - t0, "query": time.perf_counter() - t1, "peak_mb": _mem()["VmHWM"] - base,
                   "recall": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(fi, ei)]))}
    del flat

    if hnsw:
        base = _reset_peak()
        t0 = time.perf_counter()
        index = mining.hnsw_index(pool)
        t1 = time.perf_counter()
        hs, hi = mining.hnsw_search(index, targets, k)
        t2 = time.perf_counter()
        above = es >= FLOOR
        found = np.array([[j in set(h) for j in e] for e, h in zip(ei, hi)])
        res["hnsw"] = {"build": t1 - t0, "query": t2 - t1, "peak_mb": _mem()["VmHWM"] - base,
                       "recall": float(found.mean()),
                       "recall_floor": float(found[above].mean()) if above.any() else None}
    res["above_floor"] = float((es >= FLOOR).mean())
    return res


def run_cell(n: int, d: int, args, hnsw: bool) -> dict:
    cmd = [sys.executable, __file__, "--cell", f"{n},{d},{args.targets},{args.k},{int(hnsw)}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cell {n}x{d} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,500000,1000000")
    ap.add_argument("--dims", default="216,768")
    ap.add_argument("--targets", type=int, default=500, help="weak samples per mining run (~50-500)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--hnsw-budget", type=float, default=30.0, help="skip an HNSW build forecast above this (s)")
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cell:
        n, d, t, k, h = map(int, args.cell.split(","))
        json.dump(cell(n, d, t, k, bool(h)), sys.stdout)
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    dims = [int(s) for s in args.dims.split(",")]
    start = time.perf_counter()
    print(f"{args.targets} targets, k={args.k}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"HNSW M={mining.HNSW_M} efConstruction={mining.HNSW_EF_CONSTRUCTION} efSearch={mining.HNSW_EF_SEARCH}, "
          f"single-threaded build (deterministic); peak = memory above the pool itself")
    print(f"{'pool':>9} {'dim':>4} {'method':<11} {'build s':>8} {'query s':>8} {'total s':>8} {'x exact':>8} "
          f"{'recall@k':>9} {'>=floor':>8} {'peak MB':>8}")
    crossover: dict[int, int | None] = {}
    queries: dict[int, tuple[int, float]] = {}  # dim -> (pool, targets at which the HNSW build pays)
    for d in dims:
        measured: list[tuple[int, float]] = []  # (pool, HNSW build s)
        crossover[d] = None
        for n in sizes:
            forecast = None
            if measured:
                (n0, b0), growth = measured[-1], BUILD_GROWTH
                if len(measured) > 1:
                    (n1, b1) = measured[-2]
                    growth = math.log(b0 / b1) / math.log(n0 / n1)
                forecast = b0 * (n / n0) ** growth
            measure = forecast is None or forecast <= args.hnsw_budget
            r = run_cell(n, d, args, measure)
            ex = r["exact"]["build"] + r["exact"]["query"]
            print(f"{n:>9,} {d:>4} {'exact numpy':<11} {0:>8.2f} {r['exact']['query']:>8.2f} {ex:>8.2f} {1:>8.2f} "
                  f"{'(ref)':>9} {'':>8} {r['exact']['peak_mb']:>8.0f}   pool {r['pool_mb']:.0f} MB, "
                  f"{100 * r['above_floor']:.0f}% of top-{args.k} >= {FLOOR}")
            f = r["flat"]
            ft = f["build"] + f["query"]
            print(f"{'':>9} {'':>4} {'faiss flat':<11} {f['build']:>8.2f} {f['query']:>8.2f} {ft:>8.2f} "
                  f"{ft / ex:>8.2f} {f['recall']:>9.3f} {'':>8} {f['peak_mb']:>8.0f}")
            if "hnsw" in r:
                h = r["hnsw"]
                ht = h["build"] + h["query"]
                measured.append((n, h["build"]))
                per_target = ex / args.targets
                queries[d] = (n, h["build"] / per_target)
                floor_recall = f"{h['recall_floor']:.3f}" if h["recall_floor"] is not None else "-"
                print(f"{'':>9} {'':>4} {'faiss hnsw':<11} {h['build']:>8.2f} {h['query']:>8.2f} {ht:>8.2f} "
                      f"{ht / ex:>8.2f} {h['recall']:>9.3f} {floor_recall:>8} {h['peak_mb']:>8.0f}")
            else:
                ht = forecast
                print(f"{'':>9} {'':>4} {'faiss hnsw':<11} {'~' + format(forecast, '.0f'):>8} {'':>8} "
                      f"{'~' + format(ht, '.0f'):>8} {'~' + format(ht / ex, '.0f'):>8}   skipped: forecast build "
                      f"> {args.hnsw_budget:g} s")
            if crossover[d] is None and ht <= ex:
                crossover[d] = n
    print(f"total {time.perf_counter() - start:.0f} s")
    for d, n in crossover.items():
        if n is None:
            print(f"crossover at dim {d}: none up to {sizes[-1]:,} rows (HNSW build + query never beat exact search "
                  f"of {args.targets} targets)", end="")
        else:
            print(f"crossover at dim {d}: {n:,} rows", end="")
        if d in queries:
            print(f"; at {queries[d][0]:,} rows the HNSW build alone costs as much as exact search of "
                  f"~{queries[d][1]:,.0f} targets", end="")
        print()
    print(f"mining.ANN_MIN_POOL = {mining.ANN_MIN_POOL:,g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
