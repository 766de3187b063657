"""A hand-sized workspace for stage tests: a few rows per CSV, 2 lights, 8x8 PNGs, exact control.

The demo generator (make_demo_workspace.py) makes realistic data; these tests need precisely
chosen counts (e.g. a pool one sample short) and hostile variants (prefixes, label spellings).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

LIGHTS = ("SolderLight", "UniformLight")
SPEC = {
    "dataset": {"classify": {"input_map": {"SolderLight": 0, "UniformLight": 1}, "image_ext": ".png",
                             "batch_size": 16}},
    "train": {"num_epochs": 3, "optim": {"lr": 0.001}},
}


def png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value % 256, np.uint8)).save(path)


def sample(root: Path, rel_dir: str, obj: str, value: int) -> None:
    for light in LIGHTS:
        png(root / rel_dir / f"{obj}_{light}.png", value)


def rows(root: Path, name: str, labels: list[str], golden: str = "golden") -> pd.DataFrame:
    out = []
    for i, lab in enumerate(labels):
        obj = f"C{i}@1"
        sample(root, f"{name}/board{i % 3}", obj, 10 * i + 3)
        sample(root, f"{golden}/board{i % 3}", obj, 7)
        out.append({"input_path": f"{name}/board{i % 3}", "golden_path": f"{golden}/board{i % 3}",
                    "label": lab, "object_name": obj, "boardname": f"B{i % 3}"})
    return pd.DataFrame(out)


def build(ws: Path, *, pool_samples: dict[str, int] | None = None, mining_labels: list[str] | None = None) -> Path:
    img = ws / "images"
    img.mkdir(parents=True, exist_ok=True)
    (ws / "specs").mkdir(parents=True, exist_ok=True)
    (ws / "specs" / "baseline_spec.yaml").write_text(yaml.safe_dump(SPEC))
    for rel, name, labs in (
        ("train/base/training_set.csv", "train", ["PASS"] * 6 + ["MISSING", "BRIDGE"]),
        ("train/base/validation_set.csv", "val", ["PASS"] * 4 + ["MISSING"]),
        ("kpi/testing_set.csv", "kpi", ["PASS"] * 5 + ["MISSING", "SHIFT"]),
        ("augmentation/mining_pool/mining_pool.csv", "pool", mining_labels or ["PASS", "SHIFT", "SHIFT", "MISSING"]),
    ):
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        rows(img, name, labs).to_csv(p, index=False)
    add_sdg_pool(ws / "augmentation" / "anomalygen", pool_samples or {"MISSING": 4, "BRIDGE": 3, "PASS": 3})
    return ws


def add_sdg_pool(pool: Path, counts: dict[str, int], lights=LIGHTS) -> None:
    for label, n in counts.items():
        for i in range(n):
            for light in lights:
                name = f"tmpl+{label}_{i}_{light}.png"
                png(pool / "reconstructed_image" / name, 200 + i)
                png(pool / "original_image" / name, 20 + i)
