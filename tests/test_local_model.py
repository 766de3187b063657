"""The local model's parts: boosted trees as arrays (scoring, growth, warm start, corrupt arrays),
the ensemble checkpoint, and the AutoML objective (FAR averaged over recall 90-100%)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi.analysis import kpi
from tao_aoi.automl import study
from tao_aoi.errors import UserError
from tao_aoi.model import boosted_trees, ensemble, features


def walk(forest: boosted_trees.Forest, x: np.ndarray) -> np.ndarray:
    """Reference scorer: one row, one tree at a time."""
    out = np.full(len(x), forest.base)
    for r, row in enumerate(np.asarray(x, np.float32)):
        for t in range(forest.n_trees):
            node = 0
            while forest.feature[t, node] >= 0:
                f = forest.feature[t, node]
                node = forest.left[t, node] if row[f] <= forest.threshold[t, node] else forest.right[t, node]
            out[r] += forest.value[t, node]
    return out


def data(seed: int, n: int = 300, f: int = 6, ties: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, f)).astype(np.float32)
    if ties:
        x = np.round(x)  # few distinct values: cuts land on ties
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.3 * rng.standard_normal(n)) > 0.6
    return x, y


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 4), st.integers(1, 40), st.booleans())
def test_vectorised_margin_equals_walking_each_tree(seed, depth, min_leaf, ties):
    x, y = data(seed, ties=ties)
    b = boosted_trees.Booster(x, y, np.ones(len(y)), shrinkage=0.3, depth=depth, min_leaf=min_leaf, l2=1.0)
    forest = b.rounds(4)
    probe = np.concatenate([x[:40], np.random.default_rng(seed).standard_normal((20, x.shape[1])) * 5])
    np.testing.assert_allclose(forest.margin(probe), walk(forest, probe), rtol=0, atol=1e-9)
    np.testing.assert_allclose(forest.margin(x), b.z, atol=1e-9)  # the booster's running margin agrees
    # margins of consecutive ranges add up, and take(k) is the first k trees
    np.testing.assert_allclose(forest.margin(probe), forest.margin(probe, 2) + forest.margin(probe, start=2), atol=1e-9)
    np.testing.assert_allclose(forest.take(2).margin(probe), forest.margin(probe, 2), atol=1e-12)
    # every leaf holds at least min_leaf training rows
    for t in range(forest.n_trees):
        leaves = walk_leaf(forest, t, x)
        assert np.bincount(leaves).max(initial=0) >= 1
        assert min(c for c in np.bincount(leaves) if c) >= min(min_leaf, len(x))


def walk_leaf(forest, t, x):
    out = []
    for row in x:
        node = 0
        while forest.feature[t, node] >= 0:
            f = forest.feature[t, node]
            node = forest.left[t, node] if row[f] <= forest.threshold[t, node] else forest.right[t, node]
        out.append(node)
    return np.asarray(out)


def log_loss(z, y):
    p = 1 / (1 + np.exp(-z))
    return -np.mean(np.where(y, np.log(p), np.log1p(-p)))


def test_boosting_lowers_the_loss_and_continues_from_a_forest():
    x, y = data(3, n=600)
    w = np.ones(len(y))
    b = boosted_trees.Booster(x, y, w, shrinkage=0.2, depth=3, min_leaf=10, l2=1.0)
    losses = [log_loss(b.z, y)]
    for _ in range(5):
        b.rounds(4)
        losses.append(log_loss(b.z, y))
    assert all(a > c for a, c in zip(losses, losses[1:]))
    first = b.forest
    again = boosted_trees.Booster(x, y, w, shrinkage=0.2, depth=3, min_leaf=10, l2=1.0).rounds(20)
    np.testing.assert_array_equal(again.margin(x), first.margin(x))  # deterministic
    warm = boosted_trees.Booster(x[:300], y[:300], w[:300], shrinkage=0.2, depth=3, min_leaf=10, l2=1.0,
                                 init=first).rounds(3)
    assert warm.n_trees == first.n_trees + 3
    np.testing.assert_allclose(warm.margin(x, first.n_trees), first.margin(x))  # the old trees are kept as they were


def test_constant_features_and_one_class_give_a_stump_forest():
    x = np.ones((50, 3), np.float32)
    y = np.zeros(50, bool)
    y[:5] = True
    f = boosted_trees.Booster(x, y, np.ones(50), shrinkage=0.1, depth=3, min_leaf=1, l2=1.0).rounds(3)
    assert (f.feature < 0).all() and np.isfinite(f.margin(x)).all()


def test_corrupt_tree_arrays_are_refused():
    x, y = data(1)
    f = boosted_trees.Booster(x, y, np.ones(len(y)), shrinkage=0.1, depth=2, min_leaf=5, l2=1.0).rounds(2)
    arrays = f.arrays("tree_")
    bad = dict(arrays, tree_left=np.where(f.feature >= 0, 999, -1).astype(np.int32))
    with pytest.raises(ValueError, match="do not describe trees"):
        boosted_trees.Forest.from_arrays(bad, "tree_", f.base, f.depth)
    with pytest.raises(ValueError, match="differ in shape"):
        boosted_trees.Forest.from_arrays(dict(arrays, tree_value=arrays["tree_value"][:, :1]), "tree_", 0.0, 2)


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
    np.testing.assert_array_equal(tuned.forest.threshold[:back.forest.n_trees, :back.forest.threshold.shape[1]],
                                  back.forest.threshold)
    with pytest.raises(UserError, match="trained on lights"):
        ensemble.load(path, ["a", "c"])


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_own_trees_learn_as_well_as_scikit_learns_histogram_boosting(seed):
    """The same settings (depth 4 = 16 leaves, 32 bins, L2 1, >= 10 rows a leaf, shrinkage 0.1, 150
    rounds) in scikit-learn's HistGradientBoosting: our trees reach about its fit and its held-out
    ranking (README, Benchmarks, "Boosted trees", has the comparison on the real descriptors)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    x, y = data(seed, n=3000, f=8)
    tr, te = slice(0, 2000), slice(2000, None)
    ours = boosted_trees.Booster(x[tr], y[tr], np.ones(2000), shrinkage=0.1, depth=4, min_leaf=10, l2=1.0).rounds(150)
    ref = HistGradientBoostingClassifier(learning_rate=0.1, max_depth=4, max_leaf_nodes=16, min_samples_leaf=10,
                                         l2_regularization=1.0, max_bins=32, max_iter=150, early_stopping=False,
                                         random_state=0).fit(x[tr], y[tr])
    ours_loss, ref_loss = log_loss(ours.margin(x[tr]), y[tr]), log_loss(ref.decision_function(x[tr]), y[tr])
    assert ours_loss < 1.15 * ref_loss, (ours_loss, ref_loss)
    assert roc_auc_score(y[te], ours.margin(x[te])) > roc_auc_score(y[te], ref.decision_function(x[te])) - 0.01


@pytest.mark.parametrize("checkpointer, expect", [
    ({"enable_topk": True, "monitor": "val_loss", "mode": "min"}, ("val_loss", min)),
    ({"enable_topk": True, "monitor": "val_far", "mode": "min"}, ("val_far", min)),
    ({"enable_topk": True, "monitor": "val_acc", "mode": "max"}, ("val_acc", max)),
    ({"enable_topk": False, "monitor": "val_loss", "mode": "min"}, ("last", None)),
    ({}, ("last", None)),
])
def test_the_kept_epoch_is_the_one_tao_s_checkpointer_keeps(checkpointer, expect):
    """Same spec, same checkpoint on every backend: the top-k checkpointer's best epoch by its monitor
    (the earliest of equals), or the last epoch when it is off (TAO's default; docker ships the latest)."""
    x, y = data(7, n=500, f=features.n_features(2))
    spec = {"train": {"num_epochs": 6, "checkpointer": checkpointer}}
    keep = ensemble.keep_rule(spec)
    model, history = ensemble.fit(x[:350], y[:350], x[350:], y[350:], ensemble.hyperparams(spec),
                                  lights=["a", "b"], cfg=features.DEFAULT, keep=keep)
    name, pick = expect
    if name == "last":
        want = len(history) - 1
    else:
        values = [h[name] for h in history]
        best = [i for i, v in enumerate(values) if v == pick(values)]
        # the earliest of equals; for val_far, the lower validation loss first
        want = min(best, key=lambda i: (history[i]["val_loss"], i)) if name == "val_far" else best[0]
    assert model.meta["best_epoch"] == want, (history, model.meta)
    assert model.forest.n_trees == 5 * (want + 1)
    assert model.meta["val_loss"] == history[want]["val_loss"]


@pytest.mark.parametrize("checkpointer", [{"enable_topk": True, "monitor": "val_f1", "mode": "min"},
                                          {"enable_topk": True, "monitor": "val_loss", "mode": "max"}])
def test_a_checkpointer_tao_cannot_apply_is_refused_naming_the_key(checkpointer):
    with pytest.raises(UserError, match="train.checkpointer"):
        ensemble.keep_rule({"train": {"checkpointer": checkpointer}}, "spec.yaml")
