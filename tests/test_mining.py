"""mine_pool: exact/ANN k-NN, similarity floor, ledger across iterations, held-out exclusion, pool
embedding cache, hard stops and atomic outputs.

The stage tests run ``mine_pool.main`` in-process with a test embedder (per light, mean input pixel
minus mean golden pixel: a 2-D vector whose direction the test chooses), so every similarity is known.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_workspace
from mean_diff_embedder import MeanDiffBackend, cos_deg, put
from rca_data import call
from tao_aoi import defaults
from tao_aoi.commands import mine_pool
from tao_aoi.data import changenet_csv
from tao_aoi.deft import mining
from tao_aoi.model import features

TARGETS = {"T0": ("MISSING", 0), "T1": ("SHIFT", 90)}
POOL = {"m1": ("MISSING", 3), "m2": ("MISSING", 8), "m3": ("MISSING", 15), "p1": ("PASS", 45),
        "s1": ("SHIFT", 88), "s2": ("SHIFT", 80), "far": ("PASS", 200)}
FLOOR = 0.98  # between cos 8 deg (m2) and cos 15 deg (m3)


def write_targets(ws: Path, targets: dict, path: Path | None = None) -> Path:
    rows = []
    for obj, (label, deg) in targets.items():
        put(ws / "images", "weak/b0", obj, deg)
        for light in mini_workspace.LIGHTS:  # gap analysis writes one row per light
            rows.append({"filepath": f"weak/b0/{obj}_{light}.png", "input_path": "weak/b0",
                         "golden_path": "weak/b0_golden", "object_name": obj, "label": label.lower(),
                         "light": light, "siamese_score": 0.5, "weakness": 0.1})
    path = path or ws / "run" / "iter1" / "routing" / "mining_gaps.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["filepath", "input_path", "golden_path", "object_name", "label", "light",
                                "siamese_score", "weakness"]).to_parquet(path, index=False)
    return path


def write_pool(ws: Path, pool: dict, prefix: str = "") -> Path:
    for obj, (_, deg) in pool.items():
        put(ws / "images", "pool/b0", obj, deg)
    path = ws / "augmentation" / "mining_pool" / "mining_pool.csv"
    pd.DataFrame([{"input_path": f"{prefix}pool/b0", "golden_path": f"{prefix}pool/b0_golden", "label": label,
                   "object_name": obj, "boardname": "B0"} for obj, (label, _) in pool.items()],
                 columns=["input_path", "golden_path", "label", "object_name", "boardname"]).to_csv(path, index=False)
    return path


@pytest.fixture
def ws(tmp_path) -> Path:
    ws = mini_workspace.build(tmp_path / "ws")
    write_targets(ws, TARGETS)
    write_pool(ws, POOL)
    return ws


def run_mine(ws, capsys, monkeypatch, backend=None, *, iteration="iter1", run="run", k=5, floor=FLOOR,
             extra=(), targets=None, any_label=True):
    backend = backend or MeanDiffBackend()
    monkeypatch.setattr(mine_pool, "get_backend", lambda name, **kw: backend)
    R = ws / run
    argv = ["--targets", targets or ws / "run/iter1/routing/mining_gaps.parquet",
            "--mining-pool", ws / "augmentation/mining_pool/mining_pool.csv", "--images-root", ws / "images",
            "--results-dir", R / iteration / "mining", "--train-spec", ws / "specs/baseline_spec.yaml",
            "--backend", "local", "--top-k-per-target", str(k), "--min-similarity", f"{floor:g}",
            "--history", R / "mining_history.json", "--iteration", iteration, "--json",
            *(["--any-label"] if any_label else []), *extra]
    code, out, err = call(mine_pool.main, argv, capsys)
    return code, (json.loads(out) if code == 0 else None), err, R / iteration / "mining"


def mined_objects(out: Path) -> list[str]:
    return list(pd.read_csv(out / "mined_rows.csv", dtype=str)["object_name"])


def outputs(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("mined_rows.csv", "knn_summary.csv", "mining_summary.json")}


# ------------------------------------------------------------------ search


# Axis vectors and (+-1, +-1, +-1, +-1) (unit after an exact division by 2) plus the zero vector: every
# cosine between them is a small multiple of 1/4, exact in float32 whatever the summation order.
PALETTE = np.vstack([np.eye(4), -np.eye(4), np.array(list(itertools.product((-1, 1), repeat=4))), np.zeros((1, 4))])


def _cosines(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    def unit(x):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n == 0, 1, n)

    return unit(np.asarray(t, np.float64)) @ unit(np.asarray(p, np.float64)).T


def _reference(t: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float64: sort each row by (-similarity, pool index)."""
    s = _cosines(t, p)
    order = np.lexsort((np.broadcast_to(np.arange(len(p)), s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), order


vectors = st.lists(st.tuples(st.integers(0, len(PALETTE) - 1), st.sampled_from([0.5, 1.0, 2.0, 4.0])),
                   min_size=1, max_size=14)


@settings(max_examples=150, deadline=None)
@given(vectors, vectors, st.integers(1, 20), st.sampled_from([16, 400, 1 << 20]), st.sampled_from([1, 3, 2048]))
def test_exact_knn_equals_brute_force_with_ties(targets, pool, k, block_bytes, target_block):
    # Duplicates and symmetric directions tie bit for bit: the lower pool index must win, also when the
    # tie straddles the k-th place or a pool chunk; k may exceed the pool; tiny blocks force several
    # target blocks and pool chunks.
    t = np.array([PALETTE[i] * s for i, s in targets], np.float32)
    p = np.array([PALETTE[i] * s for i, s in pool], np.float32)
    with mock.patch.object(mining, "BLOCK_BYTES", block_bytes), mock.patch.object(mining, "TARGET_BLOCK", target_block):
        sims, idx = mining.knn_exact(t, p, k)
    ref_s, ref_i = _reference(t.astype(np.float64), p.astype(np.float64), k)
    assert idx.shape == (len(t), min(k, len(p)))
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(sims, ref_s.astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 7), st.integers(1, 40), st.integers(1, 8), st.integers(1, 50),
       st.sampled_from([16, 400, 1 << 20]))
def test_exact_knn_on_random_vectors_is_a_true_top_k(seed, n_t, n_p, dim, k, block_bytes):
    rng = np.random.default_rng(seed)
    t, p = rng.standard_normal((n_t, dim)), rng.standard_normal((n_p, dim)) * rng.uniform(0.1, 10, (n_p, 1))
    with mock.patch.object(mining, "BLOCK_BYTES", block_bytes):
        sims, idx = mining.knn_exact(t, p, k)
    ref_s, _ = _reference(t, p, k)
    assert idx.shape == (n_t, min(k, n_p))
    assert all(len(set(row)) == len(row) for row in idx)
    assert (np.diff(sims, axis=1) <= 0).all()
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)  # the k best similarities, in order
    np.testing.assert_allclose(sims, np.take_along_axis(_cosines(t, p), idx, axis=1), atol=1e-5)  # of those rows


def test_ann_agrees_with_exact_on_well_separated_clusters():
    rng = np.random.default_rng(7)
    centres = mining.unit_rows(rng.standard_normal((40, 32)))
    pool = np.repeat(centres, 50, axis=0) + 0.02 * rng.standard_normal((2000, 32))
    targets = centres[:25] + 0.02 * rng.standard_normal((25, 32))
    es, ei = mining.knn_exact(targets, pool, 5)
    as_, ai = mining.knn_ann(targets, pool, 5)
    assert (ai >= 0).all()
    assert all(set(a) == set(e) for a, e in zip(ai, ei))  # recall 1.0 on an easy case
    np.testing.assert_allclose(as_, es, atol=1e-5)
    # deterministic: a rebuilt index returns the same neighbours (single-threaded insertion)
    np.testing.assert_array_equal(mining.knn_ann(targets, pool, 5)[1], ai)
    s, i, method = mining.knn(targets, pool[:3], 5, "ann")
    assert method == "faiss-hnsw" and i.shape == (25, 3) and (i >= 0).all()


def test_auto_switches_to_ann_at_the_threshold(monkeypatch):
    rng = np.random.default_rng(0)
    pool, targets = rng.standard_normal((50, 4)), rng.standard_normal((3, 4))
    monkeypatch.setattr(mining, "ANN_MIN_POOL", 51)
    assert mining.knn(targets, pool, 2)[2] == "exact"
    monkeypatch.setattr(mining, "ANN_MIN_POOL", 50)
    assert mining.knn(targets, pool, 2)[2] == "faiss-hnsw"


# ------------------------------------------------------------------ the stage


def test_floor_and_top_k_select_the_expected_rows(ws, capsys, monkeypatch):
    code, s, err, out = run_mine(ws, capsys, monkeypatch)
    assert code == 0, err
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1", "s2"]  # m3 (15 deg) is below the floor
    rows = pd.read_csv(out / "mined_rows.csv", dtype=str)
    assert list(rows.columns[:4]) == list(changenet_csv.REQUIRED) and "boardname" in rows.columns
    assert set(rows["source"]) == {"mined"} and set(rows["iteration"]) == {"iter1"}
    assert dict(zip(rows["object_name"], rows["target"])) == {"m1": "weak/b0/T0", "m2": "weak/b0/T0",
                                                              "s1": "weak/b0/T1", "s2": "weak/b0/T1"}
    assert (rows["similarity"].astype(float) >= FLOOR).all()
    knn = pd.read_csv(out / "knn_summary.csv").set_index("target")
    assert list(knn.columns) == mining.SUMMARY_COLUMNS[1:]
    assert knn.loc["weak/b0/T0", ["candidates", "above_floor", "new"]].tolist() == [5, 2, 2]
    assert knn.loc["weak/b0/T0", "label"] == "MISSING"
    assert knn.loc["weak/b0/T1", "best_similarity"] == pytest.approx(cos_deg(2), abs=2e-3)
    assert s["mined"] == 4 and s["above_floor"] == 4 and s["method"] == "exact"
    assert s["mined_labels"] == {"MISSING": 2, "SHIFT": 2}
    # a lower floor admits m3; a floor of 1.0 still admits an identical image
    code, s, err, out = run_mine(ws, capsys, monkeypatch, floor=cos_deg(20))
    assert "m3" in mined_objects(out)
    write_targets(ws, {"T0": ("MISSING", 6)})  # (90, 9): its float32 self-cosine is 0.9999999
    write_pool(ws, {**POOL, "twin": ("MISSING", 6)})
    code, s, err, out = run_mine(ws, capsys, monkeypatch, floor=1.0)
    assert code == 0, err
    assert mined_objects(out) == ["twin"]


def test_same_label_search_sees_only_the_targets_label(ws, capsys, monkeypatch):
    # p1 (PASS, 45 deg) is T0's and T1's 5th candidate across labels; restricted, each target sees its own
    # family only, so a closer row of another label never takes a slot of the top-k
    write_pool(ws, {**POOL, "near": ("PASS", 1)})
    code, s, err, out = run_mine(ws, capsys, monkeypatch, k=2, any_label=False)
    assert code == 0, err
    assert s["same_label"] is True
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1", "s2"]
    knn = pd.read_csv(out / "knn_summary.csv").set_index("target")
    assert knn["candidates"].tolist() == [2, 2]
    code, s, err, out = run_mine(ws, capsys, monkeypatch, k=2)
    assert "near" in mined_objects(out) and "m2" not in mined_objects(out)  # across labels the PASS twin wins


def test_the_floor_defaults_to_the_embedders_calibration(ws, capsys, monkeypatch):
    assert mining.floor_for({"embedder": "tao-data-services", "model": "SigLIP"}) == 0.9
    assert mining.floor_for({"embedder": features.EMBEDDER}) == defaults.MIN_SIMILARITY_BY_EMBEDDER[features.EMBEDDER]
    assert mining.floor_for({"embedder": "x", "min_similarity": 0.42}) == 0.42
    assert mining.floor_for({"embedder": "unknown"}) == defaults.MIN_SIMILARITY
    backend = MeanDiffBackend()
    monkeypatch.setattr(mine_pool, "get_backend", lambda name, **kw: backend)
    argv = ["--targets", ws / "run/iter1/routing/mining_gaps.parquet",
            "--mining-pool", ws / "augmentation/mining_pool/mining_pool.csv", "--images-root", ws / "images",
            "--results-dir", ws / "run/iter1/mining", "--train-spec", ws / "specs/baseline_spec.yaml",
            "--history", ws / "run/mining_history.json", "--iteration", "iter1", "--json"]
    code, out, err = call(mine_pool.main, argv, capsys)
    s = json.loads(out)
    assert code == 0 and s["floor_source"] == "embedder" and s["min_similarity"] == defaults.MIN_SIMILARITY


def test_pool_standardisation_is_what_the_settings_ask_for():
    rng = np.random.default_rng(0)
    pool = rng.normal(5.0, [1.0, 100.0], (200, 2)).astype(np.float32)
    t = pool[:3] + 1
    same = mining.comparable(t, pool, {"embedder": "x"})
    assert same[0] is t and same[1] is pool
    ts, ps = mining.comparable(t, pool, {"standardise": "pool"})
    np.testing.assert_allclose(ps.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(ps.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(ts - ps[:3], (1 / pool.std(0, dtype=np.float64))[None].repeat(3, 0), rtol=1e-4)


def test_a_limiting_target_gets_extra_neighbours(ws, capsys, monkeypatch):
    # T0 pins the KPI threshold (gap analysis: limiting_rank 1, pinned_share 5): routing's rule gives the
    # limiting samples LIMITING_SHARE of all neighbour slots (here 2 extra of 4), T1 keeps its top_k = 1.
    path = ws / "run/iter1/routing/mining_gaps.parquet"
    gaps = pd.read_parquet(path)
    t0 = (gaps["object_name"] == "T0").to_numpy()
    gaps["limiting_rank"], gaps["pinned_share"] = np.where(t0, 1, 0), np.where(t0, 5.0, 0.0)
    gaps.to_parquet(path, index=False)
    code, s, err, out = run_mine(ws, capsys, monkeypatch, k=1)
    assert code == 0, err
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1"]  # m3 is still below the floor
    knn = pd.read_csv(out / "knn_summary.csv").set_index("target")
    assert knn.loc["weak/b0/T0", "k"] == 3 and knn.loc["weak/b0/T1", "k"] == 1
    assert (s["limiting_targets"], s["extra_neighbours_for_limiting"]) == (1, 2)


def test_a_limiting_target_keeps_its_nearest_rows_of_its_label_even_below_the_floor(ws, capsys, monkeypatch):
    # at a floor of 0.999 no MISSING row clears it for T0 (m1 is 3 degrees off: 0.9986); T0 pins the KPI, so
    # it keeps its top_k nearest MISSING rows anyway; T1 (not limiting) keeps only what clears the floor
    path = ws / "run/iter1/routing/mining_gaps.parquet"
    gaps = pd.read_parquet(path)
    t0 = (gaps["object_name"] == "T0").to_numpy()
    gaps["limiting_rank"], gaps["pinned_share"] = np.where(t0, 1, 0), np.where(t0, 5.0, 0.0)
    gaps.to_parquet(path, index=False)
    code, s, err, out = run_mine(ws, capsys, monkeypatch, k=1, floor=0.999, any_label=False)
    assert code == 0, err
    mined = pd.read_csv(out / "mined_rows.csv", dtype=str).set_index("object_name")
    assert sorted(mined.index) == ["m1", "s1"] and mined.loc["m1", "limiting_rank"] == "1"
    knn = pd.read_csv(out / "knn_summary.csv").set_index("target")
    assert knn.loc["weak/b0/T0", "above_floor"] == 0 and knn.loc["weak/b0/T0", "new_below_floor"] == 1
    assert knn.loc["weak/b0/T1", "new_below_floor"] == 0 and s["mined_below_floor_for_limiting"] == 1
    # searching every label, the floor holds for every target: other labels' rows are not the sample's kind
    code, s, err, out = run_mine(ws, capsys, monkeypatch, k=1, floor=0.999, any_label=True, run="any")
    assert code == 0 and s["mined_below_floor_for_limiting"] == 0 and "m1" not in mined_objects(out)


def test_a_pool_row_near_two_targets_is_mined_once_for_the_closer(ws, capsys, monkeypatch):
    write_targets(ws, {"T0": ("MISSING", 0), "T1": ("MISSING", 10)})
    write_pool(ws, {"a": ("MISSING", 4), "b": ("MISSING", 9)})
    code, s, err, out = run_mine(ws, capsys, monkeypatch)
    assert code == 0, err
    rows = pd.read_csv(out / "mined_rows.csv", dtype=str)
    assert dict(zip(rows["object_name"], rows["target"])) == {"a": "weak/b0/T0", "b": "weak/b0/T1"}
    assert s["candidates"] == 4 and s["mined"] == 2


def test_ann_method_mines_the_same_rows(ws, capsys, monkeypatch):
    code, s, err, out = run_mine(ws, capsys, monkeypatch, extra=["--method", "ann"])
    assert code == 0, err
    assert s["method"] == "faiss-hnsw"
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1", "s2"]


def test_ann_without_faiss_is_refused_up_front_naming_the_extra(ws, capsys, monkeypatch):
    """faiss is the optional 'ann' extra: asking for ANN without it is one line, exit 2, before any embedding."""
    import sys

    class NoEmbedding(MeanDiffBackend):
        def submit_embed(self, job):
            raise AssertionError("embedded before refusing --method ann")

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError, as when it is not installed
    code, s, err, out = run_mine(ws, capsys, monkeypatch, NoEmbedding(), extra=["--method", "ann"])
    assert code == 2 and not out.exists()
    line = err.strip()
    assert "\n" not in line and "--method ann needs faiss-cpu, the optional 'ann' extra" in line
    assert "setup_env.py --extra ann" in line and "--method exact" in line
    assert run_mine(ws, capsys, monkeypatch, extra=["--method", "exact"])[0] == 0  # the default search needs none


def test_nothing_is_mined_twice_and_a_rerun_is_identical(ws, capsys, monkeypatch):
    code, s1, err, out1 = run_mine(ws, capsys, monkeypatch, k=1)
    assert code == 0, err
    assert sorted(mined_objects(out1)) == ["m1", "s1"]
    first = outputs(out1)
    ledger1 = (ws / "run/mining_history.json").read_bytes()
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, k=1)  # retry of the same iteration
    assert code == 0, err
    assert outputs(out1) == first and (ws / "run/mining_history.json").read_bytes() == ledger1

    # k=1 again: m1, s1 (mined by iter1) leave the search, so each target reaches its next-nearest row
    code, s2, err, out2 = run_mine(ws, capsys, monkeypatch, iteration="iter2", k=1)
    assert code == 0, err
    assert sorted(mined_objects(out2)) == ["m2", "s2"]
    assert s2["mined_earlier"] == 2
    knn = pd.read_csv(out2 / "knn_summary.csv").set_index("target")
    assert "mined_earlier" not in knn.columns and knn["new"].tolist() == [1, 1]
    ledger = json.loads((ws / "run/mining_history.json").read_text())["mined"]
    assert ledger == {"pool/b0/m1": "iter1", "pool/b0/s1": "iter1", "pool/b0/m2": "iter2", "pool/b0/s2": "iter2"}

    code, _, err, _ = run_mine(ws, capsys, monkeypatch, k=1)  # iter1 again, after iter2: still the same rows
    assert code == 0, err
    assert outputs(out1) == first


def test_moving_the_results_folder_or_respelling_the_pool_changes_nothing(ws, capsys, monkeypatch):
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, k=1)
    assert code == 0, err
    shutil.copytree(ws / "run", ws / "copy")
    code, _, err, ref = run_mine(ws, capsys, monkeypatch, iteration="iter2", k=2)  # not moved
    assert code == 0, err

    shutil.move(ws / "copy", ws.parent / "elsewhere")
    moved_ws = ws.parent / "elsewhere"
    write_pool(ws, POOL, prefix="./images/")  # workspace-relative spelling of the same samples
    monkeypatch.setattr(mine_pool, "get_backend", lambda name, **kw: MeanDiffBackend())
    argv = ["--targets", ws / "run/iter1/routing/mining_gaps.parquet",
            "--mining-pool", ws / "augmentation/mining_pool/mining_pool.csv", "--images-root", ws / "images",
            "--results-dir", moved_ws / "iter2/mining", "--train-spec", ws / "specs/baseline_spec.yaml",
            "--top-k-per-target", "2", "--min-similarity", f"{FLOOR:g}",
            "--history", moved_ws / "mining_history.json", "--iteration", "iter2"]
    code, _, err = call(mine_pool.main, argv, capsys)
    assert code == 0, err
    assert outputs(moved_ws / "iter2/mining")["mined_rows.csv"] == outputs(ref)["mined_rows.csv"]
    rows = pd.read_csv(moved_ws / "iter2/mining/mined_rows.csv", dtype=str)
    assert set(rows["input_path"]) == {"pool/b0"} and set(rows["golden_path"]) == {"pool/b0_golden"}
    ledger = json.loads((moved_ws / "mining_history.json").read_text())["mined"]
    assert all(not k.startswith("/") and str(ws) not in k for k in ledger)


def test_held_out_samples_are_never_mined(ws, capsys, monkeypatch):
    put(ws / "images", "val/board0", "C0@1", 1)  # a validation sample, closest of all to T0
    pool = pd.read_csv(ws / "augmentation/mining_pool/mining_pool.csv", dtype=str)
    held = {"input_path": "./val//board0/", "golden_path": "val/board0_golden", "label": "MISSING",
            "object_name": "C0@1", "boardname": "B0"}
    pd.concat([pool, pd.DataFrame([held])]).to_csv(ws / "augmentation/mining_pool/mining_pool.csv", index=False)
    code, s, err, out = run_mine(ws, capsys, monkeypatch)
    assert code == 0, err
    assert "C0@1" in mined_objects(out) and s["excluded_heldout"] == 0
    code, s, err, out = run_mine(ws, capsys, monkeypatch, extra=[
        "--exclude", ws / "train/base/validation_set.csv", "--exclude", ws / "kpi/testing_set.csv"])
    assert code == 0, err
    assert "C0@1" not in mined_objects(out) and s["excluded_heldout"] == 1
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1", "s2"]


def test_empty_pool_with_targets_stops(ws, capsys, monkeypatch):
    (ws / "augmentation/mining_pool/mining_pool.csv").write_text("input_path,golden_path,label,object_name\n")
    code, _, err, out = run_mine(ws, capsys, monkeypatch)
    assert code == 2 and "empty" in err and "mining_pool.csv" in err and "held-out" not in err
    assert err.count("\n") == 1 and not out.exists()


def test_a_pool_of_held_out_samples_only_stops_as_empty(ws, capsys, monkeypatch):
    shutil.copy(ws / "kpi/testing_set.csv", ws / "augmentation/mining_pool/mining_pool.csv")
    code, _, err, out = run_mine(ws, capsys, monkeypatch, extra=["--exclude", ws / "kpi/testing_set.csv"])
    assert code == 2 and "empty" in err and "held-out" in err and not out.exists()


def test_embedder_mismatch_stops_and_keeps_previous_results(ws, capsys, monkeypatch):
    cache = ["--embedding-cache", ws / "run/mining_cache"]
    code, _, err, out = run_mine(ws, capsys, monkeypatch, extra=cache)
    assert code == 0, err
    before = outputs(out)
    ledger = (ws / "run/mining_history.json").read_bytes()
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, MeanDiffBackend(version="2"), extra=cache)
    assert code == 2 and "embedder mismatch" in err and "mining_cache" in err
    assert "'version': '2'" in err and "'version': '1'" in err and "lights" not in err  # only what differs
    assert outputs(out) == before and (ws / "run/mining_history.json").read_bytes() == ledger
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_missing_targets_file_or_golden_path_column(ws, capsys, monkeypatch):
    missing = ws / "run/iter1/routing/nope.parquet"
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, targets=missing)
    assert code == 2 and str(missing) in err
    gaps = pd.read_parquet(ws / "run/iter1/routing/mining_gaps.parquet").drop(columns=["golden_path"])
    bad = ws / "run/iter1/routing/no_golden.parquet"
    gaps.to_parquet(bad)
    code, _, err, out = run_mine(ws, capsys, monkeypatch, targets=bad)
    assert code == 2 and "golden_path" in err and str(bad) in err and not out.exists()
    bad.write_text("not a parquet file")
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, targets=bad)
    assert code == 2 and str(bad) in err


def test_no_targets_writes_empty_outputs_and_clears_this_iteration(ws, capsys, monkeypatch):
    empty = ws / "run/iter1/routing/empty.parquet"
    pd.read_parquet(ws / "run/iter1/routing/mining_gaps.parquet").iloc[:0].to_parquet(empty)
    (ws / "run").mkdir(exist_ok=True)
    (ws / "run/mining_history.json").write_text(json.dumps({"mined": {"pool/b0/m1": "iter0",
                                                                       "pool/b0/m2": "iter1"}}))
    backend = MeanDiffBackend()
    code, s, err, out = run_mine(ws, capsys, monkeypatch, backend, targets=empty)
    assert code == 0, err
    assert backend.calls == []
    assert pd.read_csv(out / "mined_rows.csv").empty
    assert list(pd.read_csv(out / "knn_summary.csv").columns) == mining.SUMMARY_COLUMNS
    assert s["targets"] == 0 and s["mined"] == 0
    assert json.loads((ws / "run/mining_history.json").read_text()) == {"mined": {"pool/b0/m1": "iter0"}}


def test_pool_embedding_cache_reused_until_the_pool_changes(ws, capsys, monkeypatch):
    cache = ["--embedding-cache", ws / "run/mining_cache"]
    backend = MeanDiffBackend()
    code, s, err, _ = run_mine(ws, capsys, monkeypatch, backend, extra=cache)
    assert code == 0 and s["pool_embeddings"] == "embedded", err
    assert backend.calls == ["target_embeddings.rows.csv", "pool_embeddings.rows.csv"]
    assert not list((ws / "run/mining_cache").glob("*.rows.csv"))  # the job's input is not left behind

    backend.calls.clear()
    code, s, err, out = run_mine(ws, capsys, monkeypatch, backend, iteration="iter2", extra=cache)
    assert code == 0 and s["pool_embeddings"] == "cache", err
    assert backend.calls == ["target_embeddings.rows.csv"]

    # same size, same mtime, different content (m1 and m3 swap lines): refreshed, or m3 would take m1's vector
    pool_csv = ws / "augmentation/mining_pool/mining_pool.csv"
    st_before = pool_csv.stat()
    lines = pool_csv.read_text().splitlines(keepends=True)
    assert ",m1," in lines[1] and ",m3," in lines[3]
    lines[1], lines[3] = lines[3], lines[1]
    pool_csv.write_text("".join(lines))
    os.utime(pool_csv, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    assert pool_csv.stat().st_size == st_before.st_size
    backend.calls.clear()
    code, s, err, out = run_mine(ws, capsys, monkeypatch, backend, run="run3", extra=cache)
    assert code == 0 and s["pool_embeddings"] == "embedded", err
    assert backend.calls == ["target_embeddings.rows.csv", "pool_embeddings.rows.csv"]
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1", "s2"]

    # a re-embedding that dies after overwriting the cache, then the pool restored: the cache is not
    # trusted (its marker went first), or m1 and m3 would swap vectors again
    lines[1], lines[3] = lines[3], lines[1]
    pool_csv.write_text("".join(lines))
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, MeanDiffBackend(fail_on="pool", write_then_fail=True),
                               run="run4", extra=cache)
    assert code == 2 and "failed" in err
    lines[1], lines[3] = lines[3], lines[1]
    pool_csv.write_text("".join(lines))
    backend.calls.clear()
    code, s, err, out = run_mine(ws, capsys, monkeypatch, backend, run="run5", extra=cache)
    assert code == 0 and s["pool_embeddings"] == "embedded", err
    assert sorted(mined_objects(out)) == ["m1", "m2", "s1", "s2"]


def test_a_failing_run_leaves_no_partial_results(ws, capsys, monkeypatch):
    code, _, err, out = run_mine(ws, capsys, monkeypatch, MeanDiffBackend(fail_on="pool"))
    assert code == 2 and "failed" in err
    assert not out.exists() and not list(out.parent.glob(".*"))
    assert not (ws / "run/mining_history.json").exists()
    code, _, err, out = run_mine(ws, capsys, monkeypatch)
    assert code == 0, err
    before = outputs(out)
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, MeanDiffBackend(fail_on="target"))
    assert code == 2
    assert outputs(out) == before and not list(out.parent.glob(".*"))


def test_bad_arguments_exit_2(ws, capsys, monkeypatch):
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, k=0)
    assert code == 2 and "top-k" in err
    code, _, err, _ = run_mine(ws, capsys, monkeypatch, floor=1.5)
    assert code == 2 and "min-similarity" in err
    (ws / "run").mkdir(exist_ok=True)
    (ws / "run/mining_history.json").write_text("[]")
    code, _, err, _ = run_mine(ws, capsys, monkeypatch)
    assert code == 2 and "mining_history.json" in err


# ------------------------------------------------------------------ the real local embedder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from conftest import run_script

    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


def test_local_backend_mines_same_label_rows_on_the_tiny_demo(tiny, tmp_path, script):
    # across labels (--any-label) at the embedder's own floor: the neighbours it finds are of the target's family
    kpi = pd.read_csv(tiny / "kpi/testing_set.csv", dtype=str)
    weak = kpi[kpi["label"] != "PASS"]
    gaps = tmp_path / "mining_gaps.parquet"
    pd.concat([weak.assign(light=light) for light in mini_workspace.LIGHTS]).to_parquet(gaps)
    R = tmp_path / "run"

    def mine(iteration, k):
        return script("mine_pool.py", "--targets", gaps,
                      "--mining-pool", tiny / "augmentation/mining_pool/mining_pool.csv",
                      "--images-root", tiny / "images", "--results-dir", R / iteration / "mining",
                      "--train-spec", tiny / "specs/baseline_spec.yaml", "--backend", "local",
                      "--top-k-per-target", str(k), "--any-label", "--history", R / "mining_history.json",
                      "--iteration", iteration, "--exclude", tiny / "train/base/validation_set.csv",
                      "--exclude", tiny / "kpi/testing_set.csv", "--embedding-cache", R / "mining_cache", "--json")

    proc = mine("iter1", 2)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["embedder"]["embedder"] == features.EMBEDDER and s["method"] == "exact"
    assert s["floor_source"] == "embedder" and s["min_similarity"] == s["embedder"]["min_similarity"]
    rows = pd.read_csv(R / "iter1/mining/mined_rows.csv", dtype=str)
    target_label = pd.read_csv(R / "iter1/mining/knn_summary.csv", dtype=str).set_index("target")["label"]
    same = (rows["target"].map(target_label) == rows["label"]).mean()
    assert len(rows) >= 20 and same >= 0.95, (len(rows), same)
    assert set(rows["label"]) == set(weak["label"])  # every weak defect label finds real examples

    proc = mine("iter2", 5)  # the pool embedding comes from the cache and nothing is mined twice
    assert proc.returncode == 0, proc.stderr
    s2 = json.loads(proc.stdout)
    assert s2["pool_embeddings"] == "cache" and s2["mined_earlier"] >= len(rows)
    again = pd.read_csv(R / "iter2/mining/mined_rows.csv", dtype=str)
    key = lambda df: set(df["input_path"] + "/" + df["object_name"])  # noqa: E731
    assert len(again) >= 5 and not key(rows) & key(again)
