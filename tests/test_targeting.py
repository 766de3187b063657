"""DEFT goes after the samples that pin the KPI: SDG pairs chosen by similarity to each limiting
sample (against a brute-force nearest-pair search), the pool embedded once and cached, the record
of which pair was picked for which sample, and the rows added for limiting samples weighted in the
next fine-tune (a weight per row, never a repeated row)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mini_workspace
from mean_diff_embedder import GOLD, MeanDiffBackend, put
from tao_aoi import defaults
from tao_aoi.backends.base import TrainJob
from tao_aoi.backends.local import LocalBackend
from tao_aoi.data import changenet_csv, leakage
from tao_aoi.deft import assembly, sdg
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.model import checkpoint, ensemble
from tao_aoi.pipeline import run_config
from tao_aoi.state import deft_state

# ------------------------------------------------------------------ the selection rule


def brute_force(targets: np.ndarray, pool: np.ndarray, quotas: list[int]) -> list[tuple[int, int, float]]:
    """Every (target, pair) by cosine, best first (ties: target, then pair), each pair to the first target
    that still needs one: the rule, over every pair, with nothing pruned."""
    entries = sorted((-float(np.dot(targets[t], pool[p])), t, p) for t in range(len(targets)) for p in range(len(pool)))
    need, taken, out = list(quotas), set(), []
    for neg, t, p in entries:
        if need[t] > 0 and p not in taken:
            need[t] -= 1
            taken.add(p)
            out.append((t, p, -neg))
    return out


@given(st.data())
def test_targeted_picks_are_a_brute_force_nearest_pair_search(data):
    # small integer vectors: every dot product is exact in float32, so ties are real ties in both
    dim = data.draw(st.integers(1, 4))
    vec = st.lists(st.integers(-3, 3), min_size=dim, max_size=dim)
    targets = np.array(data.draw(st.lists(vec, min_size=1, max_size=4)), np.float32).reshape(-1, dim)
    pool = np.array(data.draw(st.lists(vec, min_size=0, max_size=25)), np.float32).reshape(-1, dim)
    quotas = data.draw(st.lists(st.integers(0, 7), min_size=len(targets), max_size=len(targets)))
    got = sdg.nearest_pairs(targets, pool, quotas)
    assert got == brute_force(targets, pool, quotas)
    assert len({p for _, p, _ in got}) == len(got)  # a pair serves one sample
    for t, q in enumerate(quotas):  # every sample gets its quota while pairs last
        assert sum(1 for x, _, _ in got if x == t) == min(q, len(pool) - sum(1 for x, _, _ in got if x != t))


def test_a_family_share_is_split_over_its_limiting_samples_by_the_alarms_they_pin():
    targets = pd.DataFrame({"label": ["MISSING", "MISSING", "BRIDGE", "MISSING"], "limiting_rank": [1, 2, 3, 4],
                            "pinned_share": [30.0, 10.0, 5.0, 0.0]})
    assert sdg.target_quotas({"MISSING": 8, "BRIDGE": 2, "PASS": 0}, targets) == [6, 2, 2, 0]
    assert sdg.target_quotas({"MISSING": 0, "BRIDGE": 2}, targets) == [0, 0, 2, 0]


# ------------------------------------------------------------------ the sdg stage, targeted


POOL_DIRS = dict(enumerate((0, 10, 40, 75, 100, 170, 200, 220, 250, 280, 300, 330)))  # MISSING pairs' angles


@pytest.fixture
def ws(tmp_path) -> Path:
    """A mini workspace whose SDG pool's MISSING pairs point at chosen directions (test embedder), and a
    KPI sample at 35 degrees that pins the threshold."""
    import math

    root = mini_workspace.build(tmp_path / "ws", pool_samples={"PASS": 4})
    pool = root / "augmentation" / "anomalygen"
    for i, (name, deg) in enumerate(POOL_DIRS.items()):
        vec = (round(90 * math.cos(math.radians(deg))), round(90 * math.sin(math.radians(deg))))
        for light, v in zip(mini_workspace.LIGHTS, vec):
            mini_workspace.png(pool / "reconstructed_image" / f"tmpl+MISSING_{i}_{light}.png", GOLD + v)
            mini_workspace.png(pool / "original_image" / f"tmpl+MISSING_{i}_{light}.png", GOLD)
    put(root / "images", "kpi/lim", "T1@1", 35)
    return root


def routed(tmp: Path, rank: int = 1) -> Path:
    rows = []
    for obj, where, lim in (("T1@1", "kpi/lim", rank), ("W2@1", "kpi/other", 0), ("W3@1", "kpi/other", 0)):
        for light in mini_workspace.LIGHTS:
            rows.append({"filepath": f"{where}/{obj}_{light}.png", "input_path": where, "object_name": obj,
                         "golden_path": f"{where}_golden", "label": "MISSING", "light": light,
                         "limiting_rank": lim, "pinned_share": 12.0 if lim else 0.0})
    for i in range(3):
        rows.append({"filepath": f"p/{i}.png", "input_path": "kpi/p", "object_name": f"P{i}", "golden_path": "g",
                     "label": "PASS", "light": mini_workspace.LIGHTS[0], "limiting_rank": 0, "pinned_share": 0.0})
    d = tmp / "routing"
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(d / "sdg_gaps.parquet")
    return d


def run_ingest(ws: Path, tmp: Path, iteration: str, backend, num: int = 6) -> dict:
    R = tmp / "run"
    return sdg.ingest(routed(tmp), ws / "augmentation/anomalygen", num, R / iteration / "sdg", ws / "images",
                      ws / "specs/baseline_spec.yaml", R / "sdg_history.json", iteration, backend=backend,
                      cache_dir=R / "sdg_cache")


def test_the_priority_rows_go_to_the_pairs_nearest_each_limiting_sample(ws, tmp_path):
    backend = MeanDiffBackend()
    alloc = run_ingest(ws, tmp_path, "iter1", backend)
    # 6 rows: half (3) to MISSING, whose one limiting sample (35 deg) takes the 3 pairs nearest it: 40, 10, 0 deg
    (aim,) = alloc["targeted"]
    assert aim["rows"] == 3 and aim["target"].endswith("kpi/lim/T1@1")
    assert [p["sample"] for p in aim["picked"]] == ["tmpl+MISSING_2", "tmpl+MISSING_1", "tmpl+MISSING_0"]
    sims = [p["similarity"] for p in aim["picked"]]
    assert sims == sorted(sims, reverse=True) and sims[0] == pytest.approx(np.cos(np.radians(5)), abs=2e-3)
    rows = changenet_csv.read(tmp_path / "run/iter1/sdg/sdg_rows.csv", allow_empty=True)
    aimed = rows[rows["target"] != ""]
    assert sorted(aimed["object_name"]) == sorted(p["sample"] for p in aim["picked"])
    assert set(aimed["limiting_rank"]) == {"1"} and set(rows.loc[rows["target"] == "", "limiting_rank"]) == {"0"}
    # the rest of MISSING's rows: filled in the pool's fixed order, as before targeting
    assert alloc["per_label"]["MISSING"]["targeted"] == 3 and alloc["ingested"]["MISSING"] == alloc["allocated"]["MISSING"]
    hist = json.loads((tmp_path / "run/sdg_history.json").read_text())
    assert {s: v["target"] for s, v in hist["picked_for"].items()} == {p["sample"]: aim["target"] for p in aim["picked"]}
    assert all(hist["used"][s] == "iter1" for s in hist["picked_for"])
    assert alloc["pool_embeddings"] == "embedded"
    # iter2: the pool comes from the cache, the used pairs are gone, the next nearest are picked
    calls = len(backend.calls)
    alloc2 = run_ingest(ws, tmp_path, "iter2", backend)
    assert alloc2["pool_embeddings"] == "cache" and len(backend.calls) == calls + 1  # only the target embedded
    assert {p["sample"] for p in alloc2["targeted"][0]["picked"]}.isdisjoint(hist["picked_for"])
    # rerunning iter1 (a retry after a crash) replaces its own entries and picks the same pairs
    again = run_ingest(ws, tmp_path, "iter1", backend)
    assert again["targeted"] == alloc["targeted"]


def test_without_a_limiting_sample_nothing_is_embedded(ws, tmp_path):
    backend = MeanDiffBackend()
    R = tmp_path / "run"
    routing = routed(tmp_path, rank=0)
    alloc = sdg.ingest(routing, ws / "augmentation/anomalygen", 6, R / "iter1" / "sdg", ws / "images",
                       ws / "specs/baseline_spec.yaml", R / "sdg_history.json", "iter1", backend=backend,
                       cache_dir=R / "sdg_cache")
    assert backend.calls == [] and alloc["targeted"] == [] and "embedder" not in alloc


def test_the_embedder_reads_pool_pairs_named_otherwise_through_a_view(ws, tmp_path):
    # a single-light spec and pool files without a light suffix: the embedder still gets <sample>_<light><ext>
    one = tmp_path / "one"
    rows = sdg._embedding_rows(pd.DataFrame([{"sample": "t+MISSING_0", "label": "MISSING",
                                              "files": {"L": (str(ws / "images/kpi/lim/T1@1_SolderLight.png"),
                                                              str(ws / "images/kpi/lim_golden/T1@1_SolderLight.png"))}}]),
                               ["L"], ".png", one)
    assert rows.loc[0, "input_path"] == str(one / "ng") and (one / "ng" / "t+MISSING_0_L.png").is_file()
    assert (one / "ok" / "t+MISSING_0_L.png").is_file()


# ------------------------------------------------------------------ a weight per row, never a repeat


def assembled(ws: Path, tmp: Path, n: int, sdg_rows: list[dict], mined: list[dict]) -> Results:
    R = Results.at(tmp / "run")
    if n == 1:
        deft_state.init(R.root, kpi_target="FAR < 1% at Recall=100%",
                        config=run_config.deft_config(workspace=ws, max_iterations=3))
    for stage, rows, extra in (("sdg", sdg_rows, ["target", "similarity", "limiting_rank"]),
                               ("mining", mined, ["similarity", "target", "limiting_rank"])):
        out = R.stage_dir(f"iter{n}", stage)
        out.mkdir(parents=True, exist_ok=True)
        name = "sdg_rows.csv" if stage == "sdg" else "mined_rows.csv"
        changenet_csv.write(pd.DataFrame(rows, columns=list(changenet_csv.REQUIRED) + extra), out / name)
    assembly.assemble(R.root, n)
    return R


def new_row(images: Path, where: str, obj: str, label: str, rank: int) -> dict:
    """A new row's images and its producer's row; ``rank`` > 0: added for that limiting sample."""
    mini_workspace.sample(images, where, obj, 50 + rank)
    mini_workspace.sample(images, "golden/board0", obj, 7)
    return {"input_path": where, "golden_path": "golden/board0", "label": label, "object_name": obj,
            "target": "kpi/lim/T1@1" if rank else "", "similarity": "0.9" if rank else "", "limiting_rank": rank}


def test_rows_added_for_limiting_samples_carry_a_bounded_weight_never_a_repeat(ws, tmp_path):
    def row(*a):
        return new_row(ws / "images", *a)

    sdg1 = [row("new/sdg", "S1", "MISSING", 1), row("new/sdg", "S2", "MISSING", 0)]
    mined1 = [row("new/mined", "M1", "MISSING", 1), row("new/mined", "M2", "PASS", 0),
              row("new/sdg", "S1", "MISSING", 1)]  # the same sample twice: kept once, weighted once
    R = assembled(ws, tmp_path, 1, sdg1, mined1)
    combined = changenet_csv.read(R.combined_csv(1))
    prov = changenet_csv.read(R.provenance_csv(1), ("row", "weight", "limiting_rank"))
    keys = leakage.sample_keys(combined, ws / "images")
    assert not keys.duplicated().any()  # no sample repeated to stand for a weight
    weight = prov["weight"].astype(float).to_numpy()
    base_rows = len(changenet_csv.read(ws / "train/base/training_set.csv"))
    assert len(combined) == len(prov) == base_rows + 4
    assert set(combined.iloc[np.flatnonzero(weight > 1)]["object_name"]) == {"S1", "M1"}
    assert set(weight) == {1.0, defaults.LIMITING_ROW_WEIGHT} and weight.max() <= defaults.MAX_ROW_WEIGHT
    report = json.loads((R.combined_csv(1).parent / "validation_report.json").read_text())
    assert report["for_limiting"] == {"rows": 2, "weight": defaults.LIMITING_ROW_WEIGHT}
    # the next iteration: only its own rows for limiting samples are weighted; earlier ones are back to 1
    R = assembled(ws, tmp_path, 2, [row("new/sdg", "S3", "MISSING", 2)], [row("new/mined", "M3", "MISSING", 0)])
    prov2 = changenet_csv.read(R.provenance_csv(2), ("row", "weight", "limiting_rank", "added_in"))
    heavy = prov2[prov2["weight"].astype(float) > 1]
    assert list(heavy["added_in"]) == ["iter2"] and len(heavy) == 1
    assert (prov2["limiting_rank"].iloc[:len(prov)] == prov["limiting_rank"]).all()  # the history stays


def test_the_local_model_takes_the_weights_and_refuses_what_is_not_one(ws, tmp_path):
    train_csv, spec = ws / "train/base/training_set.csv", ws / "specs/baseline_spec.yaml"
    n = len(changenet_csv.read(train_csv))
    weights = tmp_path / "w.csv"
    job = dict(spec=spec, train_csv=train_csv, val_csv=ws / "train/base/validation_set.csv", images_root=ws / "images")
    pd.DataFrame({"row": range(n), "weight": [1.0] * (n - 1) + [defaults.MAX_ROW_WEIGHT]}).to_csv(weights, index=False)
    LocalBackend().train(TrainJob(**job, output_dir=tmp_path / "w", row_weights=weights))
    LocalBackend().train(TrainJob(**job, output_dir=tmp_path / "plain"))
    meta_w = checkpoint.load(tmp_path / "w" / "best.ckpt", ensemble.FORMAT, ensemble.FORMAT_VERSION)[1]
    meta_p = checkpoint.load(tmp_path / "plain" / "best.ckpt", ensemble.FORMAT, ensemble.FORMAT_VERSION)[1]
    assert meta_w["train_rows"] == meta_p["train_rows"] == n  # the same rows, none repeated
    assert meta_w["row_weights"] == {"file": str(weights), "weighted_rows": 1, "max": defaults.MAX_ROW_WEIGHT}
    assert "row_weights" not in meta_p
    for bad, needle in ((list(range(n - 1)), f"has {n - 1} rows"), ([1.0] * (n - 1) + [defaults.MAX_ROW_WEIGHT + 1], "line"),
                        ([1.0] * (n - 1) + [0.0], "line"), ([1.0] * (n - 1) + ["x"], "line")):
        pd.DataFrame({"weight": bad}).to_csv(weights, index=False)
        with pytest.raises(UserError, match=needle):
            LocalBackend().train(TrainJob(**job, output_dir=tmp_path / "bad", row_weights=weights))


def test_a_weighted_row_counts_more_in_both_members():
    # one defect row among PASS rows of the same descriptors: its weight moves both members' scores up
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.zeros(60, bool)
    y[:10] = True
    x[:10] += 1.5
    x[59] = x[0]  # a PASS row the model cannot tell from defect row 0
    hp = ensemble.Hyperparams(lr=2e-3, weight_decay=1e-4, hidden_width=8, epochs=5, batch_size=16, cls_weight=1.0,
                              seed=0)
    from tao_aoi.model import features

    kw = dict(lights=["L"], cfg=features.DEFAULT)
    plain, _ = ensemble.fit(x, y, x, y, hp, **kw)
    w = np.ones(60)
    w[59] = defaults.MAX_ROW_WEIGHT
    heavy, _ = ensemble.fit(x, y, x, y, hp, **kw, sample_weight=w)
    assert heavy.scores(x[59:60])[0] < plain.scores(x[59:60])[0]


class StandardisingBackend(MeanDiffBackend):
    """The test embedder, saying (as the local one does) that it is compared after standardising."""

    def submit_embed(self, job):
        handle = super().submit_embed(job)
        from tao_aoi.deft import mining

        path = mining.settings_file(Path(job.output))
        path.write_text(json.dumps({**json.loads(path.read_text()), "standardise": "pool"}))
        return handle


def test_a_standardising_embedder_is_standardised_by_the_mining_pool_embedded_once_for_both_stages(ws, tmp_path):
    from tao_aoi.deft import mining

    R = tmp_path / "run"
    backend = StandardisingBackend()
    alloc = sdg.ingest(routed(tmp_path), ws / "augmentation/anomalygen", 6, R / "iter1" / "sdg", ws / "images",
                       ws / "specs/baseline_spec.yaml", R / "sdg_history.json", "iter1", backend=backend,
                       cache_dir=R / "sdg_cache", reference_pool=ws / "augmentation/mining_pool/mining_pool.csv",
                       reference_cache=R / "mining_cache")
    assert alloc["standardised_by"].startswith("mining pool ") and alloc["standardised_by"].endswith("(embedded)")
    # the cache is the one mining reads: same source, same rows
    pool_csv = ws / "augmentation/mining_pool/mining_pool.csv"
    source = json.loads((R / "mining_cache" / mining.POOL_CACHE_SOURCE).read_text())
    assert source == mining._pool_source(pool_csv, (ws / "images").resolve(), ws / "specs/baseline_spec.yaml")
    emb, _ = mining.read_embeddings(R / "mining_cache" / mining.POOL_CACHE)
    assert len(emb) == len(changenet_csv.read(pool_csv))
    # standardising by a reference: its mean and spread, not the pool's
    t, p = np.array([[1.0, 10.0]], np.float32), np.array([[1.0, 0.0], [3.0, 0.0]], np.float32)
    ref = np.array([[0.0, 0.0], [2.0, 20.0]], np.float32)
    t2, p2 = mining.comparable(t, p, {"standardise": "pool"}, reference=ref)
    np.testing.assert_allclose(t2, (t - ref.mean(0)) / ref.std(0))
    np.testing.assert_allclose(p2, (p - ref.mean(0)) / ref.std(0))
    assert mining.comparable(t, p, {}, reference=ref) == (t, p)  # an embedder that does not standardise
