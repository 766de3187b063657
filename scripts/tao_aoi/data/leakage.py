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
from tao_aoi.errors import UserError


def _resolve(values: pd.Series, images_root: str | Path, csv_dir: str | Path | None) -> dict:
    """value -> (normalised key, whether the directory exists on disk); one stat per unique value."""
    root = os.path.abspath(str(images_root))
    bases = [root, os.path.dirname(root)] + ([os.path.abspath(str(csv_dir))] if csv_dir else [])
    mapping = {}
    for value in pd.unique(values):
        chosen, found = root, False
        v = str(value)
        if v.strip().startswith("/"):
            found = os.path.isdir(v.strip())
        else:
            for base in bases:
                if os.path.isdir(os.path.join(base, v)):
                    chosen, found = base, True
                    break
        mapping[value] = (path_keys.normalise(v, chosen, root), found)
    return mapping


def resolve_dirs(values: pd.Series, images_root: str | Path, csv_dir: str | Path | None = None) -> pd.Series:
    """Normalised key (relative to the image root) for each directory value; one stat per unique value."""
    mapping = _resolve(values, images_root, csv_dir)
    return values.map({k: key for k, (key, _) in mapping.items()})


def unresolved(df: pd.DataFrame, images_root: str | Path, csv_path: str | Path) -> list[str]:
    """input_path values that are no folder under the image root, its parent or the CSV's folder."""
    mapping = _resolve(df["input_path"], images_root, Path(csv_path).parent)
    return [v for v, (_, found) in mapping.items() if not found]


def require_resolved(df: pd.DataFrame, images_root: str | Path, csv_path: str | Path, what: str) -> None:
    """Refuse a CSV whose sample folders do not exist: its identity cannot be resolved, so a leak
    could hide behind a prefix (``images/x`` vs ``x``) and "no leakage" would be a guess."""
    missing = unresolved(df, images_root, csv_path)
    if missing:
        line = int((df["input_path"] == missing[0]).to_numpy().argmax()) + 2
        raise UserError(
            f"{what} {csv_path} line {line}: input_path {missing[0]!r} is no folder under the image root "
            f"{os.path.abspath(str(images_root))}, its parent or the CSV's folder ({len(missing)} such folder(s)); "
            f"leakage cannot be checked on paths that do not resolve - pass --images-root (the folder the CSV "
            f"paths are relative to)")


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
