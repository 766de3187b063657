"""Field-style AOI crops: a height-and-material model of a board lit by three AOI lights.

A second, independent synthetic generator (``field_workspace.py`` writes the workspace) built to
look like crops from a production line rather than like the demo's tidy scenes:

- the crop is cut around the component's CAD position with an arbitrary margin, so the part sits
  anywhere in the crop, in any of four orientations, with neighbouring parts, vias, traces and
  silkscreen around it;
- each pixel has a height and a material; every light is a reflectance model over the surface
  normal (coaxial white light: flat metal shines, slopes are dark; a low-angle blue ring: fillet
  slopes and edges glow; a high-angle red ring in between, at low contrast), so one defect looks
  different in every light and the lights disagree on what is bright;
- production nuisance on good parts: crop registration error, placement tolerance (offset and a
  degree or two of rotation), solder volume, component lot colour and marking, per-light exposure,
  focus blur, sensor noise, JPEG, and a specular glare spot in one light only;
- defect families whose position varies with the part or not at all: foreign material anywhere in
  the crop (some of it cut by the crop's edge) and a polarity stripe on the wrong end, beside the
  classic placement/solder families; excess solder is either a swollen fillet or a thin tongue of
  solder running out beyond the pad (``FORMS``: what the truth file records per defect).

Everything is computed in continuous coordinates (signed-distance shapes, a value-noise board
texture), so sub-pixel offsets render exactly and a batch is a few dozen numpy array operations.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

SIZE = 72
LIGHTS = ("Coax", "LowRing", "HighRing")
KINDS = ("R", "C", "D", "Q")          # chip resistor, chip capacitor, polarised diode, SOT-23 transistor
KIND_SHARE = (0.35, 0.30, 0.20, 0.15)
FAMILIES = ("MISSING", "BRIDGE", "EXCESS_SOLDER", "SHIFT", "TOMBSTONE", "POLARITY", "FOREIGN_MATERIAL")
# Which part kinds a family can occur on (polarity needs a marked part, a tombstone a two-terminal chip).
ELIGIBLE = {"POLARITY": ("D",), "TOMBSTONE": ("R", "C", "D")}
# Defect forms a family may take beside its plain one (demo_truth.csv ``form``): a particle cut by the
# crop's edge, a thin solder tongue beyond a pad. ``FORM_SHARE`` of that family's defects take it.
FORMS = {"FOREIGN_MATERIAL": "border", "EXCESS_SOLDER": "extension"}
FORM_SHARE = 0.3
NEIGHBOURS = 2
LATTICE = 10                            # board texture: value noise on a LATTICE x LATTICE grid

# Geometry per kind (px): body length (along the pads) and width, pad length and width, pad centre
# offset from the part centre, body height. Q's three leads are placed by _Q_LEADS instead.
_GEOM = np.array([
    (14.0, 7.0, 6.0, 8.0, 9.0, 3.0),
    (15.0, 8.0, 6.0, 9.0, 9.5, 4.0),
    (16.0, 8.0, 7.0, 9.0, 10.5, 3.5),
    (9.0, 6.0, 3.5, 4.5, 0.0, 3.0),
], np.float32)
_Q_LEADS = np.array([(-3.6, -6.6), (3.6, -6.6), (0.0, 6.6)], np.float32)   # (u, v) pad centres
_EXTENT = np.array([14.0, 14.5, 15.0, 9.5], np.float32)                      # half-extent incl. pads

# Materials: albedo under white light, specular strength, and dark-field scatter (rough matter such
# as a particle or a fibre glows under a low ring light while flat surfaces stay dark).
_MATERIALS = {
    "mask": ((0.10, 0.30, 0.13), 0.10), "trace": ((0.17, 0.42, 0.19), 0.12), "silk": ((0.86, 0.86, 0.80), 0.0),
    "via": ((0.74, 0.60, 0.34), 0.50), "hole": ((0.02, 0.02, 0.02), 0.0), "pad": ((0.80, 0.70, 0.45), 0.60),
    "paste": ((0.56, 0.56, 0.56), 0.05), "solder": ((0.74, 0.74, 0.77), 1.00), "lead": ((0.70, 0.70, 0.72), 0.80),
    "bodyR": ((0.07, 0.07, 0.08), 0.05), "bodyC": ((0.60, 0.47, 0.30), 0.05), "bodyD": ((0.10, 0.10, 0.11), 0.08),
    "bodyQ": ((0.12, 0.12, 0.13), 0.05), "cap": ((0.70, 0.70, 0.72), 0.70), "mark": ((0.80, 0.80, 0.80), 0.0),
    "stripe": ((0.85, 0.85, 0.88), 0.0), "particle": ((0.16, 0.12, 0.08), 0.0, 0.55), "fibre": ((0.80, 0.80, 0.84), 0.0, 0.7),
}
_MAT = tuple(_MATERIALS)
_ALBEDO = np.array([v[0] for v in _MATERIALS.values()], np.float32)
_SPEC = np.array([v[1] for v in _MATERIALS.values()], np.float32)
_SCATTER = np.array([v[2] if len(v) > 2 else 0.0 for v in _MATERIALS.values()], np.float32)
# Lights: colour tint, and the surface tilt (rad) at which the light's specular reflection peaks.
_TINT = {"Coax": (1.0, 1.0, 1.0), "LowRing": (0.30, 0.45, 1.00), "HighRing": (1.00, 0.42, 0.32)}


@dataclass
class Scenes:
    """Per-sample parameters; every field has the batch as its first axis."""

    kind: np.ndarray            # int index into KINDS
    angle: np.ndarray           # part orientation (rad): a multiple of pi/2 plus placement rotation
    centre: np.ndarray          # (n, 2) part centre in the crop (px from the crop centre)
    lattice: np.ndarray         # (n, LATTICE, LATTICE) board texture values
    traces: np.ndarray          # (n, 2, 3) two traces: (angle, offset, present)
    vias: np.ndarray            # (n, 3, 3) vias: (x, y, present)
    silk: np.ndarray            # (n,) silkscreen outline present
    nb_kind: np.ndarray         # (n, NEIGHBOURS) neighbour kinds (R/C only)
    nb_pose: np.ndarray         # (n, NEIGHBOURS, 4) neighbour (x, y, angle, present)
    register: np.ndarray        # (n, 2) crop registration offset (whole scene)
    body_offset: np.ndarray     # (n, 2) body against its pads along (u, v)
    body_turn: np.ndarray       # (n,) body rotation against its pads (rad)
    present: np.ndarray         # (n,) body placed
    paste: np.ndarray           # (n,) 1 = unreflowed paste on the pads (an empty site)
    solder: np.ndarray          # (n, 3) fillet volume per terminal (1 = nominal)
    lift: np.ndarray            # (n,) tombstone lift 0..1 of the +u end (or -u when lift_side < 0)
    lift_side: np.ndarray       # (n,) +1 / -1
    bridge: np.ndarray          # (n, 3) solder bridge (width px, height, side +-1)
    flipped: np.ndarray         # (n,) polarity stripe on the wrong end
    tint: np.ndarray            # (n,) body lot colour factor
    marking: np.ndarray         # (n, 3) marking (contrast, du, dv)
    stripe: np.ndarray          # (n,) polarity stripe contrast
    particle: np.ndarray        # (n, 6) foreign material (x, y, radius, length, angle, present)
    tongue: np.ndarray          # (n, 4) solder tongue beyond a pad: (terminal, length px, width px, present)
    exposure: np.ndarray        # (n, len(LIGHTS)) per-light gain
    glare: np.ndarray           # (n, 5) glare spot (light index, du, dv, radius, strength); strength 0 = none
    blur: np.ndarray            # (n,) focus blur (3-tap kernel side weight, 0..0.25)
    noise: np.ndarray           # (n,) sensor noise sigma

    def take(self, index: np.ndarray) -> "Scenes":
        return Scenes(**{f.name: getattr(self, f.name)[index].copy() for f in fields(self)})


def nominal(rng: np.random.Generator, kind: np.ndarray) -> Scenes:
    """Defect-free CAD scenes of parts of ``kind``: what the golden board shows (parts anywhere in
    the crop)."""
    n = len(kind)
    reach = SIZE / 2 - _EXTENT[kind] - 3.0
    centre = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32) * reach[:, None]
    nb_xy = rng.uniform(-SIZE / 2, SIZE / 2, (n, NEIGHBOURS, 2)).astype(np.float32)
    # A neighbour lies beyond the main part (at least its extent + 14 px away): push it outward.
    away = nb_xy - centre[:, None]
    dist = np.maximum(np.linalg.norm(away, axis=-1, keepdims=True), 1e-3)
    need = (_EXTENT[kind][:, None, None] + 14.0)
    nb_xy = np.where(dist < need, centre[:, None] + away / dist * need, nb_xy)
    nb_pose = np.concatenate([nb_xy, rng.integers(0, 2, (n, NEIGHBOURS, 1)) * (np.pi / 2),
                              (rng.random((n, NEIGHBOURS, 1)) < 0.7)], -1).astype(np.float32)
    vias = np.concatenate([rng.uniform(-SIZE / 2, SIZE / 2, (n, 3, 2)), rng.random((n, 3, 1)) < 0.5], -1)
    traces = np.concatenate([rng.uniform(0, np.pi, (n, 2, 1)), rng.uniform(-30, 30, (n, 2, 1)),
                             rng.random((n, 2, 1)) < 0.6], -1)
    return Scenes(
        kind=kind, angle=(rng.integers(0, 4, n) * (np.pi / 2)).astype(np.float32), centre=centre,
        lattice=rng.standard_normal((n, LATTICE, LATTICE)).astype(np.float32),
        traces=traces.astype(np.float32), vias=vias.astype(np.float32),
        silk=(rng.random(n) < 0.8).astype(np.float32),
        nb_kind=rng.integers(0, 2, (n, NEIGHBOURS)), nb_pose=nb_pose,
        register=np.zeros((n, 2), np.float32), body_offset=np.zeros((n, 2), np.float32),
        body_turn=np.zeros(n, np.float32), present=np.ones(n, np.float32), paste=np.zeros(n, np.float32),
        solder=np.ones((n, 3), np.float32), lift=np.zeros(n, np.float32), lift_side=np.ones(n, np.float32),
        bridge=np.zeros((n, 3), np.float32), flipped=np.zeros(n, np.float32), tint=np.ones(n, np.float32),
        marking=np.tile(np.float32([0.7, 0.0, 0.0]), (n, 1)), stripe=np.full(n, 0.8, np.float32),
        particle=np.zeros((n, 6), np.float32), tongue=np.zeros((n, 4), np.float32),
        exposure=np.ones((n, len(LIGHTS)), np.float32),
        glare=np.zeros((n, 5), np.float32), blur=np.zeros(n, np.float32), noise=np.full(n, 0.005, np.float32),
    )


def capture(s: Scenes, rng: np.random.Generator, *, golden: bool = False) -> None:
    """Camera effects of one capture: registration, exposure, focus, noise (goldens are taken
    with care: smaller registration error, no glare)."""
    n = len(s.kind)
    s.register = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32) * (0.8 if golden else 2.5)
    s.exposure = rng.uniform(0.97, 1.03, (n, len(LIGHTS))).astype(np.float32) if golden else \
        rng.uniform(0.85, 1.15, (n, len(LIGHTS))).astype(np.float32)
    s.blur = rng.uniform(0.0, 0.08 if golden else 0.22, n).astype(np.float32)
    s.noise = rng.uniform(0.004, 0.008 if golden else 0.016, n).astype(np.float32)


def production(s: Scenes, rng: np.random.Generator, glare_share: float = 0.25) -> None:
    """What makes a good production part differ from its golden beyond the camera: placement
    tolerance, solder volume, the component lot, and a specular glint seen by one light only."""
    n = len(s.kind)
    capture(s, rng)
    s.body_offset = np.clip(rng.normal(0.0, 0.45, (n, 2)), -1.1, 1.1).astype(np.float32)
    s.body_turn = rng.uniform(-0.035, 0.035, n).astype(np.float32)
    s.solder = rng.uniform(0.86, 1.14, (n, 3)).astype(np.float32)
    s.tint = rng.uniform(0.8, 1.25, n).astype(np.float32)
    s.marking = np.stack([rng.uniform(0.3, 1.0, n), rng.uniform(-1.5, 1.5, n), rng.uniform(-0.8, 0.8, n)],
                         1).astype(np.float32)
    s.stripe = rng.uniform(0.55, 1.0, n).astype(np.float32)
    on = rng.random(n) < glare_share
    s.glare = np.stack([rng.integers(0, len(LIGHTS), n), rng.uniform(-4, 4, n), rng.uniform(-2.5, 2.5, n),
                        rng.uniform(1.5, 3.2, n), np.where(on, rng.uniform(0.45, 0.9, n), 0.0)], 1).astype(np.float32)


def add_defects(s: Scenes, family: np.ndarray, hard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn the scenes whose ``family`` names a defect into it (``hard`` = the subtle form); returns
    each row's form (``FORMS`` value, or "" for the plain one)."""
    n = len(family)
    sign = rng.choice(np.float32([-1.0, 1.0]), n)
    chip = s.kind != KINDS.index("Q")

    m = family == "MISSING"
    s.present[m] = 0.0
    s.paste[m & ~hard] = 1.0           # easy: an empty site with unreflowed paste; hard: solder mounds remain

    m = family == "BRIDGE"
    width = np.where(hard, rng.uniform(1.0, 1.5, n), rng.uniform(2.2, 3.2, n))
    height = np.where(hard, rng.uniform(0.6, 0.9, n), rng.uniform(1.2, 1.8, n))
    s.bridge[m] = np.stack([width, height, sign], 1)[m]

    m = family == "EXCESS_SOLDER"
    which = rng.integers(0, np.where(chip, 2, 3))      # a chip has two terminals, a SOT-23 three
    one = np.where(np.arange(3)[None, :] == which[:, None], rng.uniform(1.6, 1.8, n)[:, None], s.solder)
    s.solder[m] = np.where(hard[:, None], one, rng.uniform(2.0, 2.5, (n, 1)))[m]

    m = family == "SHIFT"  # along or across the pads; the other axis keeps its placement tolerance
    dist = np.where(hard, rng.uniform(2.2, 2.8, n), rng.uniform(3.5, 5.0, n)) * sign
    along = rng.random(n) < 0.5
    moved = np.stack([np.where(along, dist, s.body_offset[:, 0]), np.where(along, s.body_offset[:, 1], dist)], 1)
    s.body_offset[m] = moved[m].astype(np.float32)

    m = (family == "TOMBSTONE") & chip
    s.lift[m] = np.where(hard, rng.uniform(0.35, 0.5, n), rng.uniform(0.85, 1.0, n))[m]
    s.lift_side[m] = sign[m]
    lifted = (sign > 0).astype(np.int64)
    vol = s.solder.copy()
    vol[np.arange(n), lifted] = np.where(hard, 0.5, 0.15)
    s.solder[m] = vol[m]

    m = family == "POLARITY"
    s.flipped[m] = 1.0
    s.stripe[m & hard] = np.minimum(s.stripe[m & hard], 0.6)

    m = family == "FOREIGN_MATERIAL"
    fiber = rng.random(n) < 0.3
    radius = np.where(hard, rng.uniform(1.2, 1.7, n), rng.uniform(2.0, 3.2, n))
    length = np.where(fiber, np.where(hard, rng.uniform(6, 9, n), rng.uniform(10, 16, n)), 0.0)
    radius = np.where(fiber, 0.7, radius)
    xy = rng.uniform(-SIZE / 2 + 5, SIZE / 2 - 5, (n, 2))
    s.particle[m] = np.stack([xy[:, 0], xy[:, 1], radius, length, rng.uniform(0, np.pi, n), np.ones(n)], 1)[m]
    return _forms(s, family, hard, rng)


def _forms(s: Scenes, family: np.ndarray, hard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The other forms (``FORMS``), drawn after the plain ones (a workspace of an earlier version keeps
    every other draw): a particle moved onto the crop's edge (its centre within its radius of one side,
    so the edge cuts it), a solder fillet of nominal volume with a thin tongue running out beyond one
    pad (along the pads for a chip, outward from the lead for a SOT-23)."""
    n = len(family)
    take = rng.random(n) < FORM_SHARE
    side = rng.integers(0, 4, n)
    inset = rng.uniform(-0.3, 0.6, n)
    length = np.where(hard, rng.uniform(3.0, 5.0, n), rng.uniform(5.0, 8.0, n))
    width = np.where(hard, rng.uniform(1.2, 1.6, n), rng.uniform(1.8, 2.4, n))
    terminal = rng.integers(0, np.where(s.kind != KINDS.index("Q"), 2, 3))
    form = np.full(n, "", dtype=object)
    m = take & (family == "FOREIGN_MATERIAL")
    axis, outward = side % 2, np.where(side < 2, 1.0, -1.0)      # sides 0/1: the +x/+y edge, 2/3: -x/-y
    # the crop's edge pixel centre in board coordinates (the capture's registration moves the crop)
    edge = outward * (SIZE - 1) / 2 - s.register[np.arange(n), axis]
    coord = edge - outward * inset * np.maximum(s.particle[:, 2], 0.7)
    s.particle[m, axis[m]] = coord[m]
    form[m] = FORMS["FOREIGN_MATERIAL"]
    m = take & (family == "EXCESS_SOLDER")
    s.solder[m] = np.clip(s.solder[m], 0.86, 1.14)
    s.tongue[m] = np.stack([terminal, length, width, np.ones(n)], 1)[m]
    form[m] = FORMS["EXCESS_SOLDER"]
    return form


# ------------------------------------------------------------------------------------ geometry

def _cover(sd: np.ndarray) -> np.ndarray:
    """Pixel coverage from a signed distance (negative inside), one pixel of anti-aliasing."""
    return np.clip(0.5 - sd, 0.0, 1.0)


def _box_sd(u: np.ndarray, v: np.ndarray, hu, hv, r=0.8) -> np.ndarray:
    """Signed distance to a rounded rectangle with half sizes (hu, hv) and corner radius r."""
    qu, qv = np.abs(u) - (hu - r), np.abs(v) - (hv - r)
    return np.sqrt(np.maximum(qu, 0) ** 2 + np.maximum(qv, 0) ** 2) + np.minimum(np.maximum(qu, qv), 0) - r


def _ridge(sd: np.ndarray, width) -> np.ndarray:
    """Height of a solder tongue: a rounded ridge over the pad level, highest along its middle (its
    sloped sides are what the ring lights see)."""
    return 0.15 + 0.6 * np.sqrt(np.clip(-sd / np.maximum(np.asarray(width) / 2, 0.3), 0.0, 1.0))


def _rotate(x, y, angle):
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _value_noise(lattice: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear value noise: the lattice spans the crop (plus margin), sampled at board coordinates."""
    n, g, _ = lattice.shape
    fx = np.clip((x + SIZE * 0.6) / (SIZE * 1.2) * (g - 1), 0, g - 1.001)
    fy = np.clip((y + SIZE * 0.6) / (SIZE * 1.2) * (g - 1), 0, g - 1.001)
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = fx - ix, fy - iy
    flat = lattice.reshape(n, -1)
    rows = np.arange(n)[:, None, None]

    def at(a, b):
        return flat[rows, a * g + b]

    top = at(iy, ix) * (1 - tx) + at(iy, ix + 1) * tx
    bottom = at(iy + 1, ix) * (1 - tx) + at(iy + 1, ix + 1) * tx
    return top * (1 - ty) + bottom * ty


class _Canvas:
    """Per-pixel height and material weights, painted layer by layer from the top down."""

    def __init__(self, n: int) -> None:
        self.weights = np.zeros((len(_MAT), n, SIZE, SIZE), np.float32)   # material-major: each paint is contiguous
        self.visible = np.ones((n, SIZE, SIZE), np.float32)
        self.height = np.zeros((n, SIZE, SIZE), np.float32)
        self.texture = np.zeros((n, SIZE, SIZE), np.float32)

    def paint(self, material: str, cover: np.ndarray, height=None) -> None:
        take = cover * self.visible
        self.weights[_MAT.index(material)] += take
        if height is not None:
            self.height += take * height
        self.visible -= take


def _chip_layers(cv: _Canvas, s: Scenes, u, v, geom, main: bool = True) -> None:
    """Body, terminals and fillets of two-terminal chips (R, C, D), in the part's (u, v) frame."""
    e = (slice(None), None, None)
    blen, bwid, plen, pwid, poff, bh = (geom[:, i][e] for i in range(6))
    kind = s.kind[e] if main else None
    lift = s.lift[e] if main else 0.0
    side = s.lift_side[e] if main else 1.0
    present = s.present[e] if main else 1.0
    # Body pose against the pads: offset, turn, tombstone pivot about the grounded end.
    bu, bv = (u - s.body_offset[:, 0][e], v - s.body_offset[:, 1][e]) if main else (u, v)
    if main:
        bu, bv = _rotate(bu, bv, s.body_turn[e])
    proj = blen * np.cos(lift * 1.2)                         # foreshortened length seen from above
    pivot = -side * blen / 2                                  # the grounded end stays in place
    bu_c = bu - (pivot + side * proj / 2)
    body = _cover(_box_sd(bu_c, bv, proj / 2, bwid / 2, 1.0)) * present
    rise = np.clip((side * (bu - pivot)) / np.maximum(proj, 1e-3), 0, 1) * np.sin(lift * 1.2) * blen
    body_h = bh + rise
    flip = s.flipped[e] if main else 0.0
    if main:
        mu, mv = bu_c - s.marking[:, 1][e], bv - s.marking[:, 2][e]
        marks = np.maximum(_cover(_box_sd(mu - 2.0, mv, 1.0, 1.6, 0.3)), _cover(_box_sd(mu + 1.8, mv, 1.3, 1.6, 0.3)))
        cv.paint("mark", body * marks * s.marking[:, 0][e] * (kind == 0), body_h)
        end = np.where(flip > 0, 1.0, -1.0)                   # cathode stripe at -u unless flipped
        stripe = _cover(_box_sd(bu_c - end * (proj / 2 - 2.8), bv, 1.5, bwid / 2, 0.2))
        cv.paint("stripe", body * stripe * s.stripe[e] * (kind == 2), body_h)
        caps = body * (np.abs(bu_c) > proj / 2 - 1.8) * (kind == 0)
        cv.paint("cap", caps, body_h)
        for k, name in enumerate(("bodyR", "bodyC", "bodyD")):
            cv.paint(name, body * (kind == k), body_h)
    else:
        caps = body * (np.abs(bu_c) > proj / 2 - 1.8)
        cv.paint("cap", caps * (s.nb_kind[:, 0][e] == 0), body_h)
        cv.paint("bodyR", body, body_h)
    # Fillets: a meniscus from each pad's outer edge up the terminal; volume bends it convex.
    for i, sgn in enumerate((-1.0, 1.0)):
        vol = s.solder[:, i][e] if main else 1.0
        outer = poff + plen / 2 + np.maximum(vol - 1.0, 0) * 2.2
        inner = blen / 2 - 1.0
        t = np.clip((outer - sgn * u) / np.maximum(outer - inner, 1e-3), 0, 1)
        expo = np.where(np.asarray(vol) > 1.3, 0.55, 1.6) if main else 1.6
        wid = pwid / 2 * (0.85 + 0.25 * np.maximum(np.asarray(vol) - 1.0, 0))
        region = _cover(_box_sd(u - sgn * (outer + inner) / 2, v, (outer - inner) / 2, wid, 1.2))
        h = np.minimum(vol, 2.6) * 0.55 * bh * t ** expo
        if main:
            wet = 1.0 - s.paste[e]
            paste_h = 0.35 * (1.0 - s.present[e]) * s.paste[e]
            cv.paint("solder", region * wet * (np.asarray(vol) > 0.2), 0.15 + h * (0.45 + 0.55 * present))
            cv.paint("paste", _cover(_box_sd(u - sgn * poff, v, plen / 2 - 0.8, pwid / 2 - 0.8)) * s.paste[e],
                     0.15 + paste_h)
        else:
            cv.paint("solder", region, 0.15 + h)
    if main:  # a bridge runs along one side of the body from pad to pad
        w, hgt, bside = (s.bridge[:, i][e] for i in range(3))
        cv.paint("solder", _cover(_box_sd(u, v - bside * (bwid / 2 + 1.3), poff, w / 2, 0.4)) * (w > 0), hgt + 0.15)
        term, length, width, on = (s.tongue[:, i][e] for i in range(4))
        sgn = np.where(term > 0.5, 1.0, -1.0)  # a tongue out of the pad's outer end, along the pads
        tongue = _box_sd(u - sgn * (poff + plen / 2 + length / 2 - 0.5), v, length / 2 + 0.5, width / 2,
                         np.minimum(width / 2, 0.6))
        cv.paint("solder", _cover(tongue) * on, _ridge(tongue, width))
    pads = np.maximum(_cover(_box_sd(u + poff, v, plen / 2, pwid / 2)), _cover(_box_sd(u - poff, v, plen / 2, pwid / 2)))
    cv.paint("pad", pads, 0.15)


def _sot_layers(cv: _Canvas, s: Scenes, u, v, geom) -> None:
    """SOT-23: a moulded body with three gull-wing leads over three pads."""
    e = (slice(None), None, None)
    blen, bwid, plen, pwid, _, bh = (geom[:, i][e] for i in range(6))
    present = s.present[e]
    bu, bv = _rotate(u - s.body_offset[:, 0][e], v - s.body_offset[:, 1][e], s.body_turn[e])
    body = _cover(_box_sd(bu, bv, blen / 2, bwid / 2, 0.8)) * present
    dot = _cover(np.hypot(bu + blen / 2 - 1.8, bv + bwid / 2 - 1.6) - 0.9)
    cv.paint("mark", body * dot * s.marking[:, 0][e], bh)
    cv.paint("bodyQ", body, bh)
    w, hgt, bside = (s.bridge[:, i][e] for i in range(3))
    cv.paint("solder", _cover(_box_sd(u, v + 6.6, 3.6, w / 2 + 0.2, 0.4)) * (w > 0), hgt + 0.15)
    term, length, width, on = (s.tongue[:, i][e] for i in range(4))
    for k, (lu, lv) in enumerate(_Q_LEADS):
        out = np.sign(lv)
        # a tongue out of this lead's pad, away from the body
        tongue = _box_sd(u - lu, v - (lv + out * (pwid / 2 + length / 2 - 0.5)), width / 2, length / 2 + 0.5,
                         np.minimum(width / 2, 0.6))
        cv.paint("solder", _cover(tongue) * on * (np.abs(term - k) < 0.5), _ridge(tongue, width))
        lead = _cover(_box_sd(bu - lu, bv - out * (bwid / 2 + 1.3), 0.9, 1.5, 0.3)) * present
        cv.paint("lead", lead, 1.2 - 0.6 * out * (bv - out * (bwid / 2 + 1.3)))
        vol = s.solder[:, k][e]
        wet = 1.0 - s.paste[e]
        t = np.clip(1.0 - np.abs(v - lv) / (pwid / 2), 0, 1)
        blob = _cover(_box_sd(u - lu, v - lv, plen / 2 * np.sqrt(np.minimum(vol, 2.6)) * 0.8, pwid / 2 * 0.8, 1.0))
        cv.paint("solder", blob * wet, 0.15 + np.minimum(vol, 2.6) * 0.9 * t ** np.where(vol > 1.3, 0.5, 1.4))
        cv.paint("paste", _cover(_box_sd(u - lu, v - lv, plen / 2 - 0.6, pwid / 2 - 0.6)) * s.paste[e], 0.3)
        cv.paint("pad", _cover(_box_sd(u - lu, v - lv, plen / 2, pwid / 2)), 0.15)


def _geometry(s: Scenes) -> _Canvas:
    n = len(s.kind)
    e = (slice(None), None, None)
    grid = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    x = np.broadcast_to(grid[None, None, :], (n, SIZE, SIZE)) - s.register[:, 0][e]
    y = np.broadcast_to(grid[None, :, None], (n, SIZE, SIZE)) - s.register[:, 1][e]
    cv = _Canvas(n)
    p = s.particle
    px, py = _rotate(x - p[:, 0][e], y - p[:, 1][e], p[:, 4][e])
    speck = _cover(_box_sd(px, py, p[:, 2][e] + p[:, 3][e] / 2, p[:, 2][e], p[:, 2][e] * 0.95)) * p[:, 5][e]
    fibre = (p[:, 3] > 0)[e]
    bump = 0.9 + 0.8 * p[:, 2][e] * speck
    cv.paint("fibre", speck * fibre, bump)
    cv.paint("particle", speck * ~fibre, bump)

    u, v = _rotate(x - s.centre[:, 0][e], y - s.centre[:, 1][e], s.angle[e])
    chip = s.kind != KINDS.index("Q")
    for rows, layers in ((np.flatnonzero(chip), _chip_layers), (np.flatnonzero(~chip), _sot_layers)):
        if not len(rows):
            continue
        sub = _Canvas(len(rows))
        layers(sub, s.take(rows), u[rows], v[rows], _GEOM[s.kind[rows]])
        cv.weights[:, rows] += sub.weights * cv.visible[rows][None]
        cv.height[rows] += sub.height * cv.visible[rows]
    cv.visible = np.clip(1.0 - cv.weights.sum(0), 0.0, 1.0)
    for j in range(NEIGHBOURS):  # neighbours: plain R/C chips, identical on golden and test
        pose = s.nb_pose[:, j]
        nu, nv = _rotate(x - pose[:, 0][e], y - pose[:, 1][e], pose[:, 2][e])
        nb = Scenes.__new__(Scenes)
        nb.nb_kind = s.nb_kind[:, j:j + 1]
        sub = _Canvas(n)
        _chip_layers(sub, nb, nu, nv, _GEOM[s.nb_kind[:, j]], False)
        keep = pose[:, 3][e]
        share = cv.visible * keep
        cv.weights += sub.weights * share[None]
        cv.height += sub.height * share
        cv.visible = np.clip(cv.visible - sub.weights.sum(0) * share, 0.0, 1.0)
    # Board: silkscreen outline around the main footprint, vias, traces under the mask.
    ext = _EXTENT[s.kind][e] + 2.5
    outline = np.clip(1.0 - np.abs(_box_sd(u, v, ext, ext * 0.62, 1.5)), 0.0, 1.0)
    cv.paint("silk", outline * s.silk[e], 0.25)
    for j in range(3):
        d = np.hypot(x - s.vias[:, j, 0][e], y - s.vias[:, j, 1][e])
        cv.paint("hole", _cover(d - 1.1) * s.vias[:, j, 2][e], -0.4)
        cv.paint("via", _cover(d - 2.4) * s.vias[:, j, 2][e], 0.12)
    for j in range(2):
        ta, to, on = (s.traces[:, j, i][e] for i in range(3))
        across = np.cos(ta) * y - np.sin(ta) * x - to
        cv.paint("trace", _cover(np.abs(across) - 1.6) * on, 0.22)
    cv.paint("mask", np.ones_like(cv.visible), 0.0)
    cv.texture = _value_noise(s.lattice, x, y)
    cv.height += 0.05 * cv.texture
    return cv


# ------------------------------------------------------------------------------------ lighting

def _shade(cv: _Canvas, s: Scenes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    e4 = (slice(None), None, None, None)
    gy, gx = np.gradient(cv.height, axis=(1, 2))
    slope = np.sqrt(gx * gx + gy * gy)
    tilt = np.arctan(slope)
    nz = 1.0 / np.sqrt(1.0 + slope * slope)
    body_cols = [_MAT.index(k) for k in ("bodyR", "bodyC", "bodyD", "bodyQ")]
    w = cv.weights
    w[body_cols] *= s.tint[None, :, None, None]
    albedo = np.einsum("mnij,mc->nijc", w, _ALBEDO, optimize=True)   # (n, S, S, 3)
    spec = np.einsum("mnij,m->nij", w, _SPEC, optimize=True)
    scatter = np.einsum("mnij,m->nij", w, _SCATTER, optimize=True)[..., None]
    albedo *= (1.0 + 0.18 * cv.texture * w[_MAT.index("mask")])[..., None]   # solder-mask mottling
    grey = albedo.mean(-1, keepdims=True)
    models = {
        "Coax": albedo * (0.25 + 0.75 * nz)[..., None] + (0.9 * spec * np.exp(-(tilt / 0.16) ** 2))[..., None],
        "LowRing": grey * (0.08 + 0.6 * np.sin(tilt))[..., None] + scatter
        + (spec * np.exp(-((tilt - 0.62) / 0.3) ** 2))[..., None],
        "HighRing": grey * (0.2 + 0.45 * nz)[..., None] + 0.5 * scatter + (0.8 * spec * np.exp(-((tilt - 0.3) / 0.14) ** 2))[..., None],
    }
    contrast = {"Coax": (0.0, 1.0), "LowRing": (0.02, 1.25), "HighRing": (0.22, 0.55)}   # offset, scale
    grid = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    out = {}
    for li, light in enumerate(LIGHTS):
        img = models[light] * np.float32(_TINT[light])
        g = s.glare
        gu = grid[None, None, :] - (s.centre[:, 0] + s.register[:, 0] + g[:, 1])[:, None, None]
        gv = grid[None, :, None] - (s.centre[:, 1] + s.register[:, 1] + g[:, 2])[:, None, None]
        spot = np.exp(-(gu ** 2 + gv ** 2) / (2 * np.maximum(g[:, 3], 0.5)[:, None, None] ** 2))
        img = img + (spot * (g[:, 4] * (g[:, 0] == li))[:, None, None])[..., None]
        off, scale = contrast[light]
        img = (off + scale * img) * s.exposure[:, li][e4]
        img = _blur(img, s.blur)
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * s.noise[e4]
        out[light] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _blur(img: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Separable 3-tap focus blur [a, 1-2a, a] per sample (edges replicated), in place by slices."""
    k = a[:, None, None, None].astype(np.float32)
    for axis in (1, 2):
        src = img.copy()
        img *= 1 - 2 * k
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        img[tuple(hi)] += k * src[tuple(lo)]      # the neighbour before
        img[tuple(lo)] += k * src[tuple(hi)]      # the neighbour after
        first, last = [slice(None)] * 4, [slice(None)] * 4
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        img[tuple(first)] += k * src[tuple(first)]  # replicated edges
        img[tuple(last)] += k * src[tuple(last)]
    return img


def render(s: Scenes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every scene under every light: {light: uint8 (n, SIZE, SIZE, 3)}."""
    return _shade(_geometry(s), s, rng)
