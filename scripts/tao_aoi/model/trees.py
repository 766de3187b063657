"""The ensemble's boosted trees: LightGBM, grown a few rounds at a time, kept as LightGBM's text model.

Why trees beside the MLP: a tree ensemble does not extrapolate. A change larger than anything in
training lands in the same leaves as the largest training changes (defects), where an MLP can carry
a linear trend far past the data and call a particle it never saw a certain PASS.

Why LightGBM: README (Benchmarks, "Boosted trees") holds the table `bench/embedded.py --trees` measured
against our former own histogram trees, XGBoost and scikit-learn's HistGradientBoosting. Fine-tuning
continues boosting (LightGBM's ``init_model``): the loaded trees stay as they were and new rounds fit
the new rows from their margin, so a DEFT iteration refines the model instead of replacing it. The
model is stored as LightGBM's own text format (``model_to_string``), never a pickle.

LightGBM 4.7 aborts the whole process (``std::terminate``) on some malformed model texts instead of
raising, so ``ensemble.load`` hands ``load`` only a text whose sha256 matches the one recorded when
it was written: an edited or damaged model is refused with a message; only a file forged with a
matching digest could reach the parser (the checkpoint is data a user trusts, like the spec).

This module is the trees' whole interface to ``ensemble.py``: ``KIND``, ``Booster`` (whose
``forest`` is a ``Trees``), ``load`` and ``library_version``; ``bench/embedded.py --trees`` swaps in
other implementations of the same names (``bench/tree_candidates.py``).
"""
from __future__ import annotations

import numpy as np

KIND = "lightgbm"


def _params(*, shrinkage: float, depth: int, min_leaf: int, l2: float, bins: int, seed: int,
            threads: int) -> dict:
    """LightGBM settings of ``defaults.LOCAL_TREES``: trees of at most ``depth`` levels, histogram
    cuts at ``bins`` quantiles; no row or feature sampling, so ``seed`` (LightGBM's master seed)
    changes nothing today and the trees depend only on the data; ``deterministic`` with a fixed
    thread count gives the same model on every run."""
    return {"objective": "binary", "learning_rate": shrinkage, "max_depth": depth, "num_leaves": 2 ** depth,
            "min_data_in_leaf": min_leaf, "lambda_l2": l2, "max_bin": bins, "seed": seed,
            "deterministic": True, "force_col_wise": True, "num_threads": threads, "verbosity": -1}


class Trees:
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

    def take(self, k: int) -> "Trees":
        """The first ``k`` trees (an earlier epoch's model), as a booster of their own."""
        import lightgbm

        if k <= 0:
            return Trees(None, self._threads)
        return Trees(lightgbm.Booster(model_str=self._booster.model_to_string(num_iteration=k)), self._threads)

    def dump(self) -> bytes:
        """LightGBM's text model, what ``load`` reads back."""
        return self._booster.model_to_string().encode("utf-8") if self._booster is not None else b""


def load(raw: bytes, n_features: int, threads: int = 1) -> Trees:
    """Trees from ``Trees.dump`` (checked against its sha256 first, see above); ValueError naming
    what is wrong."""
    import lightgbm

    if not raw:
        return Trees(None, threads)
    try:
        booster = lightgbm.Booster(model_str=raw.decode("utf-8"))
    except (UnicodeDecodeError, lightgbm.basic.LightGBMError) as exc:
        raise ValueError(f"the trees' model text is not a LightGBM model ({' '.join(str(exc).split())})") from None
    if booster.num_feature() != n_features:
        raise ValueError(f"the trees read {booster.num_feature()} features, the descriptors have {n_features}")
    return Trees(booster, threads)


class Booster:
    """Adds boosting rounds on one training set, from ``init``'s margin when given; ``rounds(k)``
    runs k more. ``z`` is the training rows' current margin."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, shrinkage: float, depth: int,
                 min_leaf: int, l2: float, bins: int, seed: int, threads: int, init: Trees | None = None) -> None:
        import lightgbm

        self._lgb = lightgbm
        self.x = np.asarray(x, np.float64)
        self._params = _params(shrinkage=shrinkage, depth=depth, min_leaf=min_leaf, l2=l2, bins=bins, seed=seed,
                               threads=threads)
        self._data = lightgbm.Dataset(self.x, label=np.asarray(y, np.float64), weight=np.asarray(weight, np.float64),
                                      params=self._params, free_raw_data=False)
        self._init = init if init is not None and init.n_trees else None
        self._threads = threads
        self.forest = self._init or Trees(None, threads)
        self.z = self.forest.margin(self.x)

    def rounds(self, k: int) -> Trees:
        done = self.forest.n_trees
        if self.forest._booster is None or self.forest is self._init:
            # the first rounds: LightGBM's train() merges the init model and scores the rows from it
            booster = self._lgb.train(self._params, self._data, num_boost_round=k, keep_training_booster=True,
                                      init_model=self._init._booster if self._init is not None else None)
            self.forest = Trees(booster, self._threads)
        else:
            for _ in range(k):
                if self.forest._booster.update():
                    break  # no split left that meets min_data_in_leaf
        self.z = self.z + self.forest.margin(self.x, start=done)
        return self.forest


def library_version() -> str:
    """What trained the trees, for the checkpoint's metadata."""
    import lightgbm

    return f"lightgbm {lightgbm.__version__}"
