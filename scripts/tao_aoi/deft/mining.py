"""Mine real images similar to the weak samples: one embedder, cosine k-NN, a similarity floor.

Targets (the weak samples routed to mining) and the mining pool are embedded by the same backend
embedder; the settings recorded beside each embedding file must match or the run stops (mixing
embedders makes cosine meaningless). For each target the ``top_k`` nearest pool rows are kept if
their cosine similarity is at least the floor; a pool row near several targets goes to the most
similar one. The floor is the one the embedder was calibrated for (its settings' ``min_similarity``
or ``defaults.MIN_SIMILARITY_BY_EMBEDDER``: SigLIP 0.9, the local embedder its own) unless the
caller gives one. Embedders whose settings say ``standardise: pool`` (the local one) are compared
after standardising targets and pool by the pool's mean and spread, so every descriptor counts.
With ``same_label`` (the default: the pool is labelled and routing sent a label to mining to get
more of that label) a target's neighbours are searched among pool rows of its own label only, and a
limiting target (it pins the KPI threshold) keeps its ``top_k`` nearest rows of its label even below
the floor: the priority goes to the nearest real rows there are (on the field workspace the defect
that pinned the KPI had none above the floor after iter1). Rows mined by an earlier iteration leave the search (ledger keyed by normalised sample
identity, so moving the results folder breaks nothing; rerunning the same iteration replaces its own
entries), so a weak sample that recurs reaches its next-nearest rows. Pool rows that are the same sample as a validation/KPI row are excluded and counted, never
mined. Mined rows are written with their paths relative to the image root.
Search: exact numpy matrix products in blocks (memory-bounded, ties to the lower pool row); a faiss
HNSW index on request (``ANN_MIN_POOL``: bench/mining.py found no pool size where it pays).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tao_aoi import atomic, defaults, labels
from tao_aoi.backends.base import EmbedJob
from tao_aoi.data import changenet_csv, leakage
from tao_aoi.deft import priority
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import comes_before
from tao_aoi.tao import train_spec

# Pool rows from which ``auto`` search builds an HNSW index: never. bench/mining.py (500 targets, k=5,
# 2 shared cores, three runs) found no crossover up to 1M rows. HNSW build + query vs exact search:
# 5-8x at 10k rows (216-d, the version-1 local embedder; version 2 has 50-73) / 7-11x (768-d), 16x at 100k (builds of 21 s / 46 s,
# recall@5 1.000 / 0.998), and the gap grows (build ~N^1.4, exact ~N): at 1M rows exact took 9-11 s /
# 19-28 s, the deterministic single-threaded build is forecast at ~800-1100 s / ~1700 s. Building the
# index costs as much as exact search of ~2.6-5.6k targets; a mining run has 50-500, and reusing one
# index over a run's 3-5 iterations would not pay either. ``--method ann`` still forces HNSW.
ANN_MIN_POOL = math.inf
EMBED_BATCH_ROWS = 4096    # rows of an embedding parquet converted at a time (read_embeddings)
EMBED_READ_BUFFER = 1 << 20  # bytes read ahead while decoding a column chunk (not the whole chunk at once)
NORM_ROWS = 8192            # rows normalised at a time (np.linalg.norm squares a copy of what it is given: 25 MB at 768-d)
BLOCK_BYTES = 64 << 20   # working memory of one exact-search block (similarities + argpartition indices)
TARGET_BLOCK = 2048      # targets per pass over the pool in exact search
SIM_TOLERANCE = 1e-5     # float32 rounding: a floor of 1.0 still admits an identical image
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 64
METHODS = ("auto", "exact", "ann")
SUMMARY_COLUMNS = ["target", "label", "k", "candidates", "above_floor", "new", "new_below_floor", "best_similarity"]
EXTRA_COLUMNS = ["source", "similarity", "target", "iteration", "limiting_rank"]  # rank 0: not a limiting target
POOL_CACHE, POOL_CACHE_SOURCE = "pool_embeddings.parquet", "pool_embeddings.source.json"


# ------------------------------------------------------------------ embeddings


def settings_file(parquet: Path) -> Path:
    return parquet.with_name(parquet.name + ".settings.json")


def read_embeddings(parquet: Path) -> tuple[np.ndarray, dict]:
    """(rows x dim float32 matrix, embedder settings) from an embed job's parquet, without per-row objects.

    Streamed in batches of ``EMBED_BATCH_ROWS`` into one float32 matrix, the pages of the column read
    as they are decoded: a 1M x 768 pool costs its 3 GB plus ~0.3 GB (bench/scale.py), where the whole
    table held Arrow's copy and numpy's at once (2.5x the matrix). Problems are reported over the whole
    file, in this order: rows without an embedding, lengths that differ, NaN or infinity.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def unreadable(exc: BaseException) -> UserError:
        return UserError(f"{parquet} has no readable 'embedding' column ({' '.join(str(exc).split())[:200]}); "
                         f"re-embed it")

    try:
        pf = pq.ParquetFile(parquet, buffer_size=EMBED_READ_BUFFER, pre_buffer=False)
        kind = pf.schema_arrow.field("embedding").type
    except (OSError, ValueError, KeyError) as exc:
        raise unreadable(exc) from None
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise UserError(f"{parquet}: column 'embedding' is {kind}, not a list of numbers; re-embed it")
    n = pf.metadata.num_rows
    emb, row, nulls, bad = None, 0, 0, 0
    shortest = longest = None
    try:
        for batch in pf.iter_batches(batch_size=EMBED_BATCH_ROWS, columns=["embedding"]):
            col = batch.column(0)
            m = len(col)
            nulls += col.null_count
            if not nulls:
                lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
                if m:
                    lo, hi = int(lengths.min()), int(lengths.max())
                    shortest = lo if shortest is None else min(shortest, lo)
                    longest = hi if longest is None else max(longest, hi)
                if m and shortest == longest:
                    if emb is None:
                        emb = np.empty((n, shortest), np.float32)
                    block = emb[row:row + m]
                    block[...] = col.flatten().to_numpy(zero_copy_only=False).reshape(m, shortest)
                    finite = np.isfinite(block)
                    if not finite.all():
                        bad += int((~finite).any(axis=1).sum())
            row += m
    except (OSError, ValueError) as exc:
        raise unreadable(exc) from None
    if nulls:
        raise HardStop(f"{parquet}: {nulls} rows have no embedding; the embedder failed on them")
    if shortest != longest:
        raise HardStop(f"{parquet}: embeddings have different lengths ({shortest}..{longest}); re-embed it")
    if row != n:
        raise unreadable(ValueError(f"the file says {n} rows, {row} could be read"))
    if bad:
        raise HardStop(f"{parquet}: {bad} embeddings contain NaN or infinity; the embedder failed on them")
    if emb is None:
        emb = np.empty((0, 0), np.float32)
    try:
        settings = json.loads(settings_file(parquet).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise UserError(f"{parquet} has no readable {settings_file(parquet).name}; re-embed it") from None
    return emb, settings


def embed_rows(backend, rows: pd.DataFrame, images_root: Path, spec: Path, out: Path) -> tuple[np.ndarray, dict]:
    """Embed ``rows`` through the backend into ``out``; the job's input CSV is removed afterwards."""
    csv = out.with_name(out.stem + ".rows.csv")
    changenet_csv.write(rows[list(changenet_csv.REQUIRED)], csv)
    handle = backend.embed(EmbedJob(csv=csv, images_root=images_root, spec=spec, output=out))
    if handle.state != "COMPLETE":
        raise HardStop(f"embedding {csv} failed on the {backend.name} backend ({handle.detail or handle.state})")
    emb, settings = read_embeddings(out)
    if len(emb) != len(rows):
        raise HardStop(f"{out} has {len(emb)} embeddings for {len(rows)} rows; the embedder dropped rows")
    csv.unlink(missing_ok=True)
    return emb, settings


def spec_source(images_root: Path, spec: Path) -> dict:
    """The part of a cached embedding's source that is not the pool itself: image root, lights, ext."""
    s = train_spec.load(spec)
    return {"images_root": str(images_root), "lights": train_spec.lights(s, spec),
            "image_ext": train_spec.image_ext(s, spec)}


def _pool_source(pool_csv: Path, images_root: Path, spec: Path) -> dict:
    """What the cached pool embedding was computed from: the pool's content, image root, lights."""
    digest = hashlib.sha256()
    with open(pool_csv, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"pool_sha256": digest.hexdigest(), **spec_source(images_root, spec)}


def pool_embeddings(backend, pool: pd.DataFrame, pool_csv: Path | dict, images_root: Path, spec: Path,
                    cache_dir: Path | None, workdir: Path) -> tuple[np.ndarray, dict, str]:
    """Embed the pool, or reuse the cache embedded from the same pool content: (emb, settings, source).
    ``pool_csv``: the pool's CSV, or a dict that identifies what the rows were made from (the SDG pool)."""
    if cache_dir is None:
        workdir.mkdir(parents=True, exist_ok=True)
        return (*embed_rows(backend, pool, images_root, spec, workdir / POOL_CACHE), "embedded")
    out, meta = cache_dir / POOL_CACHE, cache_dir / POOL_CACHE_SOURCE
    source = dict(pool_csv) if isinstance(pool_csv, dict) else _pool_source(pool_csv, images_root, spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        if json.loads(meta.read_text(encoding="utf-8")) == source:
            emb, settings = read_embeddings(out)
            if len(emb) == len(pool):
                return emb, settings, "cache"
    except (OSError, ValueError, UserError):
        pass
    meta.unlink(missing_ok=True)  # the marker goes first: a run killed while re-embedding never trusts a torn cache
    emb, settings = embed_rows(backend, pool, images_root, spec, out)
    atomic.write_json(meta, source)
    return emb, settings, "embedded"


# ------------------------------------------------------------------ search


def unit_rows(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Rows scaled to unit L2 norm as C-contiguous float32 (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.empty((len(x), 1), np.float32)
    for s in range(0, len(x), NORM_ROWS):  # row by row alike; a block at a time bounds norm's temporary
        norms[s:s + NORM_ROWS, 0] = np.linalg.norm(x[s:s + NORM_ROWS], axis=1)
    norms[norms == 0] = 1
    if inplace and x.flags.writeable:
        x /= norms
        return x
    return x / norms


def _chunk_top_k(neg: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest negated similarities (unordered) and their columns; ties to the lower column."""
    size = neg.shape[1]
    if k >= size:
        return neg, np.broadcast_to(np.arange(size), neg.shape)
    part = np.argpartition(neg, k, axis=1)  # [:, :k] the k best, [:, k] the (k+1)-th best
    top = part[:, :k].copy()
    vals = np.take_along_axis(neg, top, axis=1)
    kth = vals.max(axis=1)
    after = np.take_along_axis(neg, part[:, k:k + 1], axis=1)[:, 0]
    del part
    for r in np.flatnonzero(after <= kth):  # a tie straddles the k-th place: choose by column
        cand = np.flatnonzero(neg[r] <= kth[r])
        cand = cand[np.lexsort((cand, neg[r, cand]))[:k]]
        top[r], vals[r] = cand, neg[r, cand]
    return vals, top


def _merge_top_k(best_v: np.ndarray, best_i: np.ndarray, rows: np.ndarray, vals: np.ndarray, ids: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Running top-k (rows sorted by negated similarity, then index) merged with (row, value, index) candidates."""
    m = len(best_v)
    rows = np.concatenate([np.repeat(np.arange(m), best_v.shape[1]), rows])
    vals = np.concatenate([best_v.ravel(), vals])
    ids = np.concatenate([best_i.ravel(), ids])
    order = np.lexsort((ids, vals, rows))
    rows, vals, ids = rows[order], vals[order], ids[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(m))[rows]
    keep = rank < k
    return vals[keep].reshape(m, -1), ids[keep].reshape(m, -1)


def knn_exact(targets: np.ndarray, pool: np.ndarray, k: int, unit: bool = False,
              rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k by blocked matrix products: (similarities, indices), each (n_targets, min(k, pool)).

    Best first; equal similarities go to the lower pool index. The pool is streamed once per block of
    ``TARGET_BLOCK`` targets, in chunks sized to ``BLOCK_BYTES``, into a running top-k per target; once
    it is full, a chunk contributes only the entries at least as good as a target's current k-th.
    ``unit=True``: the rows are already unit float32 (skips a copy of the pool).
    ``rows``: search only these rows of ``pool`` (indices returned are positions in ``rows``); each chunk is
    gathered as it is searched, so a subset of a large pool is never copied whole (same result as
    searching ``pool[rows]``).
    """
    if rows is not None and not unit:
        pool, rows = pool[rows], None
    t, p = (targets, pool) if unit else (unit_rows(targets), unit_rows(pool))
    n, size = len(t), len(p) if rows is None else len(rows)
    k = min(k, size)
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    if k == 0:
        return sims, idx
    tb = max(1, min(n, TARGET_BLOCK))
    # float32 similarities + int64 argpartition output per pool row, and the gathered rows themselves
    chunk = max(k + 1, BLOCK_BYTES // (12 * tb + (4 * p.shape[1] if rows is not None else 0)))
    for ts in range(0, n, tb):
        neg_t = -t[ts:ts + tb]  # negated cosine: ascending order = best first
        m = len(neg_t)
        best_v, best_i = np.empty((m, 0), np.float32), np.empty((m, 0), np.int64)
        for ps in range(0, size, chunk):
            neg = neg_t @ (p[ps:ps + chunk] if rows is None else p[rows[ps:ps + chunk]]).T
            if best_v.shape[1] == k:
                hit = neg <= best_v[:, -1:]
                n_hit = int(np.count_nonzero(hit))
                if n_hit == 0:
                    continue
                if n_hit <= 4 * m * k:
                    r, c = np.nonzero(hit)
                    best_v, best_i = _merge_top_k(best_v, best_i, r, neg[r, c], c + ps, k)
                    continue
            v, c = _chunk_top_k(neg, k)
            best_v, best_i = _merge_top_k(best_v, best_i, np.repeat(np.arange(m), v.shape[1]), v.ravel(),
                                          (c + ps).ravel(), k)
        sims[ts:ts + tb], idx[ts:ts + tb] = -best_v, best_i
    return sims, idx


def ann_library():
    """faiss, the optional ``ann`` extra (pyproject.toml): the default search never needs it."""
    try:
        import faiss
    except ImportError:
        from tao_aoi.layout import SCRIPTS_DIR

        raise UserError(f"--method ann needs faiss-cpu, the optional 'ann' extra, which is not installed: run "
                        f"python3 {SCRIPTS_DIR}/setup_env.py --extra ann (it pip-installs the pinned faiss-cpu "
                        f"into the plugin's .venv); or use --method exact") from None
    return faiss


def hnsw_index(pool: np.ndarray):
    """A faiss HNSW inner-product index over unit float32 rows, built on one thread.

    faiss inserts in parallel in an unspecified order, so a multi-threaded build is not reproducible;
    a rerun of an iteration must mine the same rows.
    """
    faiss = ann_library()
    index = faiss.IndexHNSWFlat(pool.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(pool)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def hnsw_search(index, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of unit float32 ``targets`` in ``index``, ordered like ``knn_exact``; an unfilled slot is -1."""
    k = min(k, index.ntotal)
    if k == 0:
        return np.empty((len(targets), 0), np.float32), np.empty((len(targets), 0), np.int64)
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, 4 * k)
    sims, idx = index.search(targets, k)
    idx = idx.astype(np.int64)
    missing = idx < 0
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, idx), np.where(missing, np.inf, -sims)), axis=1)
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)


def knn_ann(targets: np.ndarray, pool: np.ndarray, k: int, unit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Approximate cosine top-k with a faiss HNSW index; same shape and order as ``knn_exact`` (-1 = unfilled)."""
    t, p = (targets, pool) if unit else (unit_rows(targets), unit_rows(pool))
    if len(p) == 0:
        return np.empty((len(t), 0), np.float32), np.empty((len(t), 0), np.int64)
    return hnsw_search(hnsw_index(p), t, k)


def knn(targets: np.ndarray, pool: np.ndarray, k: int, method: str = "auto", unit: bool = False,
        rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Top-k cosine neighbours with the search ``method`` (auto|exact|ann) among ``rows`` of the pool (all
    when None; indices returned are positions in ``rows``); returns the method used."""
    if method == "auto":
        method = "ann" if (len(pool) if rows is None else len(rows)) >= ANN_MIN_POOL else "exact"
    if method == "ann":
        return (*knn_ann(targets, pool if rows is None else np.ascontiguousarray(pool[rows]), k, unit), "faiss-hnsw")
    if method == "exact":
        return (*knn_exact(targets, pool, k, unit, rows), "exact")
    raise ValueError(f"method {method!r} is not one of {METHODS}")


# ------------------------------------------------------------------ ledger


def read_history(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mined = data["mined"]
        assert isinstance(mined, dict)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise UserError(f"--history {path} is not a mining ledger ({{'mined': {{key: iteration}}}}); restore or remove it") from None
    return {str(k): str(v) for k, v in mined.items()}


# ------------------------------------------------------------------ the stage


def resolved(df: pd.DataFrame, images_root: Path, csv_dir: Path | None = None) -> pd.DataFrame:
    """A copy with input_path/golden_path relative to the image root (``images/x``, ``./x`` -> ``x``)."""
    out = df.copy()
    for col in ("input_path", "golden_path"):
        out[col] = leakage.resolve_dirs(df[col], images_root, csv_dir).to_numpy()
    return out


def targets_from_gaps(path: Path, images_root: Path, where: str = "--targets"
                      ) -> tuple[pd.DataFrame, pd.Series, np.ndarray, np.ndarray]:
    """One ChangeNet row per weak sample (the gaps have one row per light), its sample key, the false
    alarms it pins and its limiting rank when gap analysis listed it as a limiting sample (else 0, 0).
    ``where``: how messages name the file (the flag that gave it: mining's --targets, SDG's --routing)."""
    if not path.is_file():
        raise UserError(f"{where} {path} does not exist; run route_samples.py first (it writes {path.name})")
    try:
        gaps = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{where} {path} cannot be read as parquet ({' '.join(str(exc).split())[:200]}); "
                        f"rerun route_samples.py") from None
    for col in ("input_path", "object_name", "label"):
        if col not in gaps.columns:
            raise UserError(f"{where} {path} is missing column {col!r}; regenerate it with gap_analysis/route_samples")
    if "golden_path" not in gaps.columns:
        raise UserError(f"{where} {path} has no golden_path column; rerun gap_analysis.py on an inference.csv "
                        f"that keeps golden_path")
    t = gaps[list(changenet_csv.REQUIRED)].reset_index(drop=True)
    for col in changenet_csv.REQUIRED:
        blank = np.flatnonzero((t[col].isna() | (t[col].astype(str).str.strip() == "")).to_numpy())
        if blank.size:
            raise UserError(f"{where} {path} row {int(blank[0])}: empty {col!r}; rerun gap_analysis/route_samples")
        t[col] = t[col].astype(str).str.strip()
    t["label"] = t["label"].map(labels.canonical_label)
    keys = leakage.sample_keys(t, images_root)
    first = ~keys.duplicated().to_numpy()
    pinned, rank = np.zeros(len(gaps)), np.zeros(len(gaps), dtype=np.int64)
    if {"limiting_rank", "pinned_share"} <= set(gaps.columns):
        rank = pd.to_numeric(gaps["limiting_rank"], errors="coerce").fillna(0).to_numpy().astype(np.int64)
        pinned = np.where(rank > 0, pd.to_numeric(gaps["pinned_share"], errors="coerce").fillna(0.0).to_numpy(), 0.0)
    return (resolved(t[first], images_root).reset_index(drop=True), keys[first].reset_index(drop=True), pinned[first],
            np.maximum(rank[first], 0))


def _settings_diff(a: dict, b: dict) -> tuple[dict, dict]:
    diff = sorted((set(a) | set(b)) - {k for k in set(a) & set(b) if a[k] == b[k]})
    return {k: a.get(k) for k in diff}, {k: b.get(k) for k in diff}


def require_same_embedder(t_emb: np.ndarray, t_set: dict, p_emb: np.ndarray, p_set: dict, pool_from: str,
                          cache: Path | None, backend, stage: str) -> None:
    """HardStop unless targets and pool were embedded alike (cosine across embedders means nothing)."""
    if t_set == p_set and t_emb.shape[1] == p_emb.shape[1]:
        return
    a, b = (_settings_diff(t_set, p_set) if t_set != p_set else ({"dim": t_emb.shape[1]}, {"dim": p_emb.shape[1]}))
    fix = (f"delete the stale pool embedding cache {cache} and retry {stage}" if pool_from == "cache"
           else f"the {backend.name} backend's embedder changed between two calls; retry {stage}")
    raise HardStop(f"embedder mismatch: targets embedded with {a} but the pool with {b}; {fix}")


def floor_for(settings: dict) -> float:
    """The similarity floor an embedder was calibrated for (its settings, then the defaults table)."""
    given = settings.get("min_similarity")
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(given)
    table = defaults.MIN_SIMILARITY_BY_EMBEDDER
    for key in ("model", "embedder"):
        if settings.get(key) in table:
            return float(table[settings[key]])
    return float(defaults.MIN_SIMILARITY)


def comparable(t_emb: np.ndarray, p_emb: np.ndarray, settings: dict,
               reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Targets and pool ready for cosine: standardised by the pool (or by ``reference``, real images of
    the line: the SDG pool's clean pairs lack the nuisance that spreads production rows) when the
    embedder asks for it."""
    ref = p_emb if reference is None or not len(reference) else reference
    if settings.get("standardise") != "pool" or not len(ref):
        return t_emb, p_emb
    mean = ref.mean(0, dtype=np.float64).astype(np.float32)
    spread = ref.std(0, dtype=np.float64).astype(np.float32)
    spread[spread < 1e-6] = 1.0
    return (t_emb - mean) / spread, (p_emb - mean) / spread


def read_pool(pool_csv: Path, images_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the mining pool as its CSV says, the same rows resolved for the embedder: what is embedded and cached)."""
    raw = changenet_csv.read(pool_csv, what="mining pool CSV", allow_empty=True)
    return raw, resolved(raw, images_root, pool_csv.parent)


def mine(targets_path: str | Path, pool_csv: str | Path, images_root: str | Path, results_dir: str | Path,
         spec: str | Path, backend, top_k: int, min_similarity: float | None, history: str | Path, iteration: str,
         exclude: list[str] = (), cache_dir: str | Path | None = None, method: str = "auto",
         same_label: bool = defaults.MINE_SAME_LABEL) -> dict:
    """The mining stage: writes mined_rows.csv, knn_summary.csv, mining_summary.json; updates the ledger.

    ``min_similarity`` None = the embedder's calibrated floor (``floor_for``)."""
    if top_k < 1:
        raise UserError(f"--top-k-per-target must be >= 1, got {top_k}")
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise UserError(f"--min-similarity must be a cosine in [-1, 1], got {min_similarity}")
    if method not in METHODS:
        raise UserError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    if method == "ann":
        ann_library()  # refused before any embedding is computed
    out = Path(results_dir).resolve()
    root = Path(images_root).resolve()
    pool_path = Path(pool_csv)
    targets, tkeys, pinned, rank = targets_from_gaps(Path(targets_path), root)
    # Limiting samples (they pin the KPI threshold) get extra neighbours: the priority rule.
    k_per_target = top_k + priority.extra_neighbours(pinned, top_k)
    hist_path = Path(history)
    ledger = read_history(hist_path)
    earlier = {k for k, it in ledger.items() if comes_before(it, iteration)}
    summary = {"iteration": iteration, "targets": int(len(targets)), "top_k_per_target": top_k,
               "limiting_targets": int((k_per_target > top_k).sum()),
               "extra_neighbours_for_limiting": int((k_per_target - top_k).sum()),
               "min_similarity": min_similarity, "floor_source": "given" if min_similarity is not None else None,
               "same_label": bool(same_label), "pool_rows": 0, "excluded_heldout": 0, "method": None,
               "embedder": None, "pool_embeddings": None, "candidates": 0, "above_floor": 0, "mined_earlier": 0,
               "mined": 0, "mined_below_floor_for_limiting": 0, "mined_labels": {}}
    with atomic.atomic_dir(out) as tmp:
        mined = pd.DataFrame(columns=list(changenet_csv.REQUIRED) + EXTRA_COLUMNS)
        per_target = pd.DataFrame(columns=SUMMARY_COLUMNS)
        new_keys: set[str] = set()
        if len(targets):
            pool, resolved_pool = read_pool(pool_path, root)
            summary["pool_rows"] = int(len(pool))
            if pool.empty:
                raise HardStop(f"mining pool {pool_path} is empty but {len(targets)} weak samples were routed to "
                               f"mining; add labelled images to the pool or route them elsewhere, then retry mining")
            pool_keys = leakage.sample_keys(pool, root, pool_path)
            pool = resolved_pool  # what the embedder reads and mined rows say
            held: set[str] = set()
            for csv in exclude:
                held |= set(leakage.sample_keys(changenet_csv.read(csv, what="held-out CSV"), root, csv))
            heldout = pool_keys.isin(held).to_numpy()
            # Rows mined by earlier iterations leave the search too, so a recurring weak sample reaches its
            # next-nearest rows instead of finding only what it already brought in.
            mined_before = pool_keys.isin(earlier).to_numpy() & ~heldout
            usable = ~heldout & ~mined_before
            pool_keys = pool_keys.to_numpy()
            summary["excluded_heldout"] = int(heldout.sum())
            summary["mined_earlier"] = int(mined_before.sum())
            if heldout.all():
                raise HardStop(f"mining pool {pool_path} is empty once held-out samples are removed: all {len(pool)} "
                               f"rows are validation/KPI samples (--exclude); mine from a pool of other images")
            t_emb, t_set = embed_rows(backend, targets, root, Path(spec), tmp / "target_embeddings.parquet")
            cache = Path(cache_dir) if cache_dir else None
            p_emb, p_set, summary["pool_embeddings"] = pool_embeddings(backend, pool, pool_path, root, Path(spec),
                                                                       cache, tmp)
            require_same_embedder(t_emb, t_set, p_emb, p_set, summary["pool_embeddings"], cache, backend, "mining")
            summary["embedder"] = t_set
            if min_similarity is None:
                min_similarity = floor_for(t_set)
                summary.update(min_similarity=min_similarity, floor_source="embedder")
            t_emb, p_emb = comparable(t_emb, p_emb, t_set)
            t_emb = unit_rows(t_emb, inplace=True)
            p_emb = unit_rows(p_emb, inplace=True)
            pool_labels = pool["label"].to_numpy()
            groups = (pd.Series(targets["label"].to_numpy()).groupby(targets["label"].to_numpy()).indices.items()
                      if same_label else [(None, np.arange(len(targets)))])
            parts = []
            for label, g_rows in groups:
                allowed = usable if label is None else usable & (pool_labels == label)
                rows_p = np.flatnonzero(allowed)
                subset = None if len(rows_p) == len(p_emb) else rows_p  # a label's rows: gathered chunk by chunk
                # The limiting targets' extra neighbours run to ~1000 each when 2k targets share them: searched
                # apart, so the others' running top-k stays top_k long (bench/scale.py: the merges cost 10x the
                # matrix product otherwise). A target's neighbours do not depend on who is searched with it.
                limiting = k_per_target[g_rows] > top_k
                for t_rows in (g_rows[~limiting], g_rows[limiting]):
                    if not len(t_rows):
                        continue
                    if len(rows_p):
                        k_rows = k_per_target[t_rows]
                        sims_g, idx_g, summary["method"] = knn(t_emb[t_rows], p_emb, int(k_rows.max()), method,
                                                               unit=True, rows=subset)
                        idx_g = np.where(np.arange(idx_g.shape[1])[None, :] < k_rows[:, None], idx_g, -1)
                        found_g = idx_g >= 0
                        idx_g = np.where(found_g, rows_p[np.maximum(idx_g, 0)], -1)
                    else:  # every remaining row of this label was mined earlier (or there is none)
                        sims_g, idx_g = np.zeros((len(t_rows), 0), np.float32), np.zeros((len(t_rows), 0), np.int64)
                    parts.append((t_rows, sims_g, idx_g))
            k = max(p[2].shape[1] for p in parts)
            sims = np.zeros((len(targets), k), np.float32)
            idx = np.full((len(targets), k), -1, np.int64)
            for t_rows, sims_g, idx_g in parts:
                sims[t_rows, :sims_g.shape[1]], idx[t_rows, :idx_g.shape[1]] = sims_g, idx_g
            del p_emb
            pool_idx = np.arange(len(pool))
            n_t, k = idx.shape
            found = (idx >= 0).ravel()
            cand = pd.DataFrame({"t": np.repeat(np.arange(n_t), k)[found], "p": pool_idx[idx.ravel()[found]],
                                 "sim": np.clip(sims.ravel()[found], -1.0, 1.0)})
            cand["key"] = pool_keys[cand["p"].to_numpy()]
            cand["floor"] = cand["sim"] >= min_similarity - SIM_TOLERANCE
            # A limiting sample keeps its top_k nearest rows of its own label even below the floor: the
            # priority goes to the nearest real rows there are (the floor guards the others' neighbours).
            pos = np.tile(np.arange(k), n_t)[found]
            nearest = (rank[cand["t"].to_numpy()] > 0) & (pos < top_k) & bool(same_label)
            cand["kept"] = cand["floor"].to_numpy() | nearest
            keep = cand[cand["kept"]].sort_values(["sim", "t", "p"], ascending=[False, True, True], kind="stable")
            keep = keep.drop_duplicates("key", keep="first")
            g = cand.groupby("t")
            every = range(n_t)
            per_target = pd.DataFrame({
                "target": tkeys.to_numpy(),
                "label": targets["label"].to_numpy(),
                "k": k_per_target,
                "candidates": g.size().reindex(every, fill_value=0).to_numpy(),
                "above_floor": g["floor"].sum().reindex(every, fill_value=0).to_numpy(),
                "new": keep.groupby("t").size().reindex(every, fill_value=0).to_numpy(),
                "new_below_floor": keep[~keep["floor"]].groupby("t").size().reindex(every, fill_value=0).to_numpy(),
                "best_similarity": g["sim"].max().reindex(every).round(6).to_numpy(),
            })
            rows = pool.iloc[keep["p"].to_numpy()].reset_index(drop=True)
            rows["source"] = "mined"
            rows["similarity"] = keep["sim"].round(6).to_numpy()
            rows["target"] = tkeys.to_numpy()[keep["t"].to_numpy()]
            rows["iteration"] = iteration
            rows["limiting_rank"] = rank[keep["t"].to_numpy()]
            mined = rows
            summary.update(candidates=int(len(cand)), above_floor=int(cand["floor"].sum()), mined=int(len(mined)),
                           mined_below_floor_for_limiting=int((~keep["floor"]).sum()),
                           mined_labels={str(a): int(b) for a, b in mined["label"].value_counts().sort_index().items()})
            new_keys = set(keep["key"])
        changenet_csv.write(mined, tmp / "mined_rows.csv")
        changenet_csv.write(per_target, tmp / "knn_summary.csv")
        atomic.write_json(tmp / "mining_summary.json", summary)
    new_ledger = {k: it for k, it in ledger.items() if it != iteration}
    new_ledger.update({k: iteration for k in new_keys})
    atomic.write_json(hist_path, {"mined": dict(sorted(new_ledger.items()))})
    return summary
