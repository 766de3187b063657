"""Golden-vs-test difference features (the local model's input) and the mining embedder.

Per row, every light's test image is compared with its golden after three corrections that real
AOI needs and that make a good part's difference small without hiding a defect:

1. illumination gain, estimated on the outer ring of the image (board only, so a defect on the
   component cannot bias it);
2. orientation: rows whose golden structure spreads along y are transposed, so a part placed at
   90 degrees is compared in the same frame as its unrotated twin (half the patterns to learn);
3. camera offset, estimated once per row over all lights (integer search + parabolic sub-pixel
   refinement), then the golden is resampled bilinearly onto the test.

The residual difference is pooled on a coarse grid (signed and absolute, per channel and light)
and summarised by a few global statistics; the golden's pooled intensity is added so the model
knows which structure a difference sits on. Everything is numpy over a whole chunk of rows.

The embedder for mining is the signed pooled difference, mirrored into a canonical pose and
L2-normalised: two rows are close in cosine when the same kind of change sits at the same place
(up to a mirror), whatever the component looks like.

Decoding images dominates the cost, so results are cached in-process per row, keyed by every
file's path, mtime and size (an edited image is recomputed); AutoML trials and repeated stages in
one process therefore decode each image once.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tao_aoi import changenet_csv
from tao_aoi.errors import UserError

EMBEDDER = "tao-aoi-local-diff"
FEATURE_VERSION = 1
CHUNK_ROWS = 512


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that changes the numbers; recorded in checkpoints and embedding settings."""

    size: int = 48        # working resolution (images are resized to size x size when they differ)
    border: int = 3       # pixels dropped at each edge after alignment
    grid: int = 6         # pooling cells per side
    ring: int = 6         # outer ring width used to estimate illumination gain
    max_shift: int = 2    # integer alignment search radius (px)
    version: int = FEATURE_VERSION

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str | Path) -> "FeatureConfig":
        try:
            cfg = cls(**{k: int(v) for k, v in data.items()})
        except (TypeError, ValueError):
            raise UserError(f"{where}: feature settings {data!r} are not ones this toolkit writes") from None
        if cfg.version != FEATURE_VERSION:
            raise UserError(f"{where}: feature version {cfg.version} is not {FEATURE_VERSION}; retrain or re-embed "
                            f"with this toolkit")
        try:
            cfg.cell
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
        if not 0 < cfg.ring < cfg.size // 2 or not 0 <= cfg.max_shift < cfg.border + cfg.size // 4:
            raise UserError(f"{where}: ring {cfg.ring} / max_shift {cfg.max_shift} do not fit a {cfg.size} px image")
        return cfg

    @property
    def cell(self) -> int:
        inner = self.size - 2 * self.border
        if inner <= 0 or inner % self.grid:
            raise ValueError(f"size-2*border ({inner}) must be a positive multiple of grid ({self.grid})")
        return inner // self.grid


DEFAULT = FeatureConfig()


def n_features(n_lights: int, cfg: FeatureConfig = DEFAULT) -> int:
    cells = cfg.grid * cfg.grid
    return n_lights * (cells * 3 * 2 + cells + 4)


def embedding_dim(n_lights: int, cfg: FeatureConfig = DEFAULT) -> int:
    return n_lights * cfg.grid * cfg.grid * 3


# ---------------------------------------------------------------------------------------- cache

class _RowCache:
    """Least-recently-used row vectors, bounded by entry count."""

    def __init__(self, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self._data: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> np.ndarray | None:
        row = self._data.get(key)
        if row is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return row

    def put(self, key: tuple, row: np.ndarray) -> None:
        self._data[key] = row
        self._data.move_to_end(key)
        while len(self._data) > self.max_rows:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


CACHE = _RowCache()


# ---------------------------------------------------------------------------------------- decoding

def _decode(path: str, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"image {path} does not exist; restore it or drop its row from the CSV") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"image {path} cannot be read ({' '.join(str(exc).split()) or type(exc).__name__}); "
                        f"replace the file or drop its row from the CSV") from None


def _file_signatures(paths: np.ndarray) -> np.ndarray:
    """'path|mtime_ns|size' per file (stat'ed once per unique path); a missing file is a UserError."""
    uniq, inverse = np.unique(paths, return_inverse=True)
    sigs = []
    for p in uniq:
        try:
            st = os.stat(p)
        except OSError:
            raise UserError(f"image {p} does not exist; restore it or drop its row from the CSV") from None
        sigs.append(f"{p}|{st.st_mtime_ns}|{st.st_size}")
    return np.asarray(sigs, dtype=object)[inverse.reshape(paths.shape)]


def image_paths(df: pd.DataFrame, images_root: str | Path, lights: Sequence[str], ext: str,
                column: str) -> np.ndarray:
    """(rows, lights) array of image files for ``column`` (input_path or golden_path)."""
    return np.stack([changenet_csv.image_files(df, images_root, column, light, ext) for light in lights], axis=1)


# ---------------------------------------------------------------------------------------- maths

def _resample_matrices(shift: np.ndarray, s: int) -> np.ndarray:
    """(n, s, s) bilinear matrices M with (M @ v)[p] = v(p - shift), edges clamped."""
    n = len(shift)
    k = np.floor(shift).astype(np.int64)
    f = (shift - k).astype(np.float32)
    m = np.zeros((n, s, s), np.float32)
    rows = np.broadcast_to(np.arange(n)[:, None], (n, s))
    dst = np.broadcast_to(np.arange(s)[None, :], (n, s))
    src = dst - k[:, None]
    np.add.at(m, (rows, dst, np.clip(src, 0, s - 1)), np.broadcast_to(1.0 - f[:, None], (n, s)))
    np.add.at(m, (rows, dst, np.clip(src - 1, 0, s - 1)), np.broadcast_to(f[:, None], (n, s)))
    return m


def _align(test: np.ndarray, gold: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The golden resampled onto the test: (n, L, C, S, S) float32.

    The offset is one per row (all lights share the camera), found by SSD over integer shifts of
    the grey images on the inner region, refined to sub-pixel with a parabola per axis; the
    resampling is two batched matrix products (separable bilinear interpolation).
    """
    n, _, _, s, _ = gold.shape
    r, b = cfg.max_shift, cfg.border
    tg = test[:, :, 0] + test[:, :, 1] + test[:, :, 2]
    gg = gold[:, :, 0] + gold[:, :, 1] + gold[:, :, 2]
    gp = np.pad(gg, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
    t_in = tg[:, :, b:s - b, b:s - b]
    w = 2 * r + 1
    ssd = np.empty((n, w, w), np.float32)
    for iy in range(w):
        for ix in range(w):
            # golden content at (y - dy, x - dx) against the test at (y, x), dy = iy - r
            g = gp[:, :, w - 1 - iy:w - 1 - iy + s, w - 1 - ix:w - 1 - ix + s][:, :, b:s - b, b:s - b]
            ssd[:, iy, ix] = ((t_in - g) ** 2).sum(axis=(1, 2, 3))
    iy, ix = np.divmod(ssd.reshape(n, -1).argmin(1), w)
    rows = np.arange(n)

    def refine(centre: np.ndarray, along_y: bool) -> np.ndarray:
        lo, hi = centre - 1, centre + 1
        inside = (lo >= 0) & (hi < w)
        lo, hi = np.clip(lo, 0, w - 1), np.clip(hi, 0, w - 1)
        if along_y:
            a, c, d = ssd[rows, lo, ix], ssd[rows, centre, ix], ssd[rows, hi, ix]
        else:
            a, c, d = ssd[rows, iy, lo], ssd[rows, iy, centre], ssd[rows, iy, hi]
        den = a - 2 * c + d
        frac = np.where(inside & (den > 1e-12), 0.5 * (a - d) / np.maximum(den, 1e-12), 0.0)
        return (centre - r) + np.clip(frac, -0.5, 0.5)

    my = _resample_matrices(refine(iy, True), s)[:, None, None]
    mx = _resample_matrices(refine(ix, False), s)[:, None, None]
    return np.matmul(np.matmul(my, gold), mx.transpose(0, 1, 2, 4, 3))


def _pool_matrix(inner: int, grid: int) -> np.ndarray:
    """(grid, inner) averaging matrix: P @ img @ P.T = cell means."""
    cell = inner // grid
    return np.kron(np.eye(grid, dtype=np.float32), np.full((1, cell), 1.0 / cell, np.float32))


def _chunk_vectors(test_u8: np.ndarray, gold_u8: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Feature rows for one chunk of uint8 images (n, L, S, S, 3); layout as counted in n_features:
    signed pooled diff, absolute pooled diff (both n x L x 3 x grid x grid), golden structure
    (L x grid x grid), then 4 statistics per light."""
    test = np.moveaxis(test_u8, -1, 2).astype(np.float32, order="C") * np.float32(1 / 255)   # (n, L, C, S, S)
    gold = np.moveaxis(gold_u8, -1, 2).astype(np.float32, order="C") * np.float32(1 / 255)
    n, n_lights, _, s, _ = test.shape
    q, b = cfg.ring, cfg.border

    def ring_mean(img: np.ndarray) -> np.ndarray:
        total = img.sum(axis=(-2, -1)) - img[..., q:s - q, q:s - q].sum(axis=(-2, -1))
        return total / (s * s - (s - 2 * q) ** 2)

    board = ring_mean(gold)                                                 # (n, L, C)
    gain = board / np.maximum(ring_mean(test), 1e-3)
    test *= gain[..., None, None]
    # Orientation: turn each row so the golden's structure (contrast against the board) spreads
    # along x; a component rotated by 90 degrees then looks like its unrotated twin.
    contrast = np.abs(gold - board[..., None, None]).sum(axis=(1, 2))    # (n, S, S)
    centred = (np.arange(s, dtype=np.float32) - (s - 1) / 2) ** 2
    vertical = (contrast.sum(2) @ centred) > (contrast.sum(1) @ centred)
    if vertical.any():
        test[vertical] = test[vertical].swapaxes(-1, -2)
        gold[vertical] = gold[vertical].swapaxes(-1, -2)
    gold = _align(test, gold, cfg)
    diff = (test - gold)[..., b:s - b, b:s - b]
    pool = _pool_matrix(s - 2 * b, cfg.grid)
    signed = pool @ diff @ pool.T                                           # (n, L, C, g, g)
    adiff = np.abs(diff)
    absolute = pool @ adiff @ pool.T
    inner_gold = gold[..., b:s - b, b:s - b]
    structure = pool @ ((inner_gold[:, :, 0] + inner_gold[:, :, 1] + inner_gold[:, :, 2]) / 3) @ pool.T
    grey = ((adiff[:, :, 0] + adiff[:, :, 1] + adiff[:, :, 2]) / 3).reshape(n, n_lights, -1)
    k = max(1, grey.shape[-1] // 100)
    top = -np.partition(-grey, k - 1, axis=-1)[..., :k].mean(-1)       # mean of the top 1% pixels
    stats = np.stack([grey.mean(-1), top, diff.reshape(n, n_lights, -1).std(-1),
                      absolute.reshape(n, n_lights, -1).max(-1)], axis=-1)
    return np.concatenate([signed.reshape(n, -1), absolute.reshape(n, -1),
                           structure.reshape(n, -1), stats.reshape(n, -1)], axis=1).astype(np.float32)


def embedding_from_features(x: np.ndarray, n_lights: int, cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """The mining embedding: the signed pooled difference block of a feature row, mirrored into a
    canonical pose (its first moments along x and y made non-negative: a part shifted left and one
    shifted right, or a bridge above and one below the body, become the same picture), unit length."""
    g = cfg.grid
    e = x[:, :embedding_dim(n_lights, cfg)].reshape(len(x), n_lights, 3, g, g).astype(np.float32)
    pos = np.arange(g, dtype=np.float32) - (g - 1) / 2
    flip_x = np.einsum("nlcij,j->n", e, pos) < 0
    e[flip_x] = e[flip_x][..., :, ::-1]
    flip_y = np.einsum("nlcij,i->n", e, pos) < 0
    e[flip_y] = e[flip_y][..., ::-1, :]
    e = e.reshape(len(x), -1)
    norm = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.maximum(norm, 1e-12)


# ---------------------------------------------------------------------------------------- public

def one_blas_thread():
    """Context: BLAS on one thread. Our matrices are small (48 px, batches of 64), where a threaded
    BLAS only adds hand-off cost, and on a shared 2-core host its spinning threads slowed training
    twentyfold (measured: 0.7 s vs 23 s for one demo run)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")



def row_features(df: pd.DataFrame, images_root: str | Path, lights: Sequence[str], ext: str,
                 cfg: FeatureConfig = DEFAULT, *, progress=None) -> np.ndarray:
    """Feature matrix (rows, n_features) for a ChangeNet frame with input_path, golden_path, object_name.

    Missing or unreadable images raise UserError naming the file.
    """
    n = len(df)
    n_lights = len(lights)
    out = np.empty((n, n_features(n_lights, cfg)), np.float32)
    if n == 0:
        return out
    test_p = image_paths(df, images_root, lights, ext, "input_path")
    gold_p = image_paths(df, images_root, lights, ext, "golden_path")
    sigs = _file_signatures(np.concatenate([test_p, gold_p], axis=1))
    tag = (EMBEDDER, tuple(sorted(cfg.as_dict().items())))
    keys = [(tag, *row) for row in sigs.tolist()]
    todo = []
    for i, key in enumerate(keys):
        hit = CACHE.get(key)
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit
    decoded: dict[str, np.ndarray] = {}
    with one_blas_thread():
        _fill(out, todo, keys, test_p, gold_p, decoded, cfg, progress)
    return out


def _fill(out, todo, keys, test_p, gold_p, decoded, cfg, progress) -> None:
    for start in range(0, len(todo), CHUNK_ROWS):
        idx = np.asarray(todo[start:start + CHUNK_ROWS])
        for p in np.unique(np.concatenate([test_p[idx].ravel(), gold_p[idx].ravel()])):
            if p not in decoded:
                decoded[p] = _decode(p, cfg.size)
        test = np.stack([np.stack([decoded[p] for p in row]) for row in test_p[idx]])
        gold = np.stack([np.stack([decoded[p] for p in row]) for row in gold_p[idx]])
        vec = _chunk_vectors(test, gold, cfg)
        out[idx] = vec
        for j, i in enumerate(idx):
            CACHE.put(keys[i], vec[j])
        for p in test_p[idx].ravel():  # test images are used by one row; goldens are shared, keep them
            decoded.pop(p, None)
        if progress is not None:
            progress(min(start + CHUNK_ROWS, len(todo)), len(todo))


def embeddings(df: pd.DataFrame, images_root: str | Path, lights: Sequence[str], ext: str,
               cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Unit-length embeddings (rows, embedding_dim) for mining; cosine = dot product."""
    return embedding_from_features(row_features(df, images_root, lights, ext, cfg), len(lights), cfg)


def embedder_settings(lights: Sequence[str], ext: str, cfg: FeatureConfig = DEFAULT) -> dict:
    """What an embedding file was made with; two files are comparable only when these are equal."""
    return {"embedder": EMBEDDER, "metric": "cosine", "normalised": True, "lights": list(lights),
            "image_ext": ext, "dim": embedding_dim(len(lights), cfg), "features": cfg.as_dict(),
            "input": "signed golden-vs-test difference, all lights"}
