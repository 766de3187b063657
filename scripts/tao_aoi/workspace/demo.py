"""A complete, deterministic demo workspace (DESIGN.md section 4) built from synthetic PCB scenes.

The data reproduces the situation the DEFT loop exists for:

- the base training set has plenty of PASS, MISSING and BRIDGE, a few easy EXCESS_SOLDER, and no
  SHIFT or TOMBSTONE at all;
- the validation set is a held-out production sample (its own boards) with a few of every family:
  validated on the base distribution alone, every AutoML trial scored FAR 0 and its ranking told
  nothing about the KPI (Spearman +0.01 over 30 trials; with every family +0.67, and +0.75 for
  the objective AutoML uses, bench/automl.py);
- the KPI set holds every family, half of each defect family hard;
- the AnomalyGen pool holds synthetic NG/OK pairs only for the SDG-supported labels
  (``defaults.SDG_LABELS``), in AnomalyGen's output layout;
- the mining pool holds labelled real images of every family, including those SDG cannot make.

Golden references are per board design and component (``images/golden/<design>/``) and shared by
every board of that design, as on a real line; test images live under one folder per board and
split, so validation and KPI rows never share a sample with training rows or the pools.
``demo_manifest.json`` records the counts per split, label and severity; ``demo_truth.csv`` the
severity of every row (for tests and benchmarks; the pipeline never reads it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from tao_aoi.layout import Workspace
from tao_aoi.workspace import builder
from tao_aoi.workspace import demo_render as pr

GENERATOR_VERSION = 1
IMAGE_SIZE = 48
IMAGE_EXT = ".png"
LIGHTS = pr.LIGHTS
REAL_FAMILIES = ("PASS",) + pr.FAMILIES

# Label mix per split (shares of rows) and the share of each defect family that is hard.
BASE_MIX = {"PASS": 0.74, "MISSING": 0.12, "BRIDGE": 0.12, "EXCESS_SOLDER": 0.02}
VAL_MIX = {"PASS": 0.70, "MISSING": 0.06, "BRIDGE": 0.06, "EXCESS_SOLDER": 0.06, "SHIFT": 0.06, "TOMBSTONE": 0.06}
KPI_MIX = {"PASS": 0.66, "MISSING": 0.06, "BRIDGE": 0.06, "EXCESS_SOLDER": 0.06, "SHIFT": 0.08, "TOMBSTONE": 0.08}
MINING_MIX = {"PASS": 0.40, **{f: 0.12 for f in pr.FAMILIES}}
SDG_MIX = {"PASS": 0.35, "EXCESS_SOLDER": 0.35, "MISSING": 0.15, "BRIDGE": 0.15}
BASE_HARD = {"EXCESS_SOLDER": 0.0}  # the few base EXCESS_SOLDER rows are all easy


@dataclass(frozen=True)
class Preset:
    designs: int
    refs: int                      # components per board design
    rows: Mapping[str, int]        # train, val, kpi, mining
    sdg: int                       # synthetic pairs in the AnomalyGen pool


PRESETS = {
    "tiny": Preset(designs=2, refs=12, rows={"train": 160, "val": 60, "kpi": 100, "mining": 160}, sdg=150),
    "demo": Preset(designs=4, refs=24, rows={"train": 1500, "val": 500, "kpi": 800, "mining": 2000}, sdg=400),
    "large": Preset(designs=8, refs=24, rows={"train": 16000, "val": 4000, "kpi": 6000, "mining": 10000},
                    sdg=2000),
}
SPLITS = {  # split -> (image folder, label mix, hard shares, rng stream)
    "train": ("train", BASE_MIX, BASE_HARD, 1),
    "val": ("val", VAL_MIX, {}, 2),
    "kpi": ("kpi", KPI_MIX, {}, 3),
    "mining": ("mining", MINING_MIX, {}, 4),
}
_LAYOUT_STREAM, _SDG_STREAM, _GOLDEN_STREAM = 0, 5, 6
_RENDER_CHUNK = 256





def _render_chunks(scenes: pr.Scenes, rng: np.random.Generator):
    n = len(scenes.footprint)
    for start in range(0, n, _RENDER_CHUNK):
        idx = np.arange(start, min(n, start + _RENDER_CHUNK))
        yield idx, pr.render(scenes.take(idx), IMAGE_SIZE, rng)


def write(ws: Workspace, preset: str, seed: int, say: Callable[[str], None]) -> dict:
    """Fill the (empty) workspace folder ``ws``; returns the manifest (``presets.build`` calls this)."""
    import pandas as pd

    p = PRESETS[preset]
    writer = builder.ImageWriter()
    lights = LIGHTS
    designs = [f"BRD_{chr(ord('A') + i)}" for i in range(p.designs)]
    layout_rng = np.random.default_rng([seed, _LAYOUT_STREAM])
    golden = pr.layout(layout_rng, p.designs * p.refs)      # one nominal scene per (design, ref)
    refs = [f"{pr.FOOTPRINT_NAMES[fp]}{k % p.refs + 1}" for k, fp in enumerate(golden.footprint)]

    say("golden references")
    for idx, images in _render_chunks(golden, np.random.default_rng([seed, _GOLDEN_STREAM])):
        for j, k in enumerate(idx):
            for light in lights:
                writer.save(ws.images / "golden" / designs[k // p.refs] / f"{refs[k]}_{light}{IMAGE_EXT}",
                           images[light][j])

    truth = []
    for split, (folder, mix, hard_share, stream) in SPLITS.items():
        total = p.rows[split]
        rng = np.random.default_rng([seed, stream])
        family, hard = builder.draw_labels(rng, mix, hard_share, total)
        slot = np.arange(total)
        board = slot // p.refs
        design = board % p.designs
        scene_idx = design * p.refs + slot % p.refs
        scenes = golden.take(scene_idx)
        pr.add_nuisance(scenes, rng)
        pr.add_defects(scenes, family, hard, rng)
        board_names = np.array([f"{designs[d]}_{b + 1:04d}" for b, d in zip(board, design)])
        input_dirs = np.char.add(f"{folder}/", board_names)
        say(f"{split}: {total} rows")
        for idx, images in _render_chunks(scenes, rng):
            for j, k in enumerate(idx):
                for light in lights:
                    writer.save(ws.images / input_dirs[k] / f"{refs[scene_idx[k]]}_{light}{IMAGE_EXT}",
                               images[light][j])
        frame = pd.DataFrame({
            "input_path": input_dirs,
            "golden_path": [f"golden/{designs[d]}" for d in design],
            "label": family,
            "object_name": [refs[k] for k in scene_idx],
            "boardname": board_names,
        })
        csv_path = {"train": ws.training_csv, "val": ws.validation_csv, "kpi": ws.kpi_csv,
                    "mining": ws.mining_pool_csv}[split]
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv_path, index=False)
        truth.append(frame.assign(split=split, severity=np.where(family == "PASS", "", np.where(hard, "hard", "easy")),
                                  footprint=[pr.FOOTPRINT_NAMES[golden.footprint[k]] for k in scene_idx]))

    say(f"AnomalyGen pool: {p.sdg} pairs")
    sdg = _write_sdg_pool(ws, p, seed, golden, designs, refs, writer)
    return builder.finish(ws, truth, sdg, writer, builder.spec(p.rows, LIGHTS, IMAGE_SIZE, IMAGE_EXT), {
        "generator": "tao-aoi demo workspace", "generator_version": GENERATOR_VERSION, "preset": preset,
        "seed": seed, "image_size": IMAGE_SIZE, "image_ext": IMAGE_EXT, "lights": list(lights)})


def _write_sdg_pool(ws: Workspace, p: Preset, seed: int, golden: pr.Scenes, designs: list[str],
                    refs: list[str], writer: builder.ImageWriter):
    """AnomalyGen output layout: reconstructed_image/ (NG) and original_image/ (its OK source) with
    identical names ``<T>+<LABEL>_<idx>_<light>.png`` and an ``SDG_result.csv`` manifest with one row
    per NG file (image_name, template, label, index, light, severity). The OK source is a real good
    part with its own nuisance, so an SDG pair differs only by the defect (and pixel noise)."""
    import pandas as pd

    rng = np.random.default_rng([seed, _SDG_STREAM])
    family, hard = builder.draw_labels(rng, SDG_MIX, {}, p.sdg)
    scene_idx = rng.integers(0, len(golden.footprint), p.sdg)
    ok = golden.take(scene_idx)
    pr.add_nuisance(ok, rng)
    ng = ok.take(np.arange(p.sdg))
    pr.add_defects(ng, family, hard, rng)
    redo = family == "PASS"  # an OK reconstruction still resynthesises solder a little
    ng.solder[redo] = np.clip(ng.solder[redo] * rng.uniform(0.95, 1.05, (int(redo.sum()), 2)), 0.82, 1.18)
    templates = [f"{designs[k // p.refs]}-{refs[k]}" for k in scene_idx]
    names = [f"{t}+{label}_{i:05d}" for i, (t, label) in enumerate(zip(templates, family))]
    root = ws.sdg_pool
    for folder, scenes in (("original_image", ok), ("reconstructed_image", ng)):
        for idx, images in _render_chunks(scenes, rng):
            for j, k in enumerate(idx):
                for light in pr.LIGHTS:
                    writer.save(root / folder / f"{names[k]}_{light}{IMAGE_EXT}", images[light][j])
    severity = np.where(family == "PASS", "", np.where(hard, "hard", "easy"))
    manifest = pd.DataFrame([
        {"image_name": f"{names[k]}_{light}{IMAGE_EXT}", "template": templates[k], "label": family[k],
         "index": k, "light": light, "severity": severity[k]}
        for k in range(p.sdg) for light in pr.LIGHTS])
    manifest.to_csv(root / "SDG_result.csv", index=False)
    return manifest


