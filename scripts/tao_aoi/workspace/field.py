"""A field-style AOI workspace (DESIGN.md section 4): ``make_demo_workspace.py --preset field``.

The demo workspace is tuned with the toolkit; this one is drawn the way production data arrives,
to try the toolkit as a new user would (field_render.py draws the crops):

- three lights (``Coax``, ``LowRing``, ``HighRing``) with different contrast, JPEG, 72 px crops;
- goldens per product revision and panel position (``images/golden/<product>/<rev>/TOP/``), test
  images under nested production paths (``<line>/<date>/<lot>/<serial>/TOP/``), object names such
  as ``R12@1`` (reference designator @ panel position) and extra columns (``boardname, line,
  panel, inspected_at, aoi_program``);
- base training and validation: PASS, MISSING, BRIDGE, SHIFT and a few EXCESS_SOLDER; the KPI set
  adds TOMBSTONE, POLARITY (stripe on the wrong end) and FOREIGN_MATERIAL (a particle or a fibre
  anywhere in the crop, some cut by its edge), half of every family hard; excess solder is a swollen
  fillet or a thin tongue beyond a pad (``field_render.FORMS``, the truth file's ``form``); the
  AnomalyGen pool holds the SDG-supported labels only, the mining pool every family.

Rows are sampled components of boards (not every part of every board), boards never shared between
splits; POLARITY only occurs on polarised parts and TOMBSTONE on two-terminal chips.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from tao_aoi import defaults
from tao_aoi.layout import Workspace
from tao_aoi.workspace import builder
from tao_aoi.workspace import field_render as fr

GENERATOR_VERSION = 2  # 2: defect forms (a particle cut by the crop's edge, a solder tongue beyond a pad)
IMAGE_EXT = ".jpg"
IMAGE_SIZE = fr.SIZE
LIGHTS = fr.LIGHTS
JPEG_QUALITY = (84, 94)          # per image, as AOI machines are configured differently
SIDE = "TOP"
PRODUCTS = ("PX-4410", "MB-0733", "CT-2051", "PX-5120")
LINES = ("SMT-L1", "SMT-L2", "SMT-L3")

BASE_MIX = {"PASS": 0.74, "MISSING": 0.08, "BRIDGE": 0.08, "SHIFT": 0.07, "EXCESS_SOLDER": 0.03}
KPI_MIX = {"PASS": 0.63, "MISSING": 0.04, "BRIDGE": 0.04, "EXCESS_SOLDER": 0.04, "SHIFT": 0.04,
           "TOMBSTONE": 0.06, "POLARITY": 0.07, "FOREIGN_MATERIAL": 0.08}
MINING_MIX = {"PASS": 0.40, **{f: 0.60 / len(fr.FAMILIES) for f in fr.FAMILIES}}
SDG_MIX = {"PASS": 0.35, "EXCESS_SOLDER": 0.25, "MISSING": 0.20, "BRIDGE": 0.20}


@dataclass(frozen=True)
class Preset:
    products: int
    refs: int                      # distinct reference designators per product
    panel: int                     # boards per panel: each ref appears as REF@1..REF@panel
    rows: Mapping[str, int]        # train, val, kpi, mining
    sdg: int


PRESETS = {
    "field-tiny": Preset(products=2, refs=10, panel=2, rows={"train": 240, "val": 100, "kpi": 160, "mining": 240},
                         sdg=120),
    "field": Preset(products=3, refs=14, panel=2, rows={"train": 1500, "val": 500, "kpi": 800, "mining": 2000},
                    sdg=400),
}
SPLITS = {  # split -> (label mix, rng stream, serial-number block)
    "train": (BASE_MIX, 1, 10_000), "val": (BASE_MIX, 2, 30_000), "kpi": (KPI_MIX, 3, 50_000),
    "mining": (MINING_MIX, 4, 70_000),
}
_LAYOUT_STREAM, _GOLDEN_STREAM, _SDG_STREAM = 0, 5, 6
_CHUNK = 128


def _kinds(rng: np.random.Generator, refs: int) -> np.ndarray:
    """Part kinds of one product's refs in the fixed KIND_SHARE proportions (every product has
    polarised parts, so POLARITY rows always find a site)."""
    per = builder.counts(dict(zip(fr.KINDS, fr.KIND_SHARE)), refs)
    kinds = np.concatenate([np.full(c, i) for i, c in enumerate(per.values())])
    return rng.permutation(kinds)


@dataclass
class _Catalogue:
    """Every inspected object: product, name (R12@1), kind and its nominal (golden) scene."""

    product: np.ndarray
    name: np.ndarray
    kind: np.ndarray
    scenes: fr.Scenes

    @property
    def golden_dirs(self) -> np.ndarray:
        return np.array([f"golden/{PRODUCTS[p]}/REVB/{SIDE}" for p in self.product])


def _catalogue(p: Preset, rng: np.random.Generator) -> _Catalogue:
    product, names, kinds = [], [], []
    for d in range(p.products):
        kind = _kinds(rng, p.refs)
        numbers: dict[int, list[int]] = {}
        for k in range(len(fr.KINDS)):
            n_k = int((kind == k).sum())
            numbers[k] = sorted(rng.choice(np.arange(1, 160), n_k, replace=False).tolist())
        seen = {k: 0 for k in numbers}
        for k in kind:
            ref = f"{fr.KINDS[k]}{numbers[k][seen[k]]}"
            seen[k] += 1
            for copy in range(1, p.panel + 1):
                product.append(d)
                names.append(f"{ref}@{copy}")
                kinds.append(k)
    kinds_a = np.asarray(kinds)
    return _Catalogue(np.asarray(product), np.asarray(names), kinds_a, fr.nominal(rng, kinds_a))


def _assign(rng: np.random.Generator, cat: _Catalogue, family: np.ndarray, products: int) -> tuple[np.ndarray, np.ndarray]:
    """(board, object) per row: distinct within the split, families only on parts they can occur on."""
    per_product = [np.flatnonzero(cat.product == d) for d in range(products)]
    n_obj = len(per_product[0])
    boards = int(np.ceil(len(family) * 1.6 / n_obj)) + products
    board = np.repeat(np.arange(boards), n_obj)
    obj = np.concatenate([per_product[b % products] for b in range(boards)])
    free = np.ones(len(board), bool)
    chosen = np.empty(len(family), np.int64)
    restricted = np.zeros(len(family), bool)
    for fam, allowed in fr.ELIGIBLE.items():
        rows = np.flatnonzero(family == fam)
        restricted[rows] = True
        ok = np.isin(cat.kind[obj], [fr.KINDS.index(k) for k in allowed])
        pick = rng.choice(np.flatnonzero(free & ok), len(rows), replace=False)
        chosen[rows], free[pick] = pick, False
    rest = np.flatnonzero(~restricted)
    pick = rng.choice(np.flatnonzero(free), len(rest), replace=False)
    chosen[rest] = pick
    return board[chosen], obj[chosen]


def _frame(split: str, block: int, board: np.ndarray, obj: np.ndarray, family: np.ndarray, cat: _Catalogue,
           rng: np.random.Generator):
    """The ChangeNet rows of one split with its production metadata."""
    import pandas as pd

    uniq, inv = np.unique(board, return_inverse=True)
    start = dt.datetime(2025, 3, 3, 6, 0)
    minutes = np.sort(rng.integers(0, 60 * 24 * 40, len(uniq)))[rng.permutation(len(uniq))]
    when = [start + dt.timedelta(minutes=int(m)) for m in minutes]
    line = rng.integers(0, len(LINES), len(uniq))
    serial = [f"SN{block + b:06d}" for b in uniq]
    lot = [f"LOT{(block + b) // 25:05d}" for b in uniq]
    dirs = np.array([f"{LINES[line[i]]}/{when[i]:%Y-%m-%d}/{lot[i]}/{serial[i]}/{SIDE}" for i in range(len(uniq))])
    return pd.DataFrame({
        "input_path": dirs[inv],
        "golden_path": cat.golden_dirs[obj],
        "label": family,
        "object_name": cat.name[obj],
        "boardname": np.asarray(serial)[inv],
        "line": np.asarray(LINES)[line][inv],
        "panel": [n.rsplit("@", 1)[1] for n in cat.name[obj]],
        "inspected_at": [when[i].isoformat(timespec="seconds") for i in inv],
        "aoi_program": [f"{PRODUCTS[cat.product[o]]}_{SIDE}_v7" for o in obj],
    })


def _write_images(writer: builder.ImageWriter, scenes: fr.Scenes, paths: list, rng: np.random.Generator) -> None:
    """Render in chunks; ``paths[k]`` is the file stem of row k (``<dir>/<object>``)."""
    quality = rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, len(paths))
    for start in range(0, len(paths), _CHUNK):
        idx = np.arange(start, min(len(paths), start + _CHUNK))
        images = fr.render(scenes.take(idx), rng)
        for j, k in enumerate(idx):
            for light in fr.LIGHTS:
                writer.save(paths[k].with_name(f"{paths[k].name}_{light}{IMAGE_EXT}"), images[light][j],
                            jpeg_quality=quality[k])


def write(ws: Workspace, preset: str, seed: int, say: Callable[[str], None]) -> dict:
    """Fill the (empty) workspace folder ``ws``; returns the manifest (``presets.build`` calls this)."""

    p = PRESETS[preset]
    writer = builder.ImageWriter()
    cat = _catalogue(p, np.random.default_rng([seed, _LAYOUT_STREAM]))
    say(f"golden references: {len(cat.name)} objects")
    golden = cat.scenes.take(np.arange(len(cat.name)))
    grng = np.random.default_rng([seed, _GOLDEN_STREAM])
    fr.capture(golden, grng, golden=True)
    _write_images(writer, golden, [ws.images / d / n for d, n in zip(cat.golden_dirs, cat.name)], grng)

    truth = []
    csv_of = {"train": ws.training_csv, "val": ws.validation_csv, "kpi": ws.kpi_csv, "mining": ws.mining_pool_csv}
    for split, (mix, stream, block) in SPLITS.items():
        rng = np.random.default_rng([seed, stream])
        family, hard = builder.draw_labels(rng, mix, {}, p.rows[split])
        board, obj = _assign(rng, cat, family, p.products)
        frame = _frame(split, block, board, obj, family, cat, rng)
        scenes = cat.scenes.take(obj)
        fr.production(scenes, rng)
        form = fr.add_defects(scenes, family, hard, rng)
        say(f"{split}: {len(frame)} rows")
        _write_images(writer, scenes, [ws.images / d / n for d, n in zip(frame["input_path"], frame["object_name"])],
                      rng)
        csv_of[split].parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv_of[split], index=False)
        truth.append(frame.assign(split=split, severity=np.where(family == "PASS", "", np.where(hard, "hard", "easy")),
                                  footprint=np.asarray(fr.KINDS)[cat.kind[obj]], form=form))

    say(f"AnomalyGen pool: {p.sdg} pairs")
    sdg = _write_sdg_pool(ws, p, seed, cat, writer)
    spec = builder.spec(p.rows, LIGHTS, IMAGE_SIZE, IMAGE_EXT)
    return builder.finish(ws, truth, sdg, writer, spec, {
        "generator": "tao-aoi field workspace", "generator_version": GENERATOR_VERSION, "preset": preset,
        "seed": seed, "image_size": fr.SIZE, "image_ext": IMAGE_EXT, "lights": list(fr.LIGHTS)})


def _write_sdg_pool(ws: Workspace, p: Preset, seed: int, cat: _Catalogue, writer: builder.ImageWriter):
    """AnomalyGen pairs: a good production image (OK, original_image/) and the same image with a
    synthesised defect (NG, reconstructed_image/), ``<product>-<object>+<LABEL>_<idx>_<light>.jpg``,
    with SDG_result.csv naming each NG file's label."""
    import pandas as pd

    rng = np.random.default_rng([seed, _SDG_STREAM])
    family, hard = builder.draw_labels(rng, SDG_MIX, {}, p.sdg)
    assert set(SDG_MIX) <= set(defaults.SDG_LABELS)
    obj = rng.integers(0, len(cat.name), p.sdg)
    ok = cat.scenes.take(obj)
    fr.production(ok, rng)
    ng = ok.take(np.arange(p.sdg))
    form = fr.add_defects(ng, family, hard, rng)
    redo = family == "PASS"  # an OK reconstruction still resynthesises the solder a little
    ng.solder[redo] *= rng.uniform(0.95, 1.05, (int(redo.sum()), ng.solder.shape[1])).astype(np.float32)
    templates = [f"{PRODUCTS[cat.product[o]]}-{cat.name[o]}" for o in obj]
    names = [f"{t}+{label}_{i:05d}" for i, (t, label) in enumerate(zip(templates, family))]
    state = rng.bit_generator.state
    for folder, scenes in (("original_image", ok), ("reconstructed_image", ng)):
        rng.bit_generator.state = state  # the same JPEG quality for a pair's two images
        _write_images(writer, scenes, [ws.sdg_pool / folder / n for n in names], rng)
    severity = np.where(family == "PASS", "", np.where(hard, "hard", "easy"))
    manifest = pd.DataFrame([
        {"image_name": f"{names[k]}_{light}{IMAGE_EXT}", "template": templates[k], "label": family[k],
         "index": k, "light": light, "severity": severity[k], "form": form[k]}
        for k in range(p.sdg) for light in fr.LIGHTS])
    manifest.to_csv(ws.sdg_pool / "SDG_result.csv", index=False)
    return manifest
