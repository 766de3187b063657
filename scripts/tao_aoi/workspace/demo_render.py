"""Synthetic PCB component scenes: footprints, defect families and a vectorised renderer.

Every scene is an analytic function of continuous coordinates (soft-edged rectangles and ellipses,
a sinusoidal board texture), so sub-pixel offsets (camera jitter, placement tolerance, a slight
SHIFT) render exactly and a whole batch is drawn with a handful of numpy array operations. Each
component is drawn under every light from the same geometry; only the material colours change.

Defect families and what makes an instance easy or hard:

- ``MISSING``: body absent (hard: a glue dot of body-like colour remains).
- ``BRIDGE``: a solder band joining the two pads (hard: thin and faint).
- ``EXCESS_SOLDER``: an oversized solder blob (hard: one pad, about 1.4x).
- ``SHIFT``: body displaced against its pads (hard: 2-2.5 px; good parts stay within 0.95 px).
- ``TOMBSTONE``: one end lifted, body foreshortened, the lifted pad without a joint (hard: part-lift).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

LIGHTS = ("SolderLight", "UniformLight")
FAMILIES = ("MISSING", "BRIDGE", "EXCESS_SOLDER", "SHIFT", "TOMBSTONE")
SEVERITIES = ("easy", "hard")
TEXTURE_WAVES = 4
TRACES = 2

# Footprints: two-terminal chips. Columns: body_len, body_wid, pad_len, pad_wid, pad_off, kind.
# kind 0 = resistor (dark body, metal end caps), 1 = capacitor (tan body), 2 = diode (blue, stripe).
FOOTPRINTS = {
    "R": (13.0, 7.0, 6.0, 8.0, 9.0, 0),
    "C": (14.0, 8.0, 6.0, 9.0, 9.5, 1),
    "D": (15.0, 7.0, 6.5, 8.0, 10.0, 2),
}
FOOTPRINT_NAMES = tuple(FOOTPRINTS)
_FP = np.array([v[:5] for v in FOOTPRINTS.values()], dtype=np.float32)
_FP_KIND = np.array([v[5] for v in FOOTPRINTS.values()], dtype=np.int64)

# Material colours per light (RGB in 0..1). SolderLight is a low-angle ring: solder and metal
# glint, everything matte goes dark. UniformLight is diffuse: true colours.
_COLOURS = {
    "SolderLight": {
        "board": (0.04, 0.11, 0.06), "trace": (0.07, 0.18, 0.09), "pad": (0.55, 0.50, 0.34),
        "solder": (0.96, 0.95, 0.92), "cap": (0.45, 0.45, 0.46), "glue": (0.16, 0.05, 0.04),
        "stripe": (0.30, 0.30, 0.32), "mark": (0.40, 0.40, 0.40),
        "body": ((0.05, 0.05, 0.05), (0.26, 0.21, 0.15), (0.06, 0.08, 0.16)),
    },
    "UniformLight": {
        "board": (0.10, 0.36, 0.16), "trace": (0.16, 0.46, 0.21), "pad": (0.78, 0.66, 0.36),
        "solder": (0.72, 0.72, 0.74), "cap": (0.62, 0.62, 0.64), "glue": (0.55, 0.16, 0.10),
        "stripe": (0.86, 0.86, 0.86), "mark": (0.85, 0.85, 0.85),
        "body": ((0.10, 0.10, 0.11), (0.62, 0.52, 0.36), (0.16, 0.22, 0.46)),
    },
}


@dataclass
class Scenes:
    """Per-sample scene parameters; every field is an array with the batch as its first axis."""

    footprint: np.ndarray      # int index into FOOTPRINT_NAMES
    vertical: np.ndarray       # bool: pads along y instead of x
    tex_freq: np.ndarray       # (n, TEXTURE_WAVES, 2) board texture wave vectors
    tex_phase: np.ndarray      # (n, TEXTURE_WAVES)
    trace_pos: np.ndarray      # (n, TRACES) trace offsets from the centre (one horizontal, one vertical)
    jitter: np.ndarray         # (n, 2) camera offset in px (whole scene)
    gain: np.ndarray           # (n, len(LIGHTS)) illumination gain per light
    body_shift: np.ndarray     # (n, 2) body offset against its pads, along (u, v)
    body_present: np.ndarray   # (n,) 1 = body placed
    lift: np.ndarray           # (n,) tombstone lift 0..1
    lift_side: np.ndarray      # (n,) +1 / -1: which end is lifted
    solder: np.ndarray         # (n, 2) fillet scale per pad (1 = nominal)
    bridge: np.ndarray         # (n, 2) bridge (width px, amplitude 0..1)
    bridge_side: np.ndarray    # (n,) +1 / -1
    glue: np.ndarray           # (n,) glue-dot amplitude
    body_tint: np.ndarray      # (n,) body colour factor (component lot)
    mark: np.ndarray           # (n, 3) body marking (amplitude, du, dv)
    noise: np.ndarray          # (n,) pixel noise sigma

    def take(self, index: np.ndarray) -> "Scenes":
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def layout(rng: np.random.Generator, n: int) -> Scenes:
    """Nominal, defect-free scenes with random footprints and board textures (golden geometry)."""
    return Scenes(
        footprint=rng.integers(0, len(FOOTPRINT_NAMES), n),
        vertical=rng.random(n) < 0.5,
        tex_freq=rng.uniform(-0.9, 0.9, (n, TEXTURE_WAVES, 2)).astype(np.float32),
        tex_phase=rng.uniform(0, 2 * np.pi, (n, TEXTURE_WAVES)).astype(np.float32),
        trace_pos=rng.uniform(14.0, 20.0, (n, TRACES)).astype(np.float32) * rng.choice([-1, 1], (n, TRACES)),
        jitter=np.zeros((n, 2), np.float32),
        gain=np.ones((n, len(LIGHTS)), np.float32),
        body_shift=np.zeros((n, 2), np.float32),
        body_present=np.ones(n, np.float32),
        lift=np.zeros(n, np.float32),
        lift_side=np.ones(n, np.float32),
        solder=np.ones((n, 2), np.float32),
        bridge=np.zeros((n, 2), np.float32),
        bridge_side=np.ones(n, np.float32),
        glue=np.zeros(n, np.float32),
        body_tint=np.ones(n, np.float32),
        mark=np.tile(np.float32([0.6, 0.0, 0.0]), (n, 1)),
        noise=np.full(n, 0.004, np.float32),
    )


def add_nuisance(s: Scenes, rng: np.random.Generator) -> None:
    """What separates a good production image from its golden: camera jitter, illumination,
    noise, solder volume, placement tolerance, and the component lot's body colour and marking.
    Applied to every test image, good or not; the baseline model must learn to ignore all of it."""
    n = len(s.footprint)
    s.jitter = rng.uniform(-1.4, 1.4, (n, 2)).astype(np.float32)
    s.gain = rng.uniform(0.9, 1.1, (n, len(LIGHTS))).astype(np.float32)
    s.noise = rng.uniform(0.008, 0.016, n).astype(np.float32)
    s.solder = rng.uniform(0.82, 1.18, (n, 2)).astype(np.float32)
    s.body_shift = np.clip(rng.normal(0.0, 0.35, (n, 2)), -0.95, 0.95).astype(np.float32)
    s.body_tint = rng.uniform(0.85, 1.15, n).astype(np.float32)
    s.mark = np.stack([rng.uniform(0.2, 0.9, n), rng.uniform(-1.0, 1.0, n), rng.uniform(-0.7, 0.7, n)],
                      1).astype(np.float32)


def add_defects(s: Scenes, family: np.ndarray, hard: np.ndarray, rng: np.random.Generator) -> None:
    """Turn the scenes whose ``family`` is a defect name into that defect (``hard`` = subtle)."""
    n = len(family)
    sign = rng.choice(np.float32([-1.0, 1.0]), n)

    m = family == "MISSING"
    s.body_present[m] = 0.0
    s.glue[m & hard] = rng.uniform(0.75, 0.95, n)[m & hard]

    m = family == "BRIDGE"
    width = np.where(hard, rng.uniform(1.1, 1.5, n), rng.uniform(2.5, 3.5, n))
    amp = np.where(hard, rng.uniform(0.65, 0.85, n), rng.uniform(0.9, 1.0, n))
    s.bridge[m] = np.stack([width, amp], 1)[m]
    s.bridge_side[m] = sign[m]

    m = family == "EXCESS_SOLDER"
    both = rng.uniform(1.8, 2.2, n)
    one = rng.uniform(1.4, 1.55, n)
    pad = rng.integers(0, 2, n)
    excess = np.where(hard[:, None], np.where(np.arange(2)[None, :] == pad[:, None], one[:, None], s.solder),
                      both[:, None])
    s.solder[m] = excess[m]

    m = family == "SHIFT"
    dist = np.where(hard, rng.uniform(1.6, 2.1, n), rng.uniform(3.5, 5.0, n)) * sign
    axis = rng.integers(0, 2, n)
    shift = np.zeros((n, 2), np.float32)
    shift[np.arange(n), axis] = dist
    s.body_shift[m] = shift[m]

    m = family == "TOMBSTONE"
    s.lift[m] = np.where(hard, rng.uniform(0.3, 0.42, n), rng.uniform(0.9, 1.0, n))[m]
    s.lift_side[m] = sign[m]
    lifted_pad = (sign > 0).astype(np.int64)  # lift_side +1 lifts the pad at +u (index 1)
    scale = s.solder.copy()
    scale[np.arange(n), lifted_pad] = np.where(hard, 0.7, 0.5)
    s.solder[m] = scale[m]


def _box(u: np.ndarray, v: np.ndarray, half_u, half_v) -> np.ndarray:
    """Soft (1 px ramp) axis-aligned box coverage, 0..1."""
    return np.clip(half_u + 0.5 - np.abs(u), 0.0, 1.0) * np.clip(half_v + 0.5 - np.abs(v), 0.0, 1.0)


def _blob(u: np.ndarray, v: np.ndarray, ru, rv) -> np.ndarray:
    """Soft ellipse coverage, 0..1, about one pixel of ramp at the rim."""
    r = np.sqrt((u / ru) ** 2 + (v / rv) ** 2)
    return np.clip((1.0 - r) * np.minimum(ru, rv) + 0.5, 0.0, 1.0)


_MATERIALS = ("board", "trace", "pad", "glue", "solder", "body0", "body1", "body2", "cap", "stripe", "mark")


def _palette(light: str) -> np.ndarray:
    """(materials, 3) colour table for one light."""
    c = _COLOURS[light]
    return np.asarray([c[m] if not m.startswith("body") else c["body"][int(m[4:])] for m in _MATERIALS],
                      np.float32)


def render(s: Scenes, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw every scene under every light: {light: uint8 array (n, size, size, 3)}.

    Geometry is computed once as per-material coverage weights (painter's order, each layer
    occluding the ones below); each light is then one matrix product with its colour table.
    """
    n = len(s.footprint)
    e = (slice(None), None, None)  # per-sample scalar -> broadcast over the image
    grid = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
    x = grid[None, None, :] - s.jitter[:, 0][e]
    y = grid[None, :, None] - s.jitter[:, 1][e]
    vert = s.vertical[e]
    u, v = np.where(vert, y, x), np.where(vert, x, y)
    fp = _FP[s.footprint]
    body_len, body_wid, pad_len, pad_wid, pad_off = (fp[:, i][e] for i in range(5))
    kind = _FP_KIND[s.footprint]

    texture = np.zeros((n, size, size), np.float32)
    for k in range(TEXTURE_WAVES):
        texture += np.sin(s.tex_freq[:, k, 0][e] * x + s.tex_freq[:, k, 1][e] * y + s.tex_phase[:, k][e])
    texture *= 0.012
    trace = np.maximum(_box(0 * x, y - s.trace_pos[:, 0][e], 99.0, 1.0),
                       _box(x - s.trace_pos[:, 1][e], 0 * y, 1.0, 99.0))

    pads, fillet = [], []
    for i, side in enumerate((-1.0, 1.0)):
        pu = u - side * pad_off
        pads.append(_box(pu, v, pad_len / 2, pad_wid / 2))
        scale = s.solder[:, i][e]
        grow = np.maximum(scale - 1.0, 0.0)
        # The fillet hugs the pad; extra volume bulges outward (away from the body) and sideways.
        cu = pu - side * grow * pad_len * 0.35
        f = _blob(cu, v, pad_len * 0.5 * scale, pad_wid * 0.5 * (0.92 + 0.55 * grow))
        slope = np.clip(0.65 + 0.35 * side * pu / pad_len, 0.4, 1.0)  # glint grows toward the outer end
        fillet.append(f * slope)
    pad_m = np.maximum(pads[0], pads[1])
    solder_m = np.clip(fillet[0] + fillet[1], 0.0, 1.0)

    width, amp = s.bridge[:, 0][e], s.bridge[:, 1][e]
    bridge_m = _box(u, v - s.bridge_side[e] * (body_wid / 2 + 1.2), pad_off, width / 2) * amp
    solder_m = np.maximum(solder_m, np.where(width > 0, bridge_m, 0.0))

    lift, side = s.lift[e], s.lift_side[e]
    blen = body_len * (1.0 - 0.6 * lift)
    bu = u - s.body_shift[:, 0][e] + side * 0.3 * lift * body_len
    bv = v - s.body_shift[:, 1][e]
    body_m = _box(bu, bv, blen / 2, body_wid / 2) * s.body_present[e]
    cap_len = np.where(kind == 0, 2.0, 0.0)[e]
    caps_m = body_m * (np.abs(bu) > blen / 2 - cap_len)
    stripe_m = body_m * ((kind == 2)[e] & (bu < -blen / 2 + 3.0) & (bu > -blen / 2 + 1.5))
    glue_m = _blob(u, v, 3.5, 2.5) * s.glue[e]
    mu, mv = bu - s.mark[:, 1][e], bv - s.mark[:, 2][e]
    mark_m = body_m * s.mark[:, 0][e] * np.maximum(_box(mu - 2.0, mv, 0.8, 1.5), _box(mu + 1.5, mv, 1.2, 1.5))

    # Painter's order, top layer first: each layer takes what is still visible.
    weights = np.zeros((n, size, size, len(_MATERIALS)), np.float32)
    visible = np.ones((n, size, size), np.float32)
    bodies = [body_m * (kind == k)[e] for k in range(3)]
    layers = [("mark", mark_m), ("stripe", stripe_m), ("cap", caps_m), ("body0", bodies[0]), ("body1", bodies[1]),
              ("body2", bodies[2]), ("solder", solder_m), ("glue", glue_m), ("pad", pad_m), ("trace", trace)]
    for name, mask in layers:
        weights[..., _MATERIALS.index(name)] = mask * visible
        visible *= 1.0 - mask
    weights[..., 5:8] *= s.body_tint[:, None, None, None]
    weights[..., 0] = visible
    texture *= visible

    out: dict[str, np.ndarray] = {}
    for li, light in enumerate(LIGHTS):
        img = weights @ _palette(light)
        img += texture[..., None]
        img *= s.gain[:, li][:, None, None, None]
        img += rng.standard_normal(img.shape, dtype=np.float32) * s.noise[:, None, None, None]
        out[light] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out
