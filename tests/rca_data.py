"""Small synthetic scored sets, images and pools for the KPI, gap-analysis and routing tests."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from tao_aoi import cli

LIGHTS = ("SolderLight", "UniformLight")
EXT = ".png"


def scored_frame(n: int = 120, seed: int = 0, defect_labels: Sequence[str] = ("MISSING", "BRIDGE", "SHIFT"),
                 with_golden: bool = True) -> pd.DataFrame:
    """Unique samples, PASS-ish low scores, defects high, rounded so ties happen."""
    rng = np.random.default_rng(seed)
    lab = np.where(rng.random(n) < 0.6, "PASS", rng.choice(list(defect_labels), n))
    lab[0], lab[1] = "PASS", defect_labels[0]  # both classes always present
    score = np.round(np.where(lab == "PASS", rng.normal(0.3, 0.15, n), rng.normal(0.7, 0.15, n)), 2)
    df = pd.DataFrame({"input_path": [f"b{i % 5}/test" for i in range(n)], "label": lab,
                       "object_name": [f"C{i}" for i in range(n)], "siamese_score": score})
    if with_golden:
        df.insert(1, "golden_path", [f"b{i % 5}/golden" for i in range(n)])
    return df


def write_spec(path: Path, lights: Sequence[str] = LIGHTS, ext: str = EXT) -> Path:
    # Indices deliberately out of alphabetical order: lights() must follow the index.
    entries = "\n".join(f"      {name}: {i}" for i, name in enumerate(lights))
    path.write_text(f"dataset:\n  classify:\n    image_ext: {ext}\n    input_map:\n{entries}\n")
    return path


def write_images(root: Path, df: pd.DataFrame, lights: Sequence[str] = LIGHTS, ext: str = EXT) -> None:
    from PIL import Image

    cols = [c for c in ("input_path", "golden_path") if c in df.columns]
    for row in df.itertuples():
        for col in cols:
            for k, light in enumerate(lights):
                p = root / getattr(row, col) / f"{row.object_name}_{light}{ext}"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40, 24), (10 * k, 80 if col == "input_path" else 160, 30)).save(p)


def call(main: Callable, argv: Sequence[str], capsys) -> tuple[int, str, str]:
    """Run a command's main() through cli.run in-process: (exit code, stdout, stderr)."""
    try:
        cli.run(main, list(map(str, argv)))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
