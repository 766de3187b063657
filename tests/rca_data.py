"""Small synthetic scored sets, images and pools for the KPI, gap-analysis and routing tests."""
from __future__ import annotations

import functools
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


DEFECT_FAMILIES = ("MISSING", "BRIDGE", "EXCESS_SOLDER", "SHIFT", "TOMBSTONE")


@functools.cache
def tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (90, 120, 60)).save(buf, format="PNG")
    return buf.getvalue()


def kpi_set(n: int, seed: int = 0, defect_share: float = 0.1, per_board: int = 50) -> pd.DataFrame:
    """A KPI-shaped inference.csv: mostly easy PASS, a PASS tail that looks defective, defects high
    with a few hard ones low, scores with 6 decimals as TAO writes them (ties happen at large n)."""
    rng = np.random.default_rng(seed)
    lab = np.where(rng.random(n) < defect_share, rng.choice(DEFECT_FAMILIES, n), "PASS")
    lab[0], lab[1] = "PASS", DEFECT_FAMILIES[0]
    defect = lab != "PASS"
    score = np.where(defect, rng.normal(0.8, 0.1, n), rng.beta(2, 12, n))
    hard_pass = ~defect & (rng.random(n) < 0.01)
    score[hard_pass] = rng.uniform(0.3, 0.9, int(hard_pass.sum()))
    hard_defect = defect & (rng.random(n) < 0.03)
    score[hard_defect] = rng.uniform(0.05, 0.4, int(hard_defect.sum()))
    board = np.arange(n) // per_board
    b = pd.Series(board).astype(str)
    return pd.DataFrame({"input_path": "boards/b" + b + "/test", "golden_path": "boards/b" + b + "/golden",
                         "label": lab, "object_name": "C" + pd.Series(np.arange(n) % per_board).astype(str),
                         "siamese_score": np.round(score.clip(0.0, 1.0), 6)})


def write_stub_images(root: Path, df: pd.DataFrame, lights: Sequence[str] = LIGHTS, ext: str = EXT) -> int:
    """A 4-pixel PNG for every (row, test/golden, light): cheap enough for property tests."""
    made, png = 0, tiny_png()
    for col in [c for c in ("input_path", "golden_path") if c in df.columns]:
        for d, names in df.groupby(col)["object_name"]:
            folder = root / str(d)
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                for light in lights:
                    (folder / f"{name}_{light}{ext}").write_bytes(png)
                    made += 1
    return made
