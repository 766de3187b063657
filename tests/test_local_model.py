"""The local model's parts: the boosted trees (LightGBM: margins, growth, warm start, determinism,
its text model), the ensemble checkpoint, and the AutoML objective (FAR averaged over recall 90-100%)."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi import defaults
from tao_aoi.analysis import kpi
from tao_aoi.automl import study
from tao_aoi.errors import UserError
from tao_aoi.model import ensemble, features, trees


def data(seed: int, n: int = 300, f: int = 6, ties: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, f)).astype(np.float32)
    if ties:
        x = np.round(x)  # few distinct values: cuts land on ties
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.3 * rng.standard_normal(n)) > 0.6
    return x, y


def grow(x, y, *, w=None, shrinkage=0.3, depth=3, min_leaf=10, seed=0, init=None) -> trees.Booster:
    return trees.Booster(x, y, np.ones(len(y)) if w is None else w, shrinkage=shrinkage, depth=depth,
                         min_leaf=min_leaf, l2=1.0, bins=32, seed=seed, threads=1, init=init)


def lightgbm_model(x, y, rounds: int, *, shrinkage=0.3, depth=3, min_leaf=10):
    """The same trees through LightGBM's plain train(): the reference our per-epoch growth must equal."""
    import lightgbm

    params = {"objective": "binary", "learning_rate": shrinkage, "max_depth": depth, "num_leaves": 2 ** depth,
              "min_data_in_leaf": min_leaf, "lambda_l2": 1.0, "max_bin": 32, "deterministic": True,
              "force_col_wise": True, "num_threads": 1, "verbosity": -1}
    data_ = lightgbm.Dataset(np.asarray(x, np.float64), label=y.astype(float), params=params)
    return lightgbm.train(params, data_, num_boost_round=rounds)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 4), st.integers(1, 40), st.booleans())
def test_rounds_in_steps_equal_lightgbm_trained_at_once(seed, depth, min_leaf, ties):
    x, y = data(seed, ties=ties)
    b = grow(x, y, depth=depth, min_leaf=min_leaf)
    b.rounds(2)
    forest = b.rounds(3)
    probe = np.concatenate([x[:40], np.random.default_rng(seed).standard_normal((20, x.shape[1])) * 5])
    ref = lightgbm_model(x, y, forest.n_trees, depth=depth, min_leaf=min_leaf)
    np.testing.assert_allclose(forest.margin(probe), ref.predict(probe, raw_score=True), rtol=0, atol=1e-9)
    np.testing.assert_allclose(forest.margin(x), b.z, atol=1e-9)  # the booster's running margin agrees
    # margins of consecutive ranges add up, and take(k) is the first k trees
    np.testing.assert_allclose(forest.margin(probe), forest.margin(probe, 2) + forest.margin(probe, start=2), atol=1e-9)
    np.testing.assert_allclose(forest.take(2).margin(probe), forest.margin(probe, 2), atol=1e-12)
    assert forest.take(0).n_trees == 0 and not forest.take(0).margin(probe).any()


def log_loss(z, y):
    p = 1 / (1 + np.exp(-z))
    return -np.mean(np.where(y, np.log(p), np.log1p(-p)))


def test_boosting_lowers_the_loss_and_continues_from_a_model():
    x, y = data(3, n=600)
    w = np.ones(len(y))
    b = grow(x, y, w=w, shrinkage=0.2)
    losses = [log_loss(b.z + np.log(y.mean() / (1 - y.mean())), y)]  # before any tree: the base rate
    for _ in range(5):
        b.rounds(4)
        losses.append(log_loss(b.z, y))
    assert all(a > c for a, c in zip(losses, losses[1:]))
    first = b.forest
    again = grow(x, y, w=w, shrinkage=0.2).rounds(20)
    np.testing.assert_array_equal(again.margin(x), first.margin(x))  # deterministic, in steps or at once
    other_seed = grow(x, y, w=w, shrinkage=0.2, seed=7).rounds(20)  # no sampling: the seed changes nothing
    np.testing.assert_array_equal(other_seed.margin(x), first.margin(x))
    warm = grow(x[:300], y[:300], w=w[:300], shrinkage=0.2, init=first)
    np.testing.assert_allclose(warm.z, first.margin(x[:300]))  # fine-tuning starts from the model's margin
    warm.rounds(1)
    tuned = warm.rounds(2)
    assert tuned.n_trees == first.n_trees + 3
    np.testing.assert_allclose(tuned.margin(x, first.n_trees), first.margin(x))  # the old trees are kept as they were
    assert log_loss(tuned.margin(x[:300]), y[:300]) < log_loss(first.margin(x[:300]), y[:300])
    np.testing.assert_allclose(tuned.margin(x[:300]), warm.z, atol=1e-9)


def test_continuing_equals_lightgbm_init_model():
    """Our fine-tune is LightGBM's own continued training (``init_model``) on the new rows."""
    import lightgbm

    x, y = data(4, n=500)
    first = grow(x[:300], y[:300]).rounds(6)
    tuned = grow(x[300:], y[300:], init=first).rounds(4)
    params = {"objective": "binary", "learning_rate": 0.3, "max_depth": 3, "num_leaves": 8, "min_data_in_leaf": 10,
              "lambda_l2": 1.0, "max_bin": 32, "deterministic": True, "force_col_wise": True, "num_threads": 1,
              "verbosity": -1}
    ref = lightgbm.train(params, lightgbm.Dataset(np.asarray(x[300:], np.float64), label=y[300:].astype(float),
                                                  params=params),
                         num_boost_round=4, init_model=lightgbm_model(x[:300], y[:300], 6))
    np.testing.assert_allclose(tuned.margin(x), ref.predict(np.asarray(x, np.float64), raw_score=True), atol=1e-9)


def test_constant_features_and_one_class_give_finite_margins():
    x = np.ones((50, 3), np.float32)
    y = np.zeros(50, bool)
    y[:5] = True
    f = grow(x, y, shrinkage=0.1, min_leaf=1).rounds(3)
    assert np.isfinite(f.margin(x)).all() and f.n_trees <= 3
    np.testing.assert_allclose(1 / (1 + np.exp(-f.margin(x))), 0.1, atol=1e-6)  # the base rate, no split
    f = grow(np.random.default_rng(0).standard_normal((50, 3)), np.zeros(50, bool), min_leaf=1).rounds(3)
    assert np.isfinite(f.margin(x)).all()


def test_trees_model_is_text_and_damage_is_refused():
    x, y = data(1)
    f = grow(x, y, depth=2, min_leaf=5).rounds(2)
    raw = f.dump()
    assert raw.startswith(b"tree\n") and b"\x00" not in raw  # LightGBM's own text model
    np.testing.assert_array_equal(trees.load(raw, x.shape[1]).margin(x), f.margin(x))
    with pytest.raises(ValueError, match="features"):
        trees.load(raw, x.shape[1] + 1)
    with pytest.raises(ValueError, match="not a LightGBM model"):
        trees.load(b"not a model", x.shape[1])
    with pytest.raises(ValueError, match="not a LightGBM model"):
        trees.load(b"\xff\xfe", x.shape[1])


def ensemble_checkpoint_with(path, out, **change):
    """A copy of checkpoint ``path`` with arrays (or ``__meta__`` keys under ``meta``) replaced."""
    meta_change = change.pop("meta", {})
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    meta.update(meta_change)
    arrays.update(change)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    out.write_bytes(buf.getvalue())
    return out


def test_ensemble_checkpoint_round_trip_and_fine_tune(tmp_path):
    x, y = data(5, n=400, f=features.n_features(2))
    hp = ensemble.hyperparams({"train": {"num_epochs": 3}})
    cfg = features.DEFAULT
    model, history = ensemble.fit(x[:300], y[:300], x[300:], y[300:], hp, lights=["a", "b"], cfg=cfg)
    assert len(history) == 3 and model.forest.n_trees == 5 * (model.meta["best_epoch"] + 1)
    path = tmp_path / "best.ckpt"
    model.save(path)
    back = ensemble.load(path, ["a", "b"])
    np.testing.assert_array_equal(back.scores(x), model.scores(x))
    p = model.scores(x)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, 0.5 * (model.mlp_scores(x) + 1 / (1 + np.exp(-model.forest.margin(x)))))
    tuned, _ = ensemble.fit(x[:300], y[:300], x[300:], y[300:], hp, lights=["a", "b"], cfg=cfg, init=back)
    assert tuned.meta["fine_tuned"] and tuned.forest.n_trees > back.forest.n_trees
    np.testing.assert_allclose(tuned.forest.margin(x, back.forest.n_trees), back.forest.margin(x))  # kept as they were
    with pytest.raises(UserError, match="trained on lights"):
        ensemble.load(path, ["a", "c"])
    again, _ = ensemble.fit(x[:300], y[:300], x[300:], y[300:], hp, lights=["a", "b"], cfg=cfg)
    np.testing.assert_array_equal(again.scores(x), model.scores(x))  # same seed, same model
    assert again.forest.dump() == model.forest.dump()


def test_ensemble_checkpoint_stores_the_trees_as_text_and_refuses_damage(tmp_path):
    x, y = data(6, n=300, f=features.n_features(2))
    hp = ensemble.hyperparams({"train": {"num_epochs": 2}})
    model, _ = ensemble.fit(x[:200], y[:200], x[200:], y[200:], hp, lights=["a", "b"], cfg=features.DEFAULT)
    path = tmp_path / "best.ckpt"
    model.save(path)
    with np.load(path, allow_pickle=False) as z:  # data only: loads without pickle
        text = z["trees_model"].tobytes()
        meta = json.loads(z["__meta__"].tobytes())
    assert text == model.forest.dump() and text.startswith(b"tree\n")
    assert meta["trees_kind"] == trees.KIND == "lightgbm" and meta["trees_sha256"] == hashlib.sha256(text).hexdigest()
    assert meta["trees_library"].startswith("lightgbm ") and meta["format_version"] == ensemble.FORMAT_VERSION
    edited = text.replace(b"shrinkage=", b"shrinkage=9", 1)
    cases = {
        "edited": ensemble_checkpoint_with(path, tmp_path / "edited.ckpt", trees_model=np.frombuffer(edited, np.uint8)),
        "kind": ensemble_checkpoint_with(path, tmp_path / "kind.ckpt", meta={"trees_kind": "own"}),
        "no trees": ensemble_checkpoint_with(path, tmp_path / "none.ckpt", meta={"trees_sha256": None}),
        "garbage": ensemble_checkpoint_with(path, tmp_path / "garbage.ckpt", trees_model=np.frombuffer(b"x" * 40, np.uint8),
                                            meta={"trees_sha256": hashlib.sha256(b"x" * 40).hexdigest()}),
    }
    for kind, bad in cases.items():
        with pytest.raises(UserError) as err:
            ensemble.load(bad)
        assert str(bad) in str(err.value) and "corrupt" in str(err.value), kind
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "flipped.ckpt", "w") as dst:
        for item in src.infolist():  # a stored member whose bytes changed: the zip's CRC refuses it
            data_ = src.read(item)
            if item.filename == "trees_model.npy":
                data_ = data_[:-10] + bytes(b ^ 1 for b in data_[-10:])
            dst.writestr(item, data_)
    with pytest.raises(UserError, match="corrupt|sha256"):
        ensemble.load(tmp_path / "flipped.ckpt")


def test_tree_shrinkage_follows_the_learning_rate_and_defaults():
    x, y = data(8, n=300, f=features.n_features(2))
    for lr, want in ((defaults.LOCAL_MODEL["train.optim.lr"], defaults.LOCAL_TREES["shrinkage"]), (1.0, 0.1),
                     (2e-4, 0.01)):
        hp = ensemble.hyperparams({"train": {"num_epochs": 1, "optim": {"lr": lr}}})
        model, _ = ensemble.fit(x[:200], y[:200], x[200:], y[200:], hp, lights=["a", "b"], cfg=features.DEFAULT)
        assert model.meta["tree_shrinkage"] == pytest.approx(want)
        assert f"[learning_rate: {want:g}]" in model.forest.dump().decode()


# ------------------------------------------------------------------ the AutoML objective

scores_st = st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0, 0.25, 0.75]), min_size=2, max_size=60)


@settings(max_examples=200, deadline=None)
@given(scores_st, st.data())
def test_high_recall_far_with_one_defect_share_is_far_at_full_recall(scores, data_):
    s = np.asarray(scores)
    pos = np.asarray(data_.draw(st.lists(st.booleans(), min_size=len(s), max_size=len(s))))
    if pos.all() or not pos.any():
        assert study.high_recall_far_pct(s, pos) == 0.0 and study.objective(s, pos) == 0.0
        return
    assert study.high_recall_far_pct(s, pos, share=1e-9) == pytest.approx(float(kpi.at_recall(s, pos, 100.0).far_pct))
    # averaging over more of the hardest defects never exceeds the FAR at 100% recall (the worst one)
    assert study.high_recall_far_pct(s, pos) <= study.high_recall_far_pct(s, pos, share=1e-9) + 1e-12
    assert 0.0 <= study.high_recall_far_pct(s, pos, share=1.0) <= 100.0


def test_objective_ranks_by_mean_far_then_margin():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200, bool), np.ones(40, bool)]
    separated = np.r_[rng.uniform(0, 0.4, 200), rng.uniform(0.6, 1, 40)]
    wider = np.r_[rng.uniform(0, 0.2, 200), rng.uniform(0.8, 1, 40)]
    overlap = separated.copy()
    overlap[200:204] = 0.1  # four hard defects among the PASS rows
    obj = [study.objective(s, y) for s in (wider, separated, overlap)]
    assert obj[0] < obj[1] < obj[2]
    assert study.high_recall_far_pct(wider, y) == study.high_recall_far_pct(separated, y) == 0.0
    step = 100.0 / (200 * 4)  # k = 10% of 40 defects
    assert obj[1] - obj[0] < step / 2
    # the four hard defects each sit above ~1/4 of PASS rows: the mean FAR sees all of them
    assert study.high_recall_far_pct(overlap, y) == pytest.approx(100 * np.mean([(separated[:200] >= 0.1).mean()] * 4))
