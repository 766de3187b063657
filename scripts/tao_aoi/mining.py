"""Mine real images similar to the weak samples: one embedder, cosine k-NN, a similarity floor.

Targets (the weak samples routed to mining) and the mining pool are embedded by the same backend
embedder; the settings recorded beside each embedding file must match or the run stops (mixing
embedders makes cosine meaningless). For each target the ``top_k`` nearest pool rows are kept if
their cosine similarity is at least ``min_similarity``. Rows mined by an earlier iteration are
skipped (ledger keyed by normalised sample identity, so moving the results folder breaks nothing;
rerunning the same iteration replaces its own entries). Pool rows that are the same sample as a
validation/KPI row are excluded and counted, never mined.
Search: exact numpy matrix products in blocks (memory-bounded) for normal pools; a faiss HNSW index
above ``ANN_MIN_POOL`` rows (measured in bench/mining.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tao_aoi import atomic, changenet_csv, labels, leakage
from tao_aoi.backends.base import EmbedJob
from tao_aoi.errors import HardStop, UserError

ANN_MIN_POOL = 200_000   # below this exact search is fast enough (bench/mining.py)
BLOCK_BYTES = 64 << 20   # similarity block size for exact search
SUMMARY_COLUMNS = ["target", "label", "candidates", "above_floor", "mined_earlier", "new", "best_similarity"]


# ------------------------------------------------------------------ embeddings


def settings_file(parquet: Path) -> Path:
    return parquet.with_name(parquet.name + ".settings.json")


def read_embeddings(parquet: Path) -> tuple[np.ndarray, dict]:
    df = pd.read_parquet(parquet, columns=["embedding"])
    emb = np.stack(df["embedding"].to_numpy()).astype(np.float32) if len(df) else np.zeros((0, 0), np.float32)
    try:
        settings = json.loads(settings_file(parquet).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise UserError(f"{parquet} has no readable {settings_file(parquet).name}; re-embed it") from None
    return emb, settings


def embed_rows(backend, rows: pd.DataFrame, images_root: Path, spec: Path, out: Path) -> tuple[np.ndarray, dict]:
    csv = out.with_suffix(".rows.csv")
    changenet_csv.write(rows[list(changenet_csv.REQUIRED)], csv)
    handle = backend.embed(EmbedJob(csv=csv, images_root=images_root, spec=spec, output=out))
    if handle.state != "COMPLETE":
        raise HardStop(f"embedding {csv} failed on the {backend.name} backend ({handle.detail or handle.state})")
    emb, settings = read_embeddings(out)
    if len(emb) != len(rows):
        raise HardStop(f"{out} has {len(emb)} embeddings for {len(rows)} rows; the embedder dropped rows")
    return emb, settings


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def pool_embeddings(backend, pool: pd.DataFrame, pool_csv: Path, images_root: Path, spec: Path,
                    cache_dir: Path | None, workdir: Path) -> tuple[np.ndarray, dict]:
    """Embed the pool, reusing a cached embedding of the same pool file (pools are large, static)."""
    if cache_dir is not None:
        out = cache_dir / "pool_embeddings.parquet"
        meta = cache_dir / "pool_embeddings.source.json"
        if out.is_file() and meta.is_file():
            try:
                if json.loads(meta.read_text())["pool"] == _fingerprint(pool_csv):
                    emb, settings = read_embeddings(out)
                    if len(emb) == len(pool):
                        return emb, settings
            except (OSError, KeyError, json.JSONDecodeError):
                pass
        emb, settings = embed_rows(backend, pool, images_root, spec, out)
        atomic.write_json(meta, {"pool": _fingerprint(pool_csv)})
        return emb, settings
    return embed_rows(backend, pool, images_root, spec, workdir / "pool_embeddings.parquet")


# ------------------------------------------------------------------ search


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def knn_exact(targets: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k by blocked matrix products: (similarities, indices), each (n_targets, k), best first."""
    t, p = _normalise(targets), _normalise(pool)
    k = min(k, len(p))
    block = max(1, BLOCK_BYTES // max(1, 4 * len(p)))
    sims = np.empty((len(t), k), np.float32)
    idx = np.empty((len(t), k), np.int64)
    for start in range(0, len(t), block):
        s = t[start:start + block] @ p.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(s.shape[1]), (len(s), 1))
        ps = np.take_along_axis(s, part, axis=1)
        order = np.lexsort((part, -ps), axis=1)  # by similarity desc, ties by pool index
        idx[start:start + block] = np.take_along_axis(part, order, axis=1)
        sims[start:start + block] = np.take_along_axis(ps, order, axis=1)
    return sims, idx


def knn_ann(targets: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximate cosine top-k with a faiss HNSW index over unit vectors (inner product)."""
    import faiss

    t, p = _normalise(targets).astype(np.float32), _normalise(pool).astype(np.float32)
    index = faiss.IndexHNSWFlat(p.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(p)
    index.hnsw.efSearch = max(64, 4 * k)
    sims, idx = index.search(t, min(k, len(p)))
    return sims, idx.astype(np.int64)


def knn(targets: np.ndarray, pool: np.ndarray, k: int, method: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    if method == "auto":
        method = "ann" if len(pool) >= ANN_MIN_POOL else "exact"
    if method == "ann":
        s, i = knn_ann(targets, pool, k)
        return s, i, "faiss-hnsw"
    s, i = knn_exact(targets, pool, k)
    return s, i, "exact"


# ------------------------------------------------------------------ ledger


def read_history(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mined = data["mined"]
        assert isinstance(mined, dict)
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise UserError(f"--history {path} is not a mining ledger ({{'mined': {{key: iteration}}}}); restore or remove it") from None
    return {str(k): str(v) for k, v in mined.items()}


# ------------------------------------------------------------------ the stage


def targets_from_gaps(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"--targets {path} does not exist; run route_samples.py first (it writes mining_gaps.parquet)")
    gaps = pd.read_parquet(path)
    if gaps.empty:
        return pd.DataFrame(columns=list(changenet_csv.REQUIRED))
    for col in ("input_path", "object_name", "label"):
        if col not in gaps.columns:
            raise UserError(f"--targets {path} is missing column {col!r}; regenerate it with gap_analysis/route_samples")
    if "golden_path" not in gaps.columns:
        raise UserError(f"--targets {path} has no golden_path column; rerun gap_analysis.py on an inference.csv "
                        f"that keeps golden_path")
    t = gaps[list(changenet_csv.REQUIRED)].astype(str).drop_duplicates(["input_path", "object_name"])
    t["label"] = t["label"].map(labels.canonical_label)
    return t.reset_index(drop=True)


def mine(targets_path: str | Path, pool_csv: str | Path, images_root: str | Path, results_dir: str | Path,
         spec: str | Path, backend, top_k: int, min_similarity: float, history: str | Path, iteration: str,
         exclude: list[str] = (), cache_dir: str | Path | None = None, method: str = "auto") -> dict:
    if top_k < 1:
        raise UserError(f"--top-k-per-target must be >= 1, got {top_k}")
    if not -1.0 <= min_similarity <= 1.0:
        raise UserError(f"--min-similarity must be a cosine in [-1, 1], got {min_similarity}")
    out = Path(results_dir).resolve()
    root = Path(images_root).resolve()
    pool_path = Path(pool_csv)
    targets = targets_from_gaps(Path(targets_path))
    hist_path = Path(history)
    ledger = read_history(hist_path)
    earlier = {k for k, it in ledger.items() if it != iteration}
    summary = {"iteration": iteration, "targets": int(len(targets)), "top_k_per_target": top_k,
               "min_similarity": min_similarity, "pool_rows": 0, "excluded_heldout": 0, "method": None,
               "embedder": None, "candidates": 0, "above_floor": 0, "mined_earlier": 0, "mined": 0,
               "mined_labels": {}}
    extra_cols = ["source", "similarity", "target", "iteration"]
    with atomic.atomic_dir(out) as tmp:
        mined = pd.DataFrame(columns=list(changenet_csv.REQUIRED) + extra_cols)
        per_target = pd.DataFrame(columns=SUMMARY_COLUMNS)
        if len(targets):
            pool = changenet_csv.read(pool_path, what="mining pool CSV", allow_empty=True)
            summary["pool_rows"] = int(len(pool))
            if pool.empty:
                raise HardStop(f"mining pool {pool_path} is empty but {len(targets)} weak samples were routed to "
                               f"mining; add labelled images to the pool or route them elsewhere, then retry mining")
            pool_keys = leakage.sample_keys(pool, root, pool_path)
            held = set()
            for csv in exclude:
                held |= set(leakage.sample_keys(changenet_csv.read(csv, what="held-out CSV"), root, csv))
            usable = ~pool_keys.isin(held).to_numpy()
            summary["excluded_heldout"] = int((~usable).sum())
            t_emb, t_set = embed_rows(backend, targets, root, Path(spec), tmp / "target_embeddings.parquet")
            p_emb, p_set = pool_embeddings(backend, pool, pool_path, root, Path(spec),
                                           Path(cache_dir) if cache_dir else None, tmp)
            if t_set != p_set:
                raise HardStop(f"embedder mismatch: targets were embedded with {t_set} but the pool with {p_set}; "
                               f"delete the stale pool embedding cache and retry mining")
            summary["embedder"] = t_set
            pool_idx = np.flatnonzero(usable)
            sims, idx, summary["method"] = knn(t_emb, p_emb[pool_idx], top_k, method)
            idx = pool_idx[idx]
            tkeys = leakage.sample_keys(targets, root)
            n_t, k = idx.shape
            cand = pd.DataFrame({"t": np.repeat(np.arange(n_t), k), "p": idx.ravel(), "sim": sims.ravel()})
            cand["key"] = pool_keys.to_numpy()[cand["p"].to_numpy()]
            cand["floor"] = cand["sim"] >= min_similarity
            cand["earlier"] = cand["key"].isin(earlier)
            keep = cand[cand["floor"] & ~cand["earlier"]].sort_values(["sim", "t"], ascending=[False, True],
                                                                         kind="stable")
            keep = keep.drop_duplicates("key", keep="first")
            g = cand.groupby("t")
            per_target = pd.DataFrame({
                "target": tkeys.to_numpy(),
                "label": targets["label"].to_numpy(),
                "candidates": g.size().reindex(range(n_t), fill_value=0).to_numpy(),
                "above_floor": g["floor"].sum().reindex(range(n_t), fill_value=0).to_numpy(),
                "mined_earlier": (cand["floor"] & cand["earlier"]).groupby(cand["t"]).sum()
                .reindex(range(n_t), fill_value=0).to_numpy(),
                "new": keep.groupby("t").size().reindex(range(n_t), fill_value=0).to_numpy(),
                "best_similarity": g["sim"].max().reindex(range(n_t)).round(6).to_numpy(),
            })
            rows = pool.iloc[keep["p"].to_numpy()].copy()
            rows["source"] = "mined"
            rows["similarity"] = keep["sim"].round(6).to_numpy()
            rows["target"] = tkeys.to_numpy()[keep["t"].to_numpy()]
            rows["iteration"] = iteration
            mined = rows.reset_index(drop=True)
            summary.update(candidates=int(len(cand)), above_floor=int(cand["floor"].sum()),
                           mined_earlier=int((cand["floor"] & cand["earlier"]).sum()), mined=int(len(mined)),
                           mined_labels={str(a): int(b) for a, b in mined["label"].value_counts().sort_index().items()})
            new_keys = set(keep["key"])
        else:
            new_keys = set()
        changenet_csv.write(mined, tmp / "mined_rows.csv")
        changenet_csv.write(per_target, tmp / "knn_summary.csv")
        atomic.write_json(tmp / "mining_summary.json", summary)
    new_ledger = {k: it for k, it in ledger.items() if it != iteration}
    new_ledger.update({k: iteration for k in new_keys})
    atomic.write_json(hist_path, {"mined": dict(sorted(new_ledger.items()))})
    return summary
