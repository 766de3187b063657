"""The boosted-tree implementations bench/embedded.py --trees compares with the toolkit's own trees.

Each candidate is a module-like namespace: ``KIND``, ``Booster(x, y, weight, *, shrinkage, depth,
min_leaf, l2, bins, seed, threads, init)`` (``.forest``, ``.z``, ``.rounds(k)``), a forest with
``n_trees``, ``margin(x, stop, start)``, ``take(k)``, ``dump()`` (the model's own bytes), ``load(raw,
n_features)`` and ``library_version()``. ``use(name)`` swaps it into ``tao_aoi.model.ensemble`` for this
process (``ensemble.boosted_trees``, through ``shim``: the library's model travels in the checkpoint's
``tree_model`` array), so the local backend, the checkpoint and the three-phase run all use it;
nothing in the product can select them. ``own`` leaves the product's module in place.

- ``own``: ``tao_aoi.model.boosted_trees`` (Newton boosting on our histogram trees); bytes = its arrays
  in an npz (``np.load(allow_pickle=False)``).
- ``lightgbm``: LightGBM, grown with ``train(init_model=...)`` then ``update()``; its text model
  (``model_to_string`` / ``Booster(model_str=...)``).
- ``xgboost``: XGBoost (``xgboost-cpu``), ``tree_method=hist``; continues with ``xgb_model``; stored
  as its JSON model (``save_raw("json")``).
- ``hgb``: scikit-learn's HistGradientBoostingClassifier, ``warm_start=True`` (raising ``max_iter``
  adds rounds; on new rows sklearn re-bins and scores the old trees on the new bins). It has no
  pickle-free format; for the bench only, its trees' node records (a numpy structured array, a
  private sklearn type) are stored in an .npz. Adopting it would mean owning that private format.
"""
from __future__ import annotations

import io
import types

import numpy as np

from tao_aoi.model import boosted_trees, ensemble

THREADS = 1  # every library on one thread, like the own trees' numpy: same model on every run

# ------------------------------------------------------------------ LightGBM


def _lgb_params(*, shrinkage: float, depth: int, min_leaf: int, l2: float, bins: int, seed: int,
                threads: int) -> dict:
    """LightGBM settings of ``defaults.LOCAL_TREES``: trees of at most ``depth`` levels, histogram
    cuts at ``bins`` quantiles; no row or feature sampling, so ``seed`` (LightGBM's master seed)
    changes nothing today and the trees depend only on the data; ``deterministic`` with a fixed
    thread count gives the same model on every run."""
    return {"objective": "binary", "learning_rate": shrinkage, "max_depth": depth, "num_leaves": 2 ** depth,
            "min_data_in_leaf": min_leaf, "lambda_l2": l2, "max_bin": bins, "seed": seed,
            "deterministic": True, "force_col_wise": True, "num_threads": threads, "verbosity": -1}


class _LgbTrees:
    """A trained LightGBM booster, read-only: margins, the first k trees, its text model."""

    def __init__(self, booster, threads: int = 1) -> None:
        self._booster = booster
        self._threads = threads

    @property
    def n_trees(self) -> int:
        return int(self._booster.current_iteration()) if self._booster is not None else 0

    def margin(self, x: np.ndarray, stop: int | None = None, start: int = 0) -> np.ndarray:
        """Log-odds of trees ``start..stop`` (all by default) for rows ``x``; margins of consecutive
        ranges add up (LightGBM folds the base rate into the first tree)."""
        stop = self.n_trees if stop is None else min(stop, self.n_trees)
        if stop <= start or len(x) == 0:  # LightGBM reads num_iteration <= 0 as "all"
            return np.zeros(len(x))
        return np.asarray(self._booster.predict(np.asarray(x, np.float64), raw_score=True, start_iteration=start,
                                                num_iteration=stop - start, num_threads=self._threads), np.float64)

    def take(self, k: int) -> "_LgbTrees":
        """The first ``k`` trees (an earlier epoch's model), as a booster of their own."""
        import lightgbm

        if k <= 0:
            return _LgbTrees(None, self._threads)
        return _LgbTrees(lightgbm.Booster(model_str=self._booster.model_to_string(num_iteration=k)), self._threads)

    def dump(self) -> bytes:
        """LightGBM's text model, what ``load`` reads back."""
        return self._booster.model_to_string().encode("utf-8") if self._booster is not None else b""


def _lgb_load(raw: bytes, n_features: int, threads: int = 1) -> _LgbTrees:
    """Trees from ``dump``; ValueError naming what is wrong. LightGBM 4.7 aborts the process on
    many damaged texts instead of raising (bench/embedded.py section 5d counts them)."""
    import lightgbm

    if not raw:
        return _LgbTrees(None, threads)
    try:
        booster = lightgbm.Booster(model_str=raw.decode("utf-8"))
    except (UnicodeDecodeError, lightgbm.basic.LightGBMError) as exc:
        raise ValueError(f"the trees' model text is not a LightGBM model ({' '.join(str(exc).split())})") from None
    if n_features is not None and booster.num_feature() != n_features:
        raise ValueError(f"the trees read {booster.num_feature()} features, the descriptors have {n_features}")
    return _LgbTrees(booster, threads)


class _LgbBooster:
    """Adds boosting rounds on one training set, from ``init``'s margin when given; ``rounds(k)``
    runs k more. ``z`` is the training rows' current margin."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, shrinkage: float, depth: int,
                 min_leaf: int, l2: float, bins: int, seed: int, threads: int, init: _LgbTrees | None = None) -> None:
        import lightgbm

        self._lgb = lightgbm
        self.x = np.asarray(x, np.float64)
        self._params = _lgb_params(shrinkage=shrinkage, depth=depth, min_leaf=min_leaf, l2=l2, bins=bins, seed=seed,
                               threads=threads)
        self._data = lightgbm.Dataset(self.x, label=np.asarray(y, np.float64), weight=np.asarray(weight, np.float64),
                                      params=self._params, free_raw_data=False)
        self._init = init if init is not None and init.n_trees else None
        self._threads = threads
        self.forest = self._init or _LgbTrees(None, threads)
        self.z = self.forest.margin(self.x)

    def rounds(self, k: int) -> _LgbTrees:
        done = self.forest.n_trees
        if self.forest._booster is None or self.forest is self._init:
            # the first rounds: LightGBM's train() merges the init model and scores the rows from it
            booster = self._lgb.train(self._params, self._data, num_boost_round=k, keep_training_booster=True,
                                      init_model=self._init._booster if self._init is not None else None)
            self.forest = _LgbTrees(booster, self._threads)
        else:
            for _ in range(k):
                if self.forest._booster.update():
                    break  # no split left that meets min_data_in_leaf
        self.z = self.z + self.forest.margin(self.x, start=done)
        return self.forest


def _lgb_version() -> str:
    """What trained the trees, for the checkpoint's metadata."""
    import lightgbm

    return f"lightgbm {lightgbm.__version__}"


LIGHTGBM = types.SimpleNamespace(KIND="lightgbm", Booster=_LgbBooster, load=_lgb_load, library_version=_lgb_version)


# ------------------------------------------------------------------ XGBoost

class _XgbTrees:
    def __init__(self, booster, base: float, n: int, threads: int) -> None:
        self._b, self._base, self._n, self._threads = booster, base, n, threads

    @property
    def n_trees(self) -> int:
        return self._n

    def margin(self, x, stop=None, start=0):
        import xgboost as xgb

        stop = self._n if stop is None else min(stop, self._n)
        if len(x) == 0:
            return np.zeros(0)
        if stop <= start:
            return np.full(len(x), self._base if start == 0 else 0.0)
        m = self._b.predict(xgb.DMatrix(np.asarray(x, np.float32), nthread=self._threads), output_margin=True,
                            iteration_range=(start, stop)).astype(np.float64)
        return m if start == 0 else m - self._base  # the base score is added to every range

    def take(self, k: int) -> "_XgbTrees":
        return _XgbTrees(self._b[:k] if k > 0 else self._b[:0] if self._n else self._b, self._base, max(k, 0),
                         self._threads)

    def dump(self) -> bytes:
        return bytes(self._b.save_raw("json"))


def _xgb_base(booster) -> float:
    import json

    cfg = json.loads(booster.save_config())
    raw = cfg["learner"]["learner_model_param"]["base_score"]
    p = float(raw.strip("[]").split(",")[0])
    return float(np.log(p / (1 - p)))


class _XgbBooster:
    def __init__(self, x, y, weight, *, shrinkage, depth, min_leaf, l2, bins, seed, threads, init=None):
        import xgboost as xgb

        self._xgb = xgb
        self.x = np.asarray(x, np.float32)
        self._data = xgb.DMatrix(self.x, label=np.asarray(y, np.float32), weight=np.asarray(weight, np.float32),
                                 nthread=threads)
        # min_leaf has no count form in XGBoost: min_child_weight bounds a leaf's hessian sum instead
        self._params = {"objective": "binary:logistic", "tree_method": "hist", "eta": shrinkage, "max_depth": depth,
                        "min_child_weight": 1.0, "lambda": l2, "max_bin": bins, "seed": seed, "nthread": threads,
                        "verbosity": 0}
        self._threads = threads
        self._init = init if init is not None and init.n_trees else None
        self._booster = None
        self.forest = self._init or _XgbTrees(None, 0.0, 0, threads)
        self.z = self.forest.margin(self.x) if self._init else np.zeros(len(self.x))

    def rounds(self, k: int):
        done = self.forest.n_trees
        if self._booster is None:
            self._booster = self._xgb.train(self._params, self._data, num_boost_round=k,
                                            xgb_model=self._init._b if self._init else None)
        else:
            for i in range(done, done + k):
                self._booster.update(self._data, i)
        n = self._booster.num_boosted_rounds()
        self.forest = _XgbTrees(self._booster, _xgb_base(self._booster), n, self._threads)
        if done == 0:
            self.z = self.forest.margin(self.x)
        else:
            self.z = self.z + self.forest.margin(self.x, start=done)
        return self.forest


def _xgb_load(raw: bytes, n_features: int, threads: int = 1):
    import xgboost as xgb

    b = xgb.Booster(params={"nthread": threads})
    try:
        b.load_model(bytearray(raw))
    except xgb.core.XGBoostError as exc:
        raise ValueError(f"not an XGBoost model ({str(exc).splitlines()[0][:120]})") from None
    if n_features is not None and b.num_features() != n_features:
        raise ValueError(f"the trees read {b.num_features()} features, the descriptors have {n_features}")
    return _XgbTrees(b, _xgb_base(b), b.num_boosted_rounds(), threads)


def _xgb_version() -> str:
    import xgboost

    return f"xgboost {xgboost.__version__}"


XGBOOST = types.SimpleNamespace(KIND="xgboost", Booster=_XgbBooster, load=_xgb_load, library_version=_xgb_version)


# ------------------------------------------------------------------ scikit-learn HistGradientBoosting

class _HgbTrees:
    def __init__(self, predictors: list, base: float, threads: int) -> None:
        self._p, self._base, self._threads = predictors, base, threads

    @property
    def n_trees(self) -> int:
        return len(self._p)

    def margin(self, x, stop=None, start=0):
        from sklearn.ensemble._hist_gradient_boosting.common import X_DTYPE

        stop = self.n_trees if stop is None else min(stop, self.n_trees)
        out = np.full(len(x), self._base if start == 0 else 0.0)
        xx = np.ascontiguousarray(x, X_DTYPE)
        empty = np.zeros((0, 8), np.uint32)
        for p in self._p[start:stop]:
            out += p.predict(xx, empty, np.zeros(xx.shape[1], np.uint32), self._threads)
        return out

    def take(self, k: int) -> "_HgbTrees":
        return _HgbTrees(self._p[:max(k, 0)], self._base, self._threads)

    def dump(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, base=np.array([self._base]), **{f"t{i}": p.nodes for i, p in enumerate(self._p)})
        return buf.getvalue()


def _hgb_predictors(est) -> list:
    return [it[0] for it in est._predictors]


class _HgbBooster:
    def __init__(self, x, y, weight, *, shrinkage, depth, min_leaf, l2, bins, seed, threads, init=None):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.x = np.asarray(x, np.float64)
        self._y, self._w, self._threads = np.asarray(y, bool), np.asarray(weight, np.float64), threads
        self._est = HistGradientBoostingClassifier(
            learning_rate=shrinkage, max_depth=depth, max_leaf_nodes=2 ** depth, min_samples_leaf=min_leaf,
            l2_regularization=l2, max_bins=bins, early_stopping=False, warm_start=True, random_state=seed, max_iter=0)
        self._init = init if init is not None and init.n_trees else None
        self.forest = self._init or _HgbTrees([], 0.0, threads)
        self.z = self.forest.margin(self.x) if self._init else np.zeros(len(self.x))

    def rounds(self, k: int):
        from threadpoolctl import threadpool_limits

        done = self.forest.n_trees
        with threadpool_limits(self._threads, "openmp"):
            if self._est.max_iter == 0:
                if self._init is None:
                    self._est.set_params(max_iter=k)
                    self._est.fit(self.x, self._y, sample_weight=self._w)
                else:  # sklearn's warm start, as if this estimator had trained the init trees
                    self._est.set_params(max_iter=1)
                    self._est.fit(self.x, self._y, sample_weight=self._w)
                    self._est._predictors = [[p] for p in self._init._p]
                    self._est._baseline_prediction = np.array([[self._init._base]])
                    self._est.train_score_ = self._est.validation_score_ = np.array([])
                    self._est.set_params(max_iter=len(self._init._p) + k)
                    self._est.fit(self.x, self._y, sample_weight=self._w)
            else:
                self._est.set_params(max_iter=self._est.max_iter + k)
                self._est.fit(self.x, self._y, sample_weight=self._w)
        self.forest = _HgbTrees(_hgb_predictors(self._est), float(self._est._baseline_prediction.ravel()[0]),
                                self._threads)
        self.z = self.forest.margin(self.x) if done == 0 else self.z + self.forest.margin(self.x, start=done)
        return self.forest


def _hgb_load(raw: bytes, n_features: int, threads: int = 1):
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            base = float(z["base"][0])
            nodes = [z[f"t{i}"] for i in range(len(z.files) - 1)]
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f"not HGB node records ({exc})") from None
    if any(n.dtype != PREDICTOR_RECORD_DTYPE for n in nodes):
        raise ValueError("node records of another layout")
    if n_features is not None and any((n["feature_idx"][n["is_leaf"] == 0] >= n_features).any() for n in nodes):
        raise ValueError("a tree splits on a feature the descriptors do not have")
    empty = np.zeros((0, 8), np.uint32)
    return _HgbTrees([TreePredictor(n, empty, empty) for n in nodes], base, threads)


def _hgb_version() -> str:
    import sklearn

    return f"scikit-learn {sklearn.__version__}"


HGB = types.SimpleNamespace(KIND="hgb", Booster=_HgbBooster, load=_hgb_load, library_version=_hgb_version)


# ------------------------------------------------------------------ the toolkit's own trees

class _OwnTrees:
    def __init__(self, forest) -> None:
        self.f = forest

    @property
    def n_trees(self) -> int:
        return self.f.n_trees

    def margin(self, x, stop=None, start=0):
        return self.f.margin(x, stop, start)

    def take(self, k: int) -> "_OwnTrees":
        return _OwnTrees(self.f.take(k))

    def dump(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, base=np.array([self.f.base]), depth=np.array([self.f.depth]), **self.f.arrays("tree_"))
        return buf.getvalue()


class _OwnBooster:
    def __init__(self, x, y, weight, *, shrinkage, depth, min_leaf, l2, bins, seed, threads, init=None):
        if bins != boosted_trees.BINS:
            raise SystemExit(f"the own trees have {boosted_trees.BINS} bins, not {bins}")
        self._b = boosted_trees.Booster(x, y, weight, shrinkage=shrinkage, depth=depth, min_leaf=min_leaf, l2=l2,
                                        init=init.f if init is not None else None)  # deterministic: no seed
        self.forest = _OwnTrees(self._b.forest)

    @property
    def z(self):
        return self._b.z

    def rounds(self, k):
        self.forest = _OwnTrees(self._b.rounds(k))
        return self.forest


def _own_load(raw: bytes, n_features: int | None, threads: int = 1):
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    f = boosted_trees.Forest.from_arrays(arrays, "tree_", float(arrays["base"][0]), int(arrays["depth"][0]))
    if n_features is not None and f.n_trees and int(f.feature.max()) >= n_features:
        raise ValueError("a tree splits on a feature the descriptors do not have")
    return _OwnTrees(f)


OWN = types.SimpleNamespace(KIND="own", Booster=_OwnBooster, load=_own_load,
                            library_version=lambda: "own histogram trees (model/boosted_trees.py)")


# ------------------------------------------------------------------ into the ensemble

def shim(impl) -> types.SimpleNamespace:
    """``impl`` behind the API ``ensemble`` calls on ``boosted_trees`` (``Booster``, ``Forest.from_arrays``,
    a forest's ``arrays``/``base``/``depth``/``feature``/``margin``/``take``/``n_trees``)."""
    class Forest:
        base, depth = 0.0, 0
        feature = np.array([-1])  # ensemble.load's feature check; impl.load checks the model itself

        def __init__(self, trees) -> None:
            self.t = trees

        @property
        def n_trees(self) -> int:
            return self.t.n_trees

        def margin(self, x, trees=None, start=0):
            return self.t.margin(x, trees, start)

        def take(self, k):
            return Forest(self.t.take(k))

        def arrays(self, prefix):
            return {f"{prefix}model": np.frombuffer(self.t.dump(), np.uint8)}

        @classmethod
        def from_arrays(cls, arrays, prefix, base, depth):
            return cls(impl.load(arrays[f"{prefix}model"].tobytes(), None))

    class Booster:
        def __init__(self, x, y, weight, *, shrinkage, depth, min_leaf, l2, init=None):
            self._b = impl.Booster(x, y, weight, shrinkage=shrinkage, depth=depth, min_leaf=min_leaf, l2=l2,
                                   bins=boosted_trees.BINS, seed=0, threads=THREADS,
                                   init=init.t if init is not None else None)
            self.forest = Forest(self._b.forest)

        @property
        def z(self):
            return self._b.z

        def rounds(self, k):
            self.forest = Forest(self._b.rounds(k))
            return self.forest

    return types.SimpleNamespace(Forest=Forest, Booster=Booster, BINS=boosted_trees.BINS)


def model_bytes(forest) -> bytes:
    """The trees' own bytes of a loaded ensemble's forest (the product's, or a shim's)."""
    return forest.t.dump() if hasattr(forest, "t") else _OwnTrees(forest).dump()


NAMES = ("own", "lightgbm", "xgboost", "hgb")


def get(name: str):
    if name == "own":
        return OWN
    if name == "lightgbm":
        return LIGHTGBM
    if name == "xgboost":
        try:
            import xgboost  # noqa: F401
        except ImportError:
            raise SystemExit("--trees xgboost needs XGBoost's CPU wheel: .venv/bin/pip install xgboost-cpu==3.2.0 "
                             "(not a dependency of the toolkit)") from None
        return XGBOOST
    if name == "hgb":
        return HGB
    raise SystemExit(f"--trees: unknown implementation {name!r}; choose from {', '.join(NAMES)}")


def use(name: str):
    """Swap implementation ``name`` into the ensemble for this process; returns it."""
    impl = get(name)
    ensemble.boosted_trees = boosted_trees if name == "own" else shim(impl)
    return impl
