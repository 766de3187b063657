"""The DEFT stages at line scale (bench/scale.py: a 100k-row KPI set, a 50k-sample SDG pool, 2k mining
targets x 1M pool rows x 768-d, 500k training rows, 20 iterations): what changed to get there, each
change pinned to the result it replaced, and its bound checked where a regression would bring the cost
back. Mining: the pool embedding cache is read in batches into one float32 matrix, rows are normalised a
block at a time, a label's rows are searched without copying them, limiting targets are searched apart.
SDG: the pool's samples are tabulated with column operations.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_workspace
import test_mining
from tao_aoi.deft import mining, sdg
from tao_aoi.errors import HardStop, UserError

ROOT = Path(__file__).resolve().parents[1]


def whole_table(parquet: Path) -> np.ndarray:
    """What read_embeddings returned before it streamed: the whole column, then one numpy copy."""
    col = pq.read_table(parquet, columns=["embedding"]).column("embedding").combine_chunks()
    dim = int(pa.compute.list_value_length(col).to_numpy()[0]) if len(col) else 0
    return np.array(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(col), dim)


def write(path: Path, column: pa.Array, row_group_size: int | None = None) -> Path:
    pq.write_table(pa.table({"embedding": column}), path, row_group_size=row_group_size)
    mining.settings_file(path).write_text(json.dumps({"embedder": "test"}))
    return path


def as_list(x: np.ndarray, kind: str) -> pa.Array:
    n, d = x.shape
    values = pa.array(x.reshape(-1))
    if kind == "fixed" and d:
        return pa.FixedSizeListArray.from_arrays(values, d)
    offsets = np.arange(n + 1) * d
    if kind == "large":
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


# ------------------------------------------------------------------ read_embeddings


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 70), st.integers(0, 9), st.sampled_from(["list", "large", "fixed"]),
       st.sampled_from([np.float32, np.float64]), st.sampled_from([None, 1, 7, 64]), st.sampled_from([1, 5, 16384]))
def test_streamed_read_equals_the_whole_table(tmp_path_factory, seed, n, dim, kind, dtype, row_group, batch):
    # batches and row groups of any size, crossing each other; float64 lists are cast as before
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, dim)) * 10 ** rng.uniform(-3, 3)).astype(dtype)
    path = write(tmp_path_factory.mktemp("e") / "e.parquet", as_list(x, kind), row_group)
    with mock.patch.object(mining, "EMBED_BATCH_ROWS", batch):
        emb, settings_ = mining.read_embeddings(path)
    ref = whole_table(path)
    assert emb.dtype == np.float32 and emb.flags.c_contiguous and emb.flags.writeable
    assert emb.shape == ref.shape == ((n, dim) if n else (0, 0))
    np.testing.assert_array_equal(emb, ref)
    assert settings_ == {"embedder": "test"}


def test_problems_are_counted_over_the_whole_file_in_their_order(tmp_path):
    x = np.ones((10, 3), np.float32)
    x[7, 1] = np.nan
    x[9, 0] = np.inf
    with mock.patch.object(mining, "EMBED_BATCH_ROWS", 4):  # the bad rows sit in later batches
        with pytest.raises(HardStop, match=r": 2 embeddings contain NaN or infinity"):
            mining.read_embeddings(write(tmp_path / "nan.parquet", as_list(x, "list")))
        ragged = pa.array([[1.0, 2.0]] * 5 + [[1.0]] + [[1.0, 2.0, 3.0, 4.0]] + [[1.0, 2.0]] * 3, pa.list_(pa.float32()))
        with pytest.raises(HardStop, match=r"different lengths \(1\.\.4\)"):
            mining.read_embeddings(write(tmp_path / "ragged.parquet", ragged))
        # a missing embedding is reported first, with every such row counted, even after a length change
        holes = pa.array([[1.0, 2.0]] * 5 + [None, [1.0]] + [[1.0, 2.0]] + [None, None], pa.list_(pa.float32()))
        with pytest.raises(HardStop, match=r": 3 rows have no embedding"):
            mining.read_embeddings(write(tmp_path / "holes.parquet", holes))


def test_unreadable_or_wrong_columns_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="has no readable 'embedding' column"):
        mining.read_embeddings(tmp_path / "absent.parquet")
    pq.write_table(pa.table({"vector": pa.array([[1.0]])}), tmp_path / "other.parquet")
    with pytest.raises(UserError, match="has no readable 'embedding' column"):
        mining.read_embeddings(tmp_path / "other.parquet")
    pq.write_table(pa.table({"embedding": pa.array([1.0, 2.0])}), tmp_path / "flat.parquet")
    with pytest.raises(UserError, match="column 'embedding' is double, not a list of numbers"):
        mining.read_embeddings(tmp_path / "flat.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(UserError, match="has no readable 'embedding' column"):
        mining.read_embeddings(tmp_path / "junk.parquet")
    path = write(tmp_path / "ok.parquet", as_list(np.ones((2, 2), np.float32), "list"))
    mining.settings_file(path).unlink()
    with pytest.raises(UserError, match="has no readable ok.parquet.settings.json"):
        mining.read_embeddings(path)


PEAK_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from tao_aoi.deft import mining
import pyarrow.parquet
def status_mb(key):  # VmHWM: this process's own peak (ru_maxrss would include the parent's at exec)
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":")) / 1024
before = status_mb("VmRSS")
emb, _ = mining.read_embeddings(Path(sys.argv[1]))
print(status_mb("VmHWM") - before, emb.nbytes / 2**20)
"""


def test_reading_a_large_single_row_group_costs_the_matrix_not_two_copies(tmp_path):
    # One row group, as pandas.to_parquet writes a 1M-row pool: reading the whole table took ~2.5x the
    # matrix (Arrow's buffers, then numpy's copy); streamed, it is the matrix plus a few batches.
    x = np.random.default_rng(0).standard_normal((200_000, 256), dtype=np.float32)  # 195 MB
    path = write(tmp_path / "pool.parquet", as_list(x, "list"))
    del x
    proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), str(ROOT / "scripts")],
                          capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    grew, matrix = map(float, proc.stdout.split())
    assert grew < 1.5 * matrix, (grew, matrix)


# ------------------------------------------------------------------ unit_rows, knn over a subset


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 50), st.integers(1, 9), st.sampled_from([1, 3, 8192]))
def test_unit_rows_in_blocks_equals_the_whole_array(seed, n, dim, block):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32) * rng.uniform(0, 100, (n, 1)).astype(np.float32)
    x[rng.random(n) < 0.2] = 0  # zero rows stay zero
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    with mock.patch.object(mining, "NORM_ROWS", block):
        out = mining.unit_rows(x)
        same = mining.unit_rows(x.copy(), inplace=True)
    np.testing.assert_array_equal(out, x / norms)
    np.testing.assert_array_equal(same, x / norms)


PALETTE = [np.array(v, np.float32) for v in ([1, 0], [0, 1], [1, 1], [-1, 0], [1, -1], [3, 1])]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(range(len(PALETTE))), min_size=1, max_size=8),
       st.lists(st.sampled_from(range(len(PALETTE))), min_size=1, max_size=30), st.data(), st.integers(1, 8),
       st.sampled_from([16, 400, 1 << 20]), st.booleans())
def test_a_subset_searched_in_place_equals_the_copied_subset(targets, pool, data, k, block_bytes, unit):
    # ties everywhere (the palette repeats): the lower position in the subset must still win
    t = np.array([PALETTE[i] for i in targets], np.float32)
    p = np.array([PALETTE[i] * (1 + j % 3) for j, i in enumerate(pool)], np.float32)
    if unit:
        t, p = mining.unit_rows(t), mining.unit_rows(p)
    rows = np.flatnonzero(data.draw(st.lists(st.booleans(), min_size=len(p), max_size=len(p))))
    with mock.patch.object(mining, "BLOCK_BYTES", block_bytes):
        ref = mining.knn_exact(t, np.ascontiguousarray(p[rows]), k, unit=unit)
        got = mining.knn_exact(t, p, k, unit=unit, rows=rows)
        via = mining.knn(t, p, k, "exact", unit=unit, rows=rows)
    for a, b in ((ref, got), (ref, via[:2])):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_ann_over_a_subset_returns_positions_in_the_subset():
    rng = np.random.default_rng(3)
    pool = mining.unit_rows(rng.standard_normal((300, 16)))
    rows = np.arange(1, 300, 2)
    s, i, method = mining.knn(pool[rows[:5]], pool, 1, "ann", unit=True, rows=rows)
    assert method == "faiss-hnsw" and i[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n_targets, k", [(50, 5), (1, 1000)])
def test_a_subset_search_never_copies_the_subset(n_targets, k):
    # a few targets with many neighbours (the limiting ones) make long pool chunks: the gathered rows count
    rng = np.random.default_rng(1)
    pool = mining.unit_rows(rng.standard_normal((40_000, 64)))  # 10 MB
    rows = np.arange(0, len(pool), 2)                          # the subset: 5 MB
    targets = pool[:n_targets]
    with mock.patch.object(mining, "BLOCK_BYTES", 1 << 20):
        tracemalloc.start()
        mining.knn_exact(targets, pool, k, unit=True, rows=rows)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 0.25 * pool[rows].nbytes, peak


# ------------------------------------------------------------------ the stage: limiting targets searched apart

@pytest.mark.parametrize("any_label", [True, False])
def test_limiting_targets_are_searched_apart_with_the_same_result(tmp_path, capsys, monkeypatch, any_label):
    # A limiting target's extra neighbours (~1000 each when 2k targets share them) would otherwise lengthen
    # every target's running top-k. T0 pins the KPI (k 1 + 2 extra), T1 keeps k = 1: two searches, and the
    # mined rows are those of test_mining's test_a_limiting_target_gets_extra_neighbours.
    ws = mini_workspace.build(tmp_path / "ws")  # test_mining's workspace: targets and pool at chosen angles
    path = test_mining.write_targets(ws, test_mining.TARGETS)
    test_mining.write_pool(ws, test_mining.POOL)
    gaps = pd.read_parquet(path)
    t0 = (gaps["object_name"] == "T0").to_numpy()
    gaps["limiting_rank"], gaps["pinned_share"] = np.where(t0, 1, 0), np.where(t0, 5.0, 0.0)
    gaps.to_parquet(path, index=False)
    calls = []
    knn = mining.knn

    def spy(targets, pool, k, method="auto", unit=False, rows=None):
        calls.append((len(targets), k))
        return knn(targets, pool, k, method, unit, rows)

    monkeypatch.setattr(mining, "knn", spy)
    code, s, err, out = test_mining.run_mine(ws, capsys, monkeypatch, k=1, any_label=any_label)
    assert code == 0, err
    assert sorted(calls) == [(1, 1), (1, 3)]
    assert sorted(test_mining.mined_objects(out)) == ["m1", "m2", "s1"]


# ------------------------------------------------------------------ SDG: the pool's samples


def samples_by_loop(files: pd.DataFrame, lights: list[str]) -> pd.DataFrame:
    """sdg._samples as it was (a loop over the groups), the reference for the column version."""
    import hashlib

    files = files.copy()
    files["sample"] = files["template"] + "+" + files["label"] + "_" + files["idx"]
    multi = len(lights) > 1
    rows = []
    for (sample, label), grp in files.groupby(["sample", "label"], sort=True):
        by_light = {(r.light or ""): r for r in grp.itertuples()}
        per_light, problems = {}, []
        for light in lights:
            r = by_light.get(light) or (by_light.get("") if not multi else None)
            if r is None:
                problems.append(f"no {light} image")
            elif not r.paired:
                problems.append(f"{r.name} has no OK golden in {sdg.OK_DIR}/")
            else:
                per_light[light] = (r.ng_file, r.ok_file)
        rows.append({"sample": sample, "label": label, "files": per_light, "problems": problems,
                     "complete": not problems, "order": hashlib.sha1(sample.encode()).hexdigest()})
    return pd.DataFrame(rows, columns=["sample", "label", "files", "problems", "complete", "order"])


pool_files = st.lists(st.tuples(st.sampled_from(["T1", "T2"]), st.sampled_from(["MISSING", "BRIDGE", "PASS"]),
                                st.sampled_from(["0", "1", "12"]), st.sampled_from(["", "A", "B", "C"]),
                                st.sampled_from([".png", ".jpg"]), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(pool_files, st.sampled_from([["A"], ["A", "B"], ["B", "A", "C"], ["C"]]))
def test_pool_samples_by_columns_equal_the_loop(entries, lights):
    # repeated lights (two extensions), a file without a light (serves one-light specs only), unpaired files
    rows = {}
    for template, label, idx, light, ext, paired in entries:
        name = f"{template}+{label}_{idx}{'_' + light if light else ''}{ext}"
        rows[name] = {"name": name, "template": template, "label": label, "idx": idx, "light": light,
                      "ng_file": f"/ng/{name}", "ok_file": f"/ok/{name}", "paired": paired}
    files = pd.DataFrame([rows[k] for k in sorted(rows)])  # scan lists the folder sorted
    got, want = sdg._samples(files, lights), samples_by_loop(files, lights)
    assert got.columns.tolist() == want.columns.tolist()
    assert got.to_dict("records") == want.to_dict("records")
