"""Gradient-boosted regression trees for the local model, kept as plain arrays.

Newton boosting of the log-loss with histogram trees grown level by level (XGBoost's split rule:
gain = G_L^2/(H_L+l2) + G_R^2/(H_R+l2) - G^2/(H+l2) over gradient/hessian sums, candidate cuts at
the training features' quantiles, leaves = -G/(H+l2) times the shrinkage). One level of every node
is a single bincount over (node, feature, bin), so a tree costs a few milliseconds (scikit-learn's
exact splitter took ~60 ms per tree on the demo, most of an AutoML trial). Trees are plain arrays
(feature, threshold, children, value per node, heap order, padded to one width), and scoring is a
vectorised walk down every tree at once, so a checkpoint is data, never a pickled estimator.

Why our own and not a library: README (Benchmarks, "Boosted trees") holds the comparison
``bench/embedded.py --trees`` made with LightGBM, XGBoost and scikit-learn's HistGradientBoosting:
both LightGBM and XGBoost train faster, but neither delivered a KPI at least as good on every one of
the four three-phase runs, and HistGradientBoosting has no pickle-free format.

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

    def margin(self, x: np.ndarray, trees: int | None = None, start: int = 0) -> np.ndarray:
        """Log-odds of trees ``start..trees`` (all by default) for rows ``x``; the base counts
        only with ``start`` 0, so margins of consecutive ranges add up."""
        t = self.n_trees if trees is None else trees
        out = np.full(len(x), self.base if start == 0 else 0.0, np.float64)
        if t <= start or len(x) == 0:
            return out
        xf = np.asarray(x, np.float32)
        feat, thr, left, right, val = (a[start:t] for a in (self.feature, self.threshold, self.left, self.right,
                                                             self.value))
        rows = np.arange(len(x))[:, None]
        cols = np.arange(t - start)[None, :]
        node = np.zeros((len(x), t - start), np.int64)
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


BINS = 32  # histogram bins per feature (31 candidate cuts)


def _cuts(x: np.ndarray) -> np.ndarray:
    """(features, BINS - 1) candidate thresholds: distinct training quantiles, padded with +inf."""
    qs = np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1], axis=0, method="lower").T.astype(np.float64)
    cuts = np.full((x.shape[1], BINS - 1), np.inf)
    for f in range(x.shape[1]):
        u = np.unique(qs[f])
        u = u[u < x[:, f].max()]  # a cut at the maximum would leave the right side empty
        cuts[f, :len(u)] = u
    return cuts


class Booster:
    """Adds boosting rounds to a forest on one training set; ``rounds(k)`` runs k more. Nothing is
    sampled (every row, every feature, every cut), so there is no seed: the trees depend only on the
    data, and ``train.seed`` varies the MLP."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, shrinkage: float, depth: int,
                 min_leaf: int, l2: float, init: Forest | None = None) -> None:
        self.x = np.asarray(x, np.float32)
        self.y = y.astype(np.float64)
        self.w = weight.astype(np.float64)
        self.shrinkage, self.depth, self.min_leaf, self.l2 = shrinkage, depth, min_leaf, l2
        self.cuts = _cuts(self.x)
        n, n_f = self.x.shape
        # bin b holds cuts[b-1] < x <= cuts[b]: "bin <= b" is "x <= cuts[b]"
        self.bins = np.stack([np.searchsorted(self.cuts[f], self.x[:, f].astype(np.float64), side="left")
                              for f in range(n_f)], 1).astype(np.int64)
        self.keys = self.bins + np.arange(n_f)[None, :] * BINS          # (n, F) histogram slot per row
        if init is None:
            p0 = float(np.clip(np.average(self.y, weights=self.w), 1e-6, 1 - 1e-6))
            init = Forest.empty(np.log(p0 / (1 - p0)))
        self.forest = init
        self.z = init.margin(self.x)

    def _tree(self, g: np.ndarray, h: np.ndarray) -> tuple:
        n, n_f = self.x.shape
        width = 2 ** (self.depth + 1) - 1
        feature = np.full(width, -1, np.int32)
        threshold = np.zeros(width)
        node = np.zeros(n, np.int64)                 # heap index of each row's node
        open_ = np.zeros(width, bool)
        open_[0] = True
        slots = n_f * BINS
        for level in range(self.depth):
            first, count = 2 ** level - 1, 2 ** level
            rows = np.flatnonzero(open_[node])
            if not len(rows):
                break
            local = node[rows] - first
            key = (local[:, None] * slots + self.keys[rows]).ravel()
            size = count * slots
            hist = [np.bincount(key, np.repeat(v[rows], n_f), size).reshape(count, n_f, BINS)
                    for v in (g, h, np.ones(n))]
            gl, hl, cl = (np.cumsum(a, axis=2)[:, :, :-1] for a in hist)
            gt, ht, ct = (a.sum(2)[:, :1, None] for a in hist)       # per node totals (same for every feature)
            gr, hr, cr = gt - gl, ht - hl, ct - cl
            gain = gl * gl / (hl + self.l2) + gr * gr / (hr + self.l2) - gt * gt / (ht + self.l2)
            gain = np.where((cl >= self.min_leaf) & (cr >= self.min_leaf) & np.isfinite(self.cuts)[None], gain, -np.inf)
            flat = gain.reshape(count, -1)
            best = flat.argmax(1)
            split = (flat[np.arange(count), best] > 1e-12) & open_[first:first + count]
            f_best, b_best = np.divmod(best, BINS - 1)
            ids = first + np.flatnonzero(split)
            feature[ids] = f_best[split]
            threshold[ids] = self.cuts[f_best[split], b_best[split]]
            open_[first:first + count] = False
            if level + 1 < self.depth:
                open_[2 * ids + 1] = open_[2 * ids + 2] = True
            moving = rows[split[local]]
            go_left = self.bins[moving, feature[node[moving]]] <= b_best[node[moving] - first]
            node[moving] = 2 * node[moving] + np.where(go_left, 1, 2)
        value = self.shrinkage * -np.bincount(node, g, width) / (np.bincount(node, h, width) + self.l2)
        inner = feature >= 0
        idx = np.arange(width)
        left = np.where(inner, 2 * idx + 1, -1).astype(np.int32)
        right = np.where(inner, 2 * idx + 2, -1).astype(np.int32)
        value = np.where(inner, 0.0, value)
        depth = int(np.floor(np.log2(int(np.flatnonzero(inner).max()) + 1)) + 1) if inner.any() else 0
        return feature, threshold, left, right, value, depth, node

    def rounds(self, k: int) -> Forest:
        made = []
        for _ in range(k):
            p = 1.0 / (1.0 + np.exp(-np.clip(self.z, -40, 40)))
            g = self.w * (p - self.y)
            h = np.maximum(self.w * p * (1 - p), 1e-9)
            *tree, leaf = self._tree(g, h)
            made.append(tuple(tree))
            self.z += tree[4][leaf]
        self.forest = _append(self.forest, made)
        return self.forest
