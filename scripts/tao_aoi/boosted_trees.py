"""Gradient-boosted regression trees for the local model, kept as plain arrays.

Newton boosting of the log-loss: each round fits a scikit-learn regression tree to the Newton step
(-gradient / hessian, weighted by the hessian) and stores its leaves' regularised values
(sum of -gradient / (sum of hessian + l2), times the shrinkage). Only the arrays are kept
(feature, threshold, children, value per node, padded to one width), and scoring is our own
vectorised walk down every tree at once, so a checkpoint is data, never a pickled estimator.

Why trees beside the MLP: a tree ensemble does not extrapolate. A change larger than anything in
training lands in the same leaves as the largest training changes (defects), where an MLP can
carry a linear trend far past the data and call a particle it never saw a certain PASS.
Fine-tuning continues boosting: the loaded trees stay and new rounds fit the new data from their
margin, so a DEFT iteration refines the model instead of replacing it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Forest:
    """Trees as arrays: (trees, nodes) each; a leaf has feature -1 and children -1."""

    base: float
    feature: np.ndarray      # int32
    threshold: np.ndarray    # float64: go left when x <= threshold (x compared as float32, as fitted)
    left: np.ndarray         # int32
    right: np.ndarray        # int32
    value: np.ndarray        # float64 leaf contribution to the margin
    depth: int

    @classmethod
    def empty(cls, base: float) -> "Forest":
        z = np.zeros((0, 1))
        return cls(float(base), z.astype(np.int32), z, z.astype(np.int32), z.astype(np.int32), z, 0)

    @property
    def n_trees(self) -> int:
        return int(self.feature.shape[0])

    def margin(self, x: np.ndarray, trees: int | None = None) -> np.ndarray:
        """Log-odds of the first ``trees`` trees (all by default) for rows ``x``."""
        t = self.n_trees if trees is None else trees
        out = np.full(len(x), self.base, np.float64)
        if t == 0 or len(x) == 0:
            return out
        xf = np.asarray(x, np.float32)
        feat, thr, left, right, val = (a[:t] for a in (self.feature, self.threshold, self.left, self.right, self.value))
        rows = np.arange(len(x))[:, None]
        cols = np.arange(t)[None, :]
        node = np.zeros((len(x), t), np.int64)
        for _ in range(self.depth):
            f = feat[cols, node]
            inner = f >= 0
            go_left = xf[rows, np.maximum(f, 0)] <= thr[cols, node]
            node = np.where(inner, np.where(go_left, left[cols, node], right[cols, node]), node)
        return out + val[cols, node].sum(1)

    def take(self, trees: int) -> "Forest":
        """The first ``trees`` trees (an earlier epoch's model)."""
        return Forest(self.base, *(a[:trees].copy() for a in (self.feature, self.threshold, self.left, self.right,
                                                               self.value)), self.depth)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}feature": self.feature, f"{prefix}threshold": self.threshold, f"{prefix}left": self.left,
                f"{prefix}right": self.right, f"{prefix}value": self.value}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str, base: float, depth: int) -> "Forest":
        f = cls(float(base), arrays[f"{prefix}feature"].astype(np.int32),
                arrays[f"{prefix}threshold"].astype(np.float64), arrays[f"{prefix}left"].astype(np.int32),
                arrays[f"{prefix}right"].astype(np.int32), arrays[f"{prefix}value"].astype(np.float64), int(depth))
        shapes = {a.shape for a in (f.feature, f.threshold, f.left, f.right, f.value)}
        if len(shapes) != 1 or f.feature.ndim != 2:
            raise ValueError("tree arrays differ in shape")
        n_nodes = f.feature.shape[1]
        inner = f.feature >= 0
        if ((inner & ((f.left < 0) | (f.left >= n_nodes) | (f.right < 0) | (f.right >= n_nodes))).any()
                or not np.isfinite(f.value).all() or not np.isfinite(f.threshold[inner]).all()):
            raise ValueError("tree arrays do not describe trees")
        return f


def _append(forest: Forest, trees: list[tuple]) -> Forest:
    """Pad ``trees`` (feature, threshold, left, right, value arrays each) and the forest to one width."""
    width = max([forest.feature.shape[1]] + [len(t[0]) for t in trees])
    depth = max([forest.depth] + [t[5] for t in trees])

    def pad(a: np.ndarray, fill) -> np.ndarray:
        out = np.full((a.shape[0], width), fill, a.dtype)
        out[:, :a.shape[1]] = a
        return out

    new = [np.stack([np.pad(t[i], (0, width - len(t[i])), constant_values=fill) for t in trees]).astype(dt)
           for i, (fill, dt) in enumerate(((-1, np.int32), (0.0, np.float64), (-1, np.int32), (-1, np.int32),
                                           (0.0, np.float64)))]
    old = [pad(forest.feature, -1), pad(forest.threshold, 0.0), pad(forest.left, -1), pad(forest.right, -1),
           pad(forest.value, 0.0)]
    return Forest(forest.base, *(np.concatenate([o, n]) for o, n in zip(old, new)), depth)


class Booster:
    """Adds boosting rounds to a forest on one training set; ``rounds(k)`` runs k more."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, shrinkage: float, depth: int,
                 min_leaf: int, l2: float, seed: int, init: Forest | None = None) -> None:
        self.x = np.asarray(x, np.float32)
        self.y = y.astype(np.float64)
        self.w = weight.astype(np.float64)
        self.shrinkage, self.depth, self.min_leaf, self.l2 = shrinkage, depth, min_leaf, l2
        self.rng = np.random.RandomState(seed)
        if init is None:
            p0 = float(np.clip(np.average(self.y, weights=self.w), 1e-6, 1 - 1e-6))
            init = Forest.empty(np.log(p0 / (1 - p0)))
        self.forest = init
        self.z = init.margin(self.x)

    def rounds(self, k: int) -> Forest:
        from sklearn.tree import DecisionTreeRegressor

        made = []
        for _ in range(k):
            p = 1.0 / (1.0 + np.exp(-np.clip(self.z, -40, 40)))
            g = self.w * (p - self.y)
            h = np.maximum(self.w * p * (1 - p), 1e-9)
            tree = DecisionTreeRegressor(max_depth=self.depth, min_samples_leaf=self.min_leaf,
                                         random_state=self.rng.randint(1 << 30))
            tree.fit(self.x, -g / h, sample_weight=h)
            t = tree.tree_
            leaf = tree.apply(self.x)
            value = self.shrinkage * np.bincount(leaf, -g, t.node_count) / (np.bincount(leaf, h, t.node_count) + self.l2)
            feature = np.where(t.children_left >= 0, t.feature, -1)
            value = np.where(feature < 0, value, 0.0)
            made.append((feature, t.threshold, t.children_left, t.children_right, value, int(t.max_depth)))
            self.z += value[leaf]
        self.forest = _append(self.forest, made)
        return self.forest
