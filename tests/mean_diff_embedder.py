"""A test embedder whose every similarity is known: per light, mean input pixel minus mean golden
pixel (a 2-D vector whose direction a test chooses with ``put``). Used by the mining and SDG tests."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import mini_workspace
from tao_aoi.backends.base import COMPLETE, ERROR, Backend, JobHandle
from tao_aoi.data import changenet_csv
from tao_aoi.deft import mining
from tao_aoi.tao import train_spec

GOLD = 100  # golden pixel value; a sample's input pixel is GOLD + its vector component per light


# ------------------------------------------------------------------ test embedder


class MeanDiffBackend(Backend):
    """Embeds a row as [mean(input) - mean(golden) per light]; records which CSVs it embedded."""

    name = "test"

    def __init__(self, version: str = "1", fail_on: str | None = None, write_then_fail: bool = False):
        self.version, self.fail_on, self.write_then_fail, self.calls = version, fail_on, write_then_fail, []

    def submit_embed(self, job):
        self.calls.append(Path(job.csv).name)
        failing = self.fail_on is not None and self.fail_on in Path(job.csv).name
        if failing and not self.write_then_fail:
            return JobHandle(self.name, "embed", str(len(self.calls)), Path(job.output).parent, ERROR, "test failure")
        spec = train_spec.load(job.spec)
        lights, ext = train_spec.lights(spec), train_spec.image_ext(spec)
        df = changenet_csv.read(job.csv)

        def means(col, light):
            return np.array([np.asarray(Image.open(f), dtype=np.float64).mean()
                             for f in changenet_csv.image_files(df, job.images_root, col, light, ext)])

        vec = np.stack([means("input_path", lt) - means("golden_path", lt) for lt in lights], axis=1)
        pd.DataFrame({"embedding": list(vec.astype(np.float32))}).to_parquet(job.output)
        mining.settings_file(Path(job.output)).write_text(json.dumps(
            {"embedder": "test-mean-diff", "version": self.version, "lights": lights}))
        return JobHandle(self.name, "embed", str(len(self.calls)), Path(job.output).parent,
                         ERROR if failing else COMPLETE, "test failure" if failing else "")

    def status(self, handle):
        return handle.state

    def cancel(self, handle):
        pass

    def submit_train(self, job):
        raise NotImplementedError

    def submit_infer(self, job):
        raise NotImplementedError


# ------------------------------------------------------------------ a workspace with chosen directions


def put(root: Path, rel_dir: str, obj: str, degrees: float, radius: int = 90) -> None:
    """Images whose test embedding points at ``degrees`` (input = GOLD + vector per light)."""
    vec = (round(radius * math.cos(math.radians(degrees))), round(radius * math.sin(math.radians(degrees))))
    for light, v in zip(mini_workspace.LIGHTS, vec):
        mini_workspace.png(root / rel_dir / f"{obj}_{light}.png", GOLD + v)
        mini_workspace.png(root / f"{rel_dir}_golden" / f"{obj}_{light}.png", GOLD)


def cos_deg(a: float) -> float:
    return math.cos(math.radians(a))
