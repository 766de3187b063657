"""A complete, deterministic demo workspace (DESIGN.md section 4) built from synthetic PCB scenes.

The data reproduces the situation the DEFT loop exists for:

- the base training and validation sets (one distribution, disjoint boards) have plenty of PASS,
  MISSING and BRIDGE, a few easy EXCESS_SOLDER, and no SHIFT or TOMBSTONE at all;
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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from tao_aoi import atomic, defaults, pcb_render as pr, train_spec
from tao_aoi.errors import UserError
from tao_aoi.layout import Workspace

GENERATOR_VERSION = 1
IMAGE_SIZE = 48
IMAGE_EXT = ".png"
REAL_FAMILIES = ("PASS",) + pr.FAMILIES

# Label mix per split (shares of rows) and the share of each defect family that is hard.
BASE_MIX = {"PASS": 0.74, "MISSING": 0.12, "BRIDGE": 0.12, "EXCESS_SOLDER": 0.02}
KPI_MIX = {"PASS": 0.66, "MISSING": 0.06, "BRIDGE": 0.06, "EXCESS_SOLDER": 0.06, "SHIFT": 0.08, "TOMBSTONE": 0.08}
MINING_MIX = {"PASS": 0.40, **{f: 0.12 for f in pr.FAMILIES}}
SDG_MIX = {"PASS": 0.35, "EXCESS_SOLDER": 0.35, "MISSING": 0.15, "BRIDGE": 0.15}
BASE_HARD = {"EXCESS_SOLDER": 0.0}  # the few base EXCESS_SOLDER rows are all easy
HARD_SHARE = 0.5


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
    "val": ("val", BASE_MIX, BASE_HARD, 2),
    "kpi": ("kpi", KPI_MIX, {}, 3),
    "mining": ("mining", MINING_MIX, {}, 4),
}
_LAYOUT_STREAM, _SDG_STREAM, _GOLDEN_STREAM = 0, 5, 6
_RENDER_CHUNK = 256


DEMO_BACKBONE = "fan_tiny_8_p4_hybrid"  # FAN takes a non-square input (linear concat) whose sides are multiples of 16
CHECKPOINT_INTERVAL = 10                # periodic TAO checkpoints; the best epoch is kept by the top-k checkpointer


def batch_size_for(preset: str) -> int:
    """The largest of ``defaults.DEMO_BATCH_SIZES`` that every set of the preset fills at least once
    (TAO refuses a data loader with fewer rows than the batch size)."""
    smallest = min(PRESETS[preset].rows.values())
    return next((b for b in defaults.DEMO_BATCH_SIZES if b <= smallest), 1)


def spec_dict(preset: str = "demo") -> dict:
    """The baseline spec the demo ships: a TAO 7.1.0 Visual ChangeNet classify spec that TAO can run
    on this workspace (tests merge it into NVIDIA's schema) and that the local backend reads too.

    The local model takes its hyper-parameters from TAO's own keys in the same role (see
    ``local_model``): the classifier head width ``model.classify.embed_dec`` is its hidden width,
    ``train.classify.cls_weight`` its cross-entropy class weights. Learnable difference module with
    ``loss: ce`` (TAO's rule), a FAN backbone with random init (no file to stage), two 48 px lights
    side by side (48 x 96, a multiple of 16), one validation per epoch so the top-k checkpointer
    (monitor ``val_loss``, which every TAO 7 build logs) keeps the best epoch as ``model_best_*``.
    """
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r} is not one of {', '.join(PRESETS)}")
    d = defaults.LOCAL_MODEL
    lights = {light: i for i, light in enumerate(pr.LIGHTS)}
    dataset_entry = {"csv_path": "", "images_dir": ""}
    epochs = d["train.num_epochs"]
    return {
        "task": "classify",
        "results_dir": "",
        "model": {
            "backbone": {"type": DEMO_BACKBONE, "pretrained_backbone_path": "", "freeze_backbone": False},
            "classify": {"difference_module": "learnable", "learnable_difference_modules": 4,
                         "embed_dec": d["model.classify.embed_dec"], "eval_margin": 0.5},
        },
        "train": {
            "num_epochs": epochs,
            "validation_interval": 1,
            "checkpoint_interval": min(CHECKPOINT_INTERVAL, epochs),
            "seed": d["train.seed"],
            "pretrained_model_path": "",
            "classify": {"loss": "ce", "cls_weight": list(d["train.classify.cls_weight"])},
            "optim": {"optim": "adam", "lr": d["train.optim.lr"], "weight_decay": d["train.optim.weight_decay"]},
            "checkpointer": {"enable_topk": True, "monitor": "val_loss", "mode": "min", "save_top_k": 1},
        },
        "dataset": {
            "classify": {
                "train_dataset": dict(dataset_entry), "validation_dataset": dict(dataset_entry),
                "test_dataset": dict(dataset_entry), "infer_dataset": dict(dataset_entry),
                "image_ext": IMAGE_EXT,
                "batch_size": batch_size_for(preset),
                "num_input": len(lights),
                "input_map": lights,
                "concat_type": "linear",
                "image_width": IMAGE_SIZE,
                "image_height": IMAGE_SIZE,
                "num_classes": 2,
                "num_golden": 1,
                "augmentation_config": {"augment": False},
            }
        },
        "evaluate": {"checkpoint": ""},
        "inference": {"checkpoint": ""},
    }


def _counts(mix: Mapping[str, float], total: int) -> dict[str, int]:
    """Exact integer counts summing to ``total`` (largest remainder, ties by mix order)."""
    labels = list(mix)
    raw = np.array([mix[k] for k in labels], float)
    raw = raw / raw.sum() * total
    out = np.floor(raw).astype(int)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: total - out.sum()]] += 1
    return {k: int(v) for k, v in zip(labels, out)}


def _labels(rng: np.random.Generator, mix: Mapping[str, float], hard_share: Mapping[str, float],
            total: int) -> tuple[np.ndarray, np.ndarray]:
    fam, hard = [], []
    for label, count in _counts(mix, total).items():
        n_hard = 0 if label == "PASS" else int(round(count * hard_share.get(label, HARD_SHARE)))
        fam += [label] * count
        hard += [True] * n_hard + [False] * (count - n_hard)
    order = rng.permutation(total)
    return np.asarray(fam, dtype=object)[order].astype(str), np.asarray(hard, bool)[order]


class _Writer:
    """PNG writer with a folder cache. Stored (level 0) deflate: noisy 48 px images barely compress,
    and it encodes 4x faster than level 1 (the build is encode-bound)."""

    def __init__(self) -> None:
        self._dirs: set[Path] = set()
        self.files = 0

    def png(self, path: Path, pixels: np.ndarray) -> None:
        from PIL import Image

        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        Image.fromarray(pixels).save(path, format="PNG", compress_level=0)
        self.files += 1


def _render_chunks(scenes: pr.Scenes, rng: np.random.Generator):
    n = len(scenes.footprint)
    for start in range(0, n, _RENDER_CHUNK):
        idx = np.arange(start, min(n, start + _RENDER_CHUNK))
        yield idx, pr.render(scenes.take(idx), IMAGE_SIZE, rng)


def build(out: str | Path, preset: str = "demo", seed: int = 0, *, force: bool = False,
          progress: Callable[[str], None] | None = None) -> dict:
    """Write the workspace at ``out`` (atomically: a failure leaves nothing). Returns the manifest."""
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r} is not one of {', '.join(PRESETS)}")
    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise UserError(f"{target} already exists and is not empty; choose another --out or pass --force to "
                        f"replace it")
    p = PRESETS[preset]
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    with atomic.atomic_dir(target) as tmp:
        manifest = _write(Workspace(tmp), p, preset, seed, say)
        manifest["build_sec"] = round(time.perf_counter() - started, 3)
        atomic.write_json(tmp / "demo_manifest.json", manifest, fsync=False)
    return manifest


def _write(ws: Workspace, p: Preset, preset: str, seed: int, say: Callable[[str], None]) -> dict:
    import pandas as pd

    writer = _Writer()
    lights = pr.LIGHTS
    designs = [f"BRD_{chr(ord('A') + i)}" for i in range(p.designs)]
    layout_rng = np.random.default_rng([seed, _LAYOUT_STREAM])
    golden = pr.layout(layout_rng, p.designs * p.refs)      # one nominal scene per (design, ref)
    refs = [f"{pr.FOOTPRINT_NAMES[fp]}{k % p.refs + 1}" for k, fp in enumerate(golden.footprint)]

    say("golden references")
    for idx, images in _render_chunks(golden, np.random.default_rng([seed, _GOLDEN_STREAM])):
        for j, k in enumerate(idx):
            for light in lights:
                writer.png(ws.images / "golden" / designs[k // p.refs] / f"{refs[k]}_{light}{IMAGE_EXT}",
                           images[light][j])

    truth = []
    for split, (folder, mix, hard_share, stream) in SPLITS.items():
        total = p.rows[split]
        rng = np.random.default_rng([seed, stream])
        family, hard = _labels(rng, mix, hard_share, total)
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
                    writer.png(ws.images / input_dirs[k] / f"{refs[scene_idx[k]]}_{light}{IMAGE_EXT}",
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
    truth_df = pd.concat(truth, ignore_index=True)[
        ["split", "input_path", "golden_path", "object_name", "label", "severity", "footprint"]]
    truth_df.to_csv(ws.root / "demo_truth.csv", index=False)

    ws.baseline_spec.parent.mkdir(parents=True, exist_ok=True)
    ws.baseline_spec.write_text(train_spec.dump(spec_dict(preset)), encoding="utf-8")
    ws.results.mkdir(parents=True, exist_ok=True)

    counts: dict[str, dict] = {}
    for split, grp in truth_df.groupby("split", sort=False):
        counts[split] = {label: {"easy": int((g.severity != "hard").sum()), "hard": int((g.severity == "hard").sum())}
                         for label, g in grp.groupby("label")}
    per_sample = sdg.drop_duplicates("index")["label"]
    counts["sdg"] = {label: int(n) for label, n in per_sample.value_counts().sort_index().items()}
    present = {k: sorted(v) for k, v in counts.items()}
    return {
        "generator": "tao-aoi demo workspace", "generator_version": GENERATOR_VERSION, "preset": preset,
        "seed": seed, "image_size": IMAGE_SIZE, "image_ext": IMAGE_EXT, "lights": list(lights),
        "files_written": writer.files, "counts": counts,
        "families": {
            "base_train": present["train"], "validation": present["val"], "kpi": present["kpi"],
            "sdg_pool": present["sdg"], "mining_pool": present["mining"],
            "missing_from_base_train": sorted(set(present["kpi"]) - set(present["train"])),
            "rare_in_base_train": sorted(k for k, v in counts["train"].items()
                                         if sum(v.values()) < 0.05 * p.rows["train"] and k != "PASS"),
        },
    }


def _write_sdg_pool(ws: Workspace, p: Preset, seed: int, golden: pr.Scenes, designs: list[str],
                    refs: list[str], writer: _Writer):
    """AnomalyGen output layout: reconstructed_image/ (NG) and original_image/ (its OK source) with
    identical names ``<T>+<LABEL>_<idx>_<light>.png`` and an ``SDG_result.csv`` manifest with one row
    per NG file (image_name, template, label, index, light, severity). The OK source is a real good
    part with its own nuisance, so an SDG pair differs only by the defect (and pixel noise)."""
    import pandas as pd

    rng = np.random.default_rng([seed, _SDG_STREAM])
    family, hard = _labels(rng, SDG_MIX, {}, p.sdg)
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
                    writer.png(root / folder / f"{names[k]}_{light}{IMAGE_EXT}", images[light][j])
    severity = np.where(family == "PASS", "", np.where(hard, "hard", "easy"))
    manifest = pd.DataFrame([
        {"image_name": f"{names[k]}_{light}{IMAGE_EXT}", "template": templates[k], "label": family[k],
         "index": k, "light": light, "severity": severity[k]}
        for k in range(p.sdg) for light in pr.LIGHTS])
    manifest.to_csv(root / "SDG_result.csv", index=False)
    return manifest


def describe(manifest: Mapping) -> str:
    """Human summary of a manifest (printed by the CLI)."""
    fam = manifest["families"]
    lines = [f"preset {manifest['preset']} seed {manifest['seed']}: {manifest['files_written']} images in "
             f"{manifest.get('build_sec', 0):.1f} s"]
    for split in ("train", "val", "kpi", "mining"):
        c = manifest["counts"][split]
        lines.append(f"  {split:7s} " + ", ".join(f"{k}={v['easy'] + v['hard']}" for k, v in sorted(c.items())))
    lines.append("  sdg     " + ", ".join(f"{k}={v}" for k, v in manifest["counts"]["sdg"].items()))
    lines.append(f"  missing from base train: {', '.join(fam['missing_from_base_train'])}; "
                 f"rare: {', '.join(fam['rare_in_base_train']) or 'none'}")
    return "\n".join(lines)


def similarity_check(workspace: str | Path, floor: float = defaults.MIN_SIMILARITY,
                     k: int = defaults.TOP_K_PER_TARGET):
    """Is the mining floor meaningful on this workspace? For every KPI row (the weak samples DEFT
    mines for come from there), its ``k`` nearest mining-pool rows by the local embedder's cosine:
    one line per (label, severity) with the share of targets that find a same-label row at or above
    ``floor``, the share of kept neighbours (>= floor) that have the target's label, and how many
    other-label pool rows per target clear the floor."""
    import pandas as pd

    from tao_aoi import changenet_csv, features

    ws = Workspace.at(workspace)
    spec = train_spec.load(ws.baseline_spec)
    lights, ext = train_spec.lights(spec), train_spec.image_ext(spec)
    kpi = changenet_csv.read(ws.kpi_csv)
    pool = changenet_csv.read(ws.mining_pool_csv)
    sim = features.embeddings(kpi, ws.images, lights, ext) @ features.embeddings(pool, ws.images, lights, ext).T
    truth = pd.read_csv(ws.root / "demo_truth.csv", dtype=str, keep_default_na=False)
    severity = kpi.merge(truth[truth["split"] == "kpi"], on=["input_path", "object_name"], how="left",
                         suffixes=("", "_t"))["severity"].fillna("").to_numpy()
    pool_labels = pool["label"].to_numpy()
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    top_sim = np.take_along_axis(sim, top, axis=1)
    rows = []
    for (label, sev), idx in kpi.groupby([kpi["label"], severity]).indices.items():
        kept = top_sim[idx] >= floor
        same = (pool_labels[top[idx]] == label) & kept
        other = (sim[idx][:, pool_labels != label] >= floor).sum(axis=1)
        rows.append({"label": label, "severity": sev, "targets": len(idx),
                     "with_same_label_hit": float(same.any(axis=1).mean()),
                     "kept_same_label_share": float(same.sum() / max(int(kept.sum()), 1)),
                     "other_label_rows_above_floor": float(other.mean())})
    return pd.DataFrame(rows)


def pool_rows_for_missing_families(workspace: str | Path):
    """Every pool row of the families the base training set lacks or nearly lacks, as ChangeNet
    rows: mining-pool rows as they are, AnomalyGen pairs with absolute paths (NG as input, its OK
    source as golden). Base + these rows is the upper bound DEFT can reach from the pools."""
    import json

    import pandas as pd

    from tao_aoi import changenet_csv

    ws = Workspace.at(workspace)
    fam = json.loads((ws.root / "demo_manifest.json").read_text(encoding="utf-8"))["families"]
    wanted = set(fam["missing_from_base_train"]) | set(fam["rare_in_base_train"])
    pool = changenet_csv.read(ws.mining_pool_csv)
    manifest = pd.read_csv(ws.sdg_pool / "SDG_result.csv", dtype=str, keep_default_na=False)
    manifest = manifest[manifest["label"].isin(wanted)].drop_duplicates("index")
    stems = [Path(name).stem.rsplit("_", 1)[0] for name in manifest["image_name"]]  # drop _<light>
    sdg = pd.DataFrame({"input_path": str(ws.sdg_pool / "reconstructed_image"),
                        "golden_path": str(ws.sdg_pool / "original_image"),
                        "label": manifest["label"].to_numpy(), "object_name": stems})
    return pd.concat([pool[pool["label"].isin(wanted)], sdg], ignore_index=True)
