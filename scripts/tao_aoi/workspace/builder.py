"""What both synthetic generators share: label mixes drawn to exact counts, the image writer, the
TAO spec a generated workspace ships, and the files and manifest every workspace ends with.

The demo (``demo``) and field (``field``) generators draw different scenes; everything here is
independent of what the images show, so neither generator imports the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tao_aoi import defaults
from tao_aoi.layout import Workspace
from tao_aoi.tao import train_spec

HARD_SHARE = 0.5  # share of each defect family drawn hard, unless a split says otherwise
DEMO_BACKBONE = "fan_tiny_8_p4_hybrid"  # FAN takes a non-square input (linear concat) whose sides are multiples of 16
CHECKPOINT_INTERVAL = 10                # periodic TAO checkpoints; the best epoch is kept by the top-k checkpointer


def batch_size(rows: Mapping[str, int]) -> int:
    """The largest of ``defaults.DEMO_BATCH_SIZES`` that every set fills at least once (TAO refuses a
    data loader with fewer rows than the batch size)."""
    return next((b for b in defaults.DEMO_BATCH_SIZES if b <= min(rows.values())), 1)


def spec(rows: Mapping[str, int], lights: Sequence[str], image_size: int, image_ext: str) -> dict:
    """The baseline spec the demo ships: a TAO 7.1.0 Visual ChangeNet classify spec that TAO can run
    on this workspace (tests merge it into NVIDIA's schema) and that the local backend reads too.

    The local model takes its hyper-parameters from TAO's own keys in the same role (see
    ``model.ensemble``): the classifier head width ``model.classify.embed_dec`` is its hidden width,
    ``train.classify.cls_weight`` its cross-entropy class weights. Learnable difference module with
    ``loss: ce`` (TAO's rule), a FAN backbone with random init (no file to stage), two 48 px lights
    side by side (48 x 96, a multiple of 16), one validation per epoch so the top-k checkpointer
    (monitor ``val_loss``, which every TAO 7 build logs) keeps the best epoch as ``model_best_*``.
    TAO's input side is the crop size rounded up to a multiple of 16 (the field preset's 72 px crops
    are read at 80); the local model reads the images at their own size.
    """
    side = 16 * -(-int(image_size) // 16)
    d = defaults.LOCAL_MODEL
    lights = {light: i for i, light in enumerate(lights)}
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
                "image_ext": image_ext,
                "batch_size": batch_size(rows),
                "num_input": len(lights),
                "input_map": lights,
                "concat_type": "linear",
                "image_width": side,
                "image_height": side,
                "num_classes": 2,
                "num_golden": 1,
                "augmentation_config": {"augment": False},
            }
        },
        "evaluate": {"checkpoint": ""},
        "inference": {"checkpoint": ""},
    }


def counts(mix: Mapping[str, float], total: int) -> dict[str, int]:
    """Exact integer counts summing to ``total`` (largest remainder, ties by mix order)."""
    labels = list(mix)
    raw = np.array([mix[k] for k in labels], float)
    raw = raw / raw.sum() * total
    out = np.floor(raw).astype(int)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: total - out.sum()]] += 1
    return {k: int(v) for k, v in zip(labels, out)}


def draw_labels(rng: np.random.Generator, mix: Mapping[str, float], hard_share: Mapping[str, float],
            total: int) -> tuple[np.ndarray, np.ndarray]:
    fam, hard = [], []
    for label, count in counts(mix, total).items():
        n_hard = 0 if label == "PASS" else int(round(count * hard_share.get(label, HARD_SHARE)))
        fam += [label] * count
        hard += [True] * n_hard + [False] * (count - n_hard)
    order = rng.permutation(total)
    return np.asarray(fam, dtype=object)[order].astype(str), np.asarray(hard, bool)[order]


class ImageWriter:
    """Image files with a folder cache. PNG is stored (level 0) deflate: noisy small images barely
    compress, and it encodes 4x faster than level 1 (the build is encode-bound)."""

    def __init__(self) -> None:
        self._dirs: set[Path] = set()
        self.files = 0

    def save(self, path: Path, pixels: np.ndarray, jpeg_quality: int = 90) -> None:
        from PIL import Image

        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        if path.suffix.lower() in (".jpg", ".jpeg"):
            Image.fromarray(pixels).save(path, format="JPEG", quality=int(jpeg_quality))
        else:
            Image.fromarray(pixels).save(path, format="PNG", compress_level=0)
        self.files += 1


def finish(ws: Workspace, truth: list, sdg, writer: ImageWriter, spec: dict, about: dict) -> dict:
    """The parts every synthetic workspace shares: demo_truth.csv (split, paths, label, severity,
    footprint per row, and the defect's ``form`` where the generator draws forms), the baseline spec,
    results/, and the manifest (counts per split, label and severity; which families base training
    lacks or nearly lacks)."""
    import pandas as pd

    truth_df = pd.concat(truth, ignore_index=True)
    truth_df = truth_df[["split", "input_path", "golden_path", "object_name", "label", "severity", "footprint"]
                        + (["form"] if "form" in truth_df.columns else [])]
    truth_df.to_csv(ws.root / "demo_truth.csv", index=False)
    ws.baseline_spec.parent.mkdir(parents=True, exist_ok=True)
    ws.baseline_spec.write_text(train_spec.dump(spec), encoding="utf-8")
    ws.results.mkdir(parents=True, exist_ok=True)

    tally: dict[str, dict] = {}
    for split, grp in truth_df.groupby("split", sort=False):
        tally[split] = {label: {"easy": int((g.severity != "hard").sum()), "hard": int((g.severity == "hard").sum())}
                        for label, g in grp.groupby("label")}
    per_sample = sdg.drop_duplicates("index")["label"]
    tally["sdg"] = {label: int(n) for label, n in per_sample.value_counts().sort_index().items()}
    present = {k: sorted(v) for k, v in tally.items()}
    n_train = sum(sum(v.values()) for v in tally["train"].values())
    return {
        **about, "files_written": writer.files, "counts": tally,
        "families": {
            "base_train": present["train"], "validation": present["val"], "kpi": present["kpi"],
            "sdg_pool": present["sdg"], "mining_pool": present["mining"],
            "missing_from_base_train": sorted(set(present["kpi"]) - set(present["train"])),
            "rare_in_base_train": sorted(k for k, v in tally["train"].items()
                                         if sum(v.values()) < 0.05 * n_train and k != "PASS"),
        },
    }
