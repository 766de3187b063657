"""Golden-vs-test change descriptors: the local model's input and the mining embedder.

Per row, every light's test image is compared with its golden after the corrections real AOI
needs, so a good part's difference is small without hiding a defect:

1. illumination gain per light, first from the outer ring of the crop, then refined by robust
   least squares over the aligned crop (the 90% best-fitting pixels), so exposure drift cancels
   wherever the part sits;
2. camera offset, one per row over all lights (integer SSD search + parabolic sub-pixel
   refinement), the golden resampled bilinearly onto the test;
3. placement tolerance: the change is measured against the golden's 3x3 min/max envelope, so an
   edge that moved by a pixel is not a change, while a particle, a missing body or a bridge is.

The descriptors are position-free summaries of that change, so the same defect gives the same row
wherever the component sits in the crop, in whatever orientation (bench/embedded.py measured the
pooled-grid features of version 1 at KPI FAR 99.8% on a workspace with parts anywhere in the crop):
per light, the strongest local excess and deficit (3x3 and 5x5 windows), their mean, the area above
four levels, four quantiles of the signed difference and the strongest adjacent excess+deficit
pair (a displacement); across lights, the k-th strongest light at the strongest place (a change
every light sees versus glare in one light); the colour signature of the change and of what the
golden showed there; and the shape of the change (area, spread, distance from the part).

The embedder for mining is the same descriptor, log-compressed (``embedding_from_features``);
mining standardises targets and pool by the pool's own statistics before cosine (the settings say
so), so every descriptor counts and the floor has the same meaning on any workspace.

Decoding dominates the cost, so rows are cached in-process, keyed by every file's path, mtime and
size (an edited image is recomputed); AutoML trials and repeated stages decode each image once.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tao_aoi.data import changenet_csv
from tao_aoi.errors import UserError

EMBEDDER = "tao-aoi-local-change"
FEATURE_VERSION = 3
CHUNK_ROWS = 256
MAX_SIZE = 96                  # larger crops are resized to this working resolution
LEVELS = (0.04, 0.08, 0.16, 0.32)  # change levels (fraction of full scale) whose area is counted
QUANTILES = (0.001, 0.01, 0.99, 0.999)
PER_LIGHT = 17                 # descriptors per light (see _chunk_vectors)
SHAPE = 4
BARE_FACTOR = 3.0              # bare board: golden structure at most this many times the crop's median


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that changes the numbers; recorded in checkpoints and embedding settings."""

    size: int = 48        # working resolution (images are resized to size x size when they differ)
    border: int = 3       # pixels at each edge left out of the offset search (the change is measured everywhere)
    ring: int = 6         # outer ring width of the first illumination estimate
    max_shift: int = 2    # integer alignment search radius (px)
    version: int = FEATURE_VERSION

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_size(cls, size: int) -> "FeatureConfig":
        """The settings for crops of ``size`` px (capped at MAX_SIZE): the alignment search covers
        about 5% of the crop, the registration error of AOI crop cutting (a radius of 3 px on the
        72 px field workspace let misregistration pass for a 2.5 px SHIFT: KPI FAR 26% vs 3% at 4)."""
        size = int(min(max(size, 16), MAX_SIZE))
        shift = max(2, round(size / 18))
        return cls(size=size, border=shift + 1, ring=max(3, size // 12), max_shift=shift)

    @classmethod
    def from_dict(cls, data: dict, where: str | Path) -> "FeatureConfig":
        try:
            cfg = cls(**{k: int(v) for k, v in data.items()})
        except (TypeError, ValueError):
            raise UserError(f"{where}: feature settings {data!r} are not ones this toolkit writes") from None
        if cfg.version != FEATURE_VERSION:
            raise UserError(f"{where}: feature version {cfg.version} is not {FEATURE_VERSION}; retrain or re-embed "
                            f"with this toolkit")
        if not 16 <= cfg.size <= MAX_SIZE or not 0 < cfg.ring < cfg.size // 2 \
                or not 0 <= cfg.max_shift < cfg.border < cfg.size // 4:
            raise UserError(f"{where}: size {cfg.size} / ring {cfg.ring} / border {cfg.border} / max_shift "
                            f"{cfg.max_shift} do not fit together")
        return cfg


DEFAULT = FeatureConfig()


def n_features(n_lights: int, cfg: FeatureConfig = DEFAULT) -> int:
    return n_lights * (PER_LIGHT + 2 + 6) + SHAPE


def embedding_dim(n_lights: int, cfg: FeatureConfig = DEFAULT) -> int:
    return n_features(n_lights, cfg)


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


def config_for(df: pd.DataFrame, images_root: str | Path, lights: Sequence[str], ext: str) -> FeatureConfig:
    """Settings for the crops of ``df`` (from its first test image's size)."""
    from PIL import Image, UnidentifiedImageError

    if df.empty:
        return DEFAULT
    path = image_paths(df.iloc[:1], images_root, lights[:1], ext, "input_path")[0, 0]
    try:
        with Image.open(path) as im:
            return FeatureConfig.for_size(max(im.size))
    except FileNotFoundError:
        raise UserError(f"image {path} does not exist; restore it or drop its row from the CSV") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"image {path} cannot be read ({' '.join(str(exc).split())}); replace the file or drop "
                        f"its row from the CSV") from None


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


def _align(test: np.ndarray, gold: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The golden resampled onto the test, (n, L, C, S, S) float32, and where it is extrapolated:
    (n, S, S) True in the band the shifted golden does not cover (its edge replicated there).

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

    dy, dx = refine(iy, True), refine(ix, False)
    my = _resample_matrices(dy, s)[:, None, None]
    mx = _resample_matrices(dx, s)[:, None, None]
    return np.matmul(np.matmul(my, gold), mx.transpose(0, 1, 2, 4, 3)), _extrapolated(dy, dx, s)


def _extrapolated(dy: np.ndarray, dx: np.ndarray, s: int) -> np.ndarray:
    """(n, S, S): pixels whose resampled golden reads outside the golden (aligned(p) = golden(p - shift))."""
    p = np.arange(s, dtype=np.float32)

    def outside(d: np.ndarray) -> np.ndarray:  # (n, S): p - d below 0 or above s - 1 (bilinear reads floor and +1)
        src = p[None, :] - d[:, None].astype(np.float32)
        return (src < 0) | (src > s - 1)

    return outside(dy)[:, :, None] | outside(dx)[:, None, :]


def _box(a: np.ndarray, k: int) -> np.ndarray:
    """k x k box mean over the last two axes, same size (edges replicated), by summed-area table."""
    r = k // 2
    lead = [(0, 0)] * (a.ndim - 2)
    c = np.pad(a, lead + [(r, r), (r, r)], mode="edge").cumsum(-1, dtype=np.float32).cumsum(-2)
    c = np.pad(c, lead + [(1, 0), (1, 0)])
    h, w = a.shape[-2:]
    return (c[..., k:k + h, k:k + w] - c[..., :h, k:k + w] - c[..., k:k + h, :w] + c[..., :h, :w]) / np.float32(k * k)


def _line(a: np.ndarray) -> np.ndarray:
    """The stronger of the 3-pixel horizontal and vertical means (edges replicated): a change one
    pixel wide keeps its strength here, where a 3x3 mean divides it by three."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = a.shape[-2:]
    across = (p[..., 1:h + 1, :w] + p[..., 1:h + 1, 1:w + 1] + p[..., 1:h + 1, 2:w + 2]) / np.float32(3)
    down = (p[..., :h, 1:w + 1] + p[..., 1:h + 1, 1:w + 1] + p[..., 2:h + 2, 1:w + 1]) / np.float32(3)
    return np.maximum(across, down)


def _envelope(a: np.ndarray, r: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(2r+1) x (2r+1) max and min filters over the last two axes (edges replicated), separable."""
    h, w = a.shape[-2:]
    out = []
    for op in (np.maximum, np.minimum):
        m = a
        for axis in (-2, -1):
            pad = [(0, 0)] * a.ndim
            pad[axis] = (r, r)
            p = np.pad(m, pad, mode="edge")
            m = m.copy()
            for k in range(2 * r + 1):
                win = p[..., k:k + h, :] if axis == -2 else p[..., :, k:k + w]
                op(m, win, out=m)
        out.append(m)
    return out[0], out[1]


def _kth(a: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles along the last axis by partition (nearest rank): (len(qs), ...)."""
    m = a.shape[-1]
    ks = sorted({min(m - 1, max(0, int(round(q * (m - 1))))) for q in qs})
    part = np.partition(a, ks, axis=-1)
    return np.stack([part[..., min(m - 1, max(0, int(round(q * (m - 1)))))] for q in qs])


def _chunk_vectors(test_u8: np.ndarray, gold_u8: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Descriptor rows for one chunk of uint8 images (n, L, S, S, 3); layout as in n_features:
    PER_LIGHT per light, then 2 consensus values per light, 3 signature and 3 context values per
    light, then SHAPE."""
    test = np.moveaxis(test_u8, -1, 2).astype(np.float32, order="C") * np.float32(1 / 255)   # (n, L, C, S, S)
    gold = np.moveaxis(gold_u8, -1, 2).astype(np.float32, order="C") * np.float32(1 / 255)
    n, n_l, n_c, s, _ = test.shape
    q = cfg.ring

    def ring_mean(img: np.ndarray) -> np.ndarray:
        total = img.sum(axis=(-2, -1)) - img[..., q:s - q, q:s - q].sum(axis=(-2, -1))
        return total / (s * s - (s - 2 * q) ** 2)

    test *= (ring_mean(gold).mean(-1) / np.maximum(ring_mean(test).mean(-1), 1e-3))[..., None, None, None]
    gold, band = _align(test, gold, cfg)
    for _ in range(2):  # robust least-squares gain per light on the 90% best-fitting pixels
        resid = np.abs(test - gold).max(2).reshape(n, n_l, -1)
        keep = (resid <= _kth(resid, (0.9,))[0][..., None]).reshape(n, n_l, 1, s, s)
        num = (keep * test * gold).sum((2, 3, 4))
        den = (keep * test * test).sum((2, 3, 4))
        test *= np.clip(num / np.maximum(den, 1e-6), 0.7, 1.4)[..., None, None, None]
    inner = s
    diff = test - gold
    # The change is measured over the whole crop, so a particle touching the crop's edge counts. Where
    # the shifted golden is extrapolated (a band as wide as the offset) the tolerance widens to what
    # the golden shows within the search radius, so a structure cut by the edge is no change there.
    hi, lo = _envelope(gold)
    if band.any():
        wide_hi, wide_lo = _envelope(gold, cfg.max_shift + 1)
        edge = band[:, None, None]
        hi, lo = np.where(edge, wide_hi, hi), np.where(edge, wide_lo, lo)
    diff = np.where(band[:, None, None], 0.0, diff).astype(np.float32)
    excess = np.maximum(test - hi, 0).max(2)            # (n, L, S', S'): brighter than any golden neighbour
    deficit = np.maximum(lo - test, 0).max(2)
    change = np.maximum(excess, deficit)
    flat = lambda a: a.reshape(n, n_l, -1)             # noqa: E731
    per_light = []
    box5 = {}
    for name, m in (("excess", excess), ("deficit", deficit)):
        box5[name] = _box(m, 5)
        per_light += [flat(_box(m, 3)).max(-1), flat(box5[name]).max(-1), flat(m).mean(-1)]
    change3 = _box(change, 3)
    per_light += [(flat(change3) > t).mean(-1) for t in LEVELS]
    per_light += list(_kth(flat(diff.mean(2)), QUANTILES))
    per_light.append(flat(np.minimum(box5["excess"], box5["deficit"])).max(-1))
    # On bare board (no golden structure within a pixel): solder run out of a pad, a particle; a change
    # there is not a part's nuisance (marking, lot colour, placement), however strong that is elsewhere.
    board_px = np.median(gold.reshape(n, n_l, n_c, -1), -1)
    structure = np.abs(gold - board_px[..., None, None]).sum((1, 2))                  # (n, S', S')
    bare = structure <= BARE_FACTOR * np.median(structure.reshape(n, -1), -1)[:, None, None]
    per_light += [flat(_line(m) * bare[:, None]).max(-1) for m in (excess, deficit)]
    # Consensus: the k-th strongest light at the strongest place (k = all lights ... any light).
    consensus = [np.sort(c, axis=1).reshape(n, n_l, -1).max(-1) for c in (change3, _box(change, 5))]
    weight = change3.sum(1)                                            # (n, S', S') all-light change
    wn = weight / np.maximum(weight.sum((-2, -1), keepdims=True), 1e-6)
    # (a product and a per-row sum rather than einsum, whose summation order depends on the batch:
    # a row's descriptors must not depend on which rows share its chunk)
    signature = (diff * wn[:, None, None]).sum((-2, -1)).reshape(n, -1)
    context = (gold * wn[:, None, None]).sum((-2, -1)).reshape(n, -1)
    # Shape of the change and its distance from the part (the golden's structure against the board).
    yy, xx = np.meshgrid(np.arange(inner, dtype=np.float32), np.arange(inner, dtype=np.float32), indexing="ij")

    def moments(w: np.ndarray):
        w = w / np.maximum(w.sum((-2, -1), keepdims=True), 1e-9)
        cy, cx = (w * yy).sum((-2, -1)), (w * xx).sum((-2, -1))
        dy, dx = yy - cy[:, None, None], xx - cx[:, None, None]
        return w, cy, cx, (w * dy * dy).sum((-2, -1)), (w * dx * dx).sum((-2, -1)), (w * dy * dx).sum((-2, -1))

    peak = weight.reshape(n, -1).max(-1)
    _, cy, cx, vyy, vxx, vxy = moments(weight * weight)
    half_tr, det = (vyy + vxx) / 2, vyy * vxx - vxy * vxy
    disc = np.sqrt(np.maximum(half_tr * half_tr - det, 0))
    board = np.median(gold.reshape(n, n_l, n_c, -1), -1)
    structure = np.abs(gold - board[..., None, None]).sum((1, 2))
    _, sy, sx, syy, sxx, _ = moments(structure)
    radius = np.sqrt(syy + sxx)
    shape = np.stack([(weight > 0.5 * peak[:, None, None]).mean((-2, -1)), np.sqrt(half_tr + disc),
                      np.sqrt(np.maximum(half_tr - disc, 0)), np.hypot(cy - sy, cx - sx) / np.maximum(radius, 1.0)], 1)
    return np.concatenate([np.stack(per_light, -1).reshape(n, -1), np.stack(consensus, -1).reshape(n, -1),
                           signature, context, shape], axis=1).astype(np.float32)


def embedding_from_features(x: np.ndarray, n_lights: int, cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """The mining embedding of descriptor rows: magnitudes log-compressed (a change twice as strong
    is not twice as different a defect), the signature scaled to the magnitudes' range. Mining
    standardises by the pool before cosine (``embedder_settings`` says ``standardise: pool``)."""
    x = np.asarray(x, np.float32)
    n = len(x)
    pl = x[:, :PER_LIGHT * n_lights].reshape(n, n_lights, PER_LIGHT)
    q0 = 10 + len(QUANTILES)

    def squash(a: np.ndarray) -> np.ndarray:
        return np.sign(a) * np.log1p(np.abs(a) * 20.0)

    rest = x[:, PER_LIGHT * n_lights:]
    consensus, rest = rest[:, :2 * n_lights], rest[:, 2 * n_lights:]
    signature, context, shape = rest[:, :3 * n_lights], rest[:, 3 * n_lights:6 * n_lights], rest[:, 6 * n_lights:]
    return np.concatenate([squash(pl[:, :, :10]).reshape(n, -1), squash(pl[:, :, 10:q0]).reshape(n, -1),
                           squash(pl[:, :, q0:]).reshape(n, -1), squash(consensus), signature * 5.0, context, shape],
                          axis=1)


# ---------------------------------------------------------------------------------------- public

def one_blas_thread():
    """Context: BLAS on one thread. Our matrices are small, where a threaded BLAS only adds hand-off
    cost, and on a shared 2-core host its spinning threads slowed training twentyfold (measured:
    0.7 s vs 23 s for one demo run)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def row_features(df: pd.DataFrame, images_root: str | Path, lights: Sequence[str], ext: str,
                 cfg: FeatureConfig | None = None, *, progress=None) -> np.ndarray:
    """Descriptor matrix (rows, n_features) for a ChangeNet frame with input_path, golden_path, object_name.

    ``cfg`` None = the settings for these crops (``config_for``). Missing or unreadable images raise
    UserError naming the file.
    """
    n = len(df)
    n_lights = len(lights)
    cfg = cfg or config_for(df, images_root, lights, ext)
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
               cfg: FeatureConfig | None = None) -> np.ndarray:
    """Embeddings (rows, embedding_dim) for mining, before the pool standardisation mining applies."""
    return embedding_from_features(row_features(df, images_root, lights, ext, cfg), len(lights))


def embedder_settings(lights: Sequence[str], ext: str, cfg: FeatureConfig = DEFAULT) -> dict:
    """What an embedding file was made with; two files are comparable only when these are equal."""
    from tao_aoi import defaults

    return {"embedder": EMBEDDER, "metric": "cosine", "normalised": False, "standardise": "pool",
            "lights": list(lights), "image_ext": ext, "dim": embedding_dim(len(lights), cfg),
            "features": cfg.as_dict(), "min_similarity": defaults.MIN_SIMILARITY_BY_EMBEDDER[EMBEDDER],
            "input": "position-free golden-vs-test change descriptors, all lights"}
