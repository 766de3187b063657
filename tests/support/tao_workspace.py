"""A small TAO-shaped workspace for backend tests that need no real pixels (fake TAO, script checks)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

LIGHTS = ("SolderLight", "UniformLight")


RADIO = "c_radio_v2_vit_base_patch16_224"


def make(ws: Path, rows: int = 6, lights: tuple[str, ...] = LIGHTS, backbone: str = RADIO) -> Path:
    """CSVs in separate folders, every referenced image file present (a few bytes each), and a
    spec TAO 7.1.0 accepts and could run: a RADIO ViT needs a square input, so the lights are
    stacked in a 1 x n grid of 224 x (224 n) images (TAO stacks an odd number of lights top to
    bottom, which is the same layout); the euclidean difference module with its contrastive loss."""
    records = []
    for i in range(rows):
        records.append({"input_path": f"boards/b{i % 2}/test", "golden_path": f"boards/b{i % 2}/golden",
                        "label": "PASS" if i % 2 else "MISSING", "object_name": f"C{i}", "boardname": f"b{i % 2}"})
    for r in records:
        for col in ("input_path", "golden_path"):
            for light in lights:
                p = ws / "images" / r[col] / f"{r['object_name']}_{light}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(b"png")
    for rel in ("train/base/training_set.csv", "train/base/validation_set.csv", "kpi/testing_set.csv"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records).to_csv(ws / rel, index=False)
    spec = {"task": "classify",
            "train": {"num_epochs": 3, "optim": {"lr": 1e-4}},
            "model": {"backbone": {"type": backbone}},
            "dataset": {"classify": {"input_map": {light: i for i, light in enumerate(lights)},
                                     "image_ext": ".png", "num_input": len(lights), "batch_size": 2,
                                     "concat_type": "grid", "grid_map": {"x": 1, "y": len(lights)},
                                     "image_height": 224, "image_width": 224 * len(lights)}}}
    (ws / "specs").mkdir(parents=True, exist_ok=True)
    (ws / "specs" / "baseline_spec.yaml").write_text(yaml.safe_dump(spec))
    return ws


def train_job(ws: Path, out: Path, **kw):
    """A TrainJob on a workspace made by ``make``: its baseline spec, base training and validation sets."""
    from tao_aoi.backends.base import TrainJob

    return TrainJob(spec=ws / "specs/baseline_spec.yaml", train_csv=ws / "train/base/training_set.csv",
                    val_csv=ws / "train/base/validation_set.csv", images_root=ws / "images", output_dir=out, **kw)
