"""Train/validation and train/KPI leakage, compared on resolved sample identity.

A CSV path is relative to *some* directory: normally the image root, but hand-made or
workspace-relative CSVs write ``images/board/...`` (relative to the workspace) and the anchor's
raw-string comparison missed real leaks that way. Each distinct directory value is therefore
resolved to the directory that exists on disk (image root, then its parent = the workspace, then
the CSV's own folder) and keyed relative to the image root with ``./``, ``..`` and duplicate
slashes normalised. Identity = (resolved input directory, object_name); the label is not part of it
(``Missing`` vs ``MISSING`` must not hide a leak).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tao_aoi import path_keys


def resolve_dirs(values: pd.Series, images_root: str | Path, csv_dir: str | Path | None = None) -> pd.Series:
    """Normalised key (relative to the image root) for each directory value; one stat per unique value."""
    root = os.path.abspath(str(images_root))
    bases = [root, os.path.dirname(root)] + ([os.path.abspath(str(csv_dir))] if csv_dir else [])
    mapping = {}
    for value in pd.unique(values):
        chosen = root
        v = str(value)
        if not v.startswith("/"):
            for base in bases:
                if os.path.isdir(os.path.join(base, v)):
                    chosen = base
                    break
        mapping[value] = path_keys.normalise(v, chosen, root)
    return values.map(mapping)


def sample_keys(df: pd.DataFrame, images_root: str | Path, csv_path: str | Path | None = None) -> pd.Series:
    csv_dir = Path(csv_path).parent if csv_path else None
    dirs = resolve_dirs(df["input_path"], images_root, csv_dir)
    return dirs.str.rstrip("/") + "/" + df["object_name"].astype(str).str.strip()


def find_leaks(train: pd.DataFrame, train_csv: str | Path | None, against: list[tuple[str, pd.DataFrame]],
               images_root: str | Path) -> pd.DataFrame:
    """Rows of ``train`` whose sample also appears in any ``against`` set.

    Returns columns: line (1-based CSV line of the train row), key, label, against (set name).
    """
    tkeys = sample_keys(train, images_root, train_csv)
    found = []
    for name, other in against:
        okeys = set(sample_keys(other, images_root, name if os.path.isfile(name) else None))
        hit = tkeys.isin(okeys).to_numpy()
        if hit.any():
            idx = hit.nonzero()[0]
            found.append(pd.DataFrame({"line": idx + 2, "key": tkeys.iloc[idx].to_numpy(),
                                       "label": train["label"].iloc[idx].to_numpy(), "against": name}))
    if not found:
        return pd.DataFrame(columns=["line", "key", "label", "against"])
    return pd.concat(found, ignore_index=True).sort_values(["line", "against"], kind="stable")
