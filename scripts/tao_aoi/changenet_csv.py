"""Reading and checking ChangeNet CSVs (input_path, golden_path, label, object_name, ...).

One reader for every script: strings only (no type guessing), canonical labels, and errors that
name the file, the column or the 1-based CSV line. Extra columns (boardname, ...) are kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from tao_aoi import labels, path_keys
from tao_aoi.errors import UserError

REQUIRED = ("input_path", "golden_path", "label", "object_name")


def read(path: str | Path, required: Sequence[str] = REQUIRED, *, what: str = "ChangeNet CSV",
         allow_empty: bool = False, canonicalize: bool = True) -> pd.DataFrame:
    """Read a CSV as strings. ``canonicalize=False`` keeps raw labels (validate_training_csv reports them)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise UserError(f"{what} {p} is empty (no header); it needs columns {', '.join(required)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {p} cannot be parsed as CSV: {' '.join(str(exc).split())}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{what} {p} is missing column {missing[0]!r} (has: {', '.join(df.columns)})")
    if df.empty and not allow_empty:
        raise UserError(f"{what} {p} has a header but no rows")
    for col in required:
        values = df[col].str.strip()
        blank = np.flatnonzero((values == "").to_numpy())
        if blank.size:
            raise UserError(f"{what} {p} line {int(blank[0]) + 2}: empty {col!r}; fill it or drop the row")
        df[col] = values
    if "label" in df.columns and canonicalize:
        df["label"] = canonical_labels(df["label"], p, what)
    return df


def canonical_labels(col: pd.Series, path: Path | str, what: str = "CSV") -> pd.Series:
    uniq = pd.unique(col)
    mapping = {u: labels.canonical_label(u) for u in uniq}
    bad = [u for u, c in mapping.items() if not labels.is_valid_canonical(c)]
    if bad:
        line = int(np.flatnonzero((col == bad[0]).to_numpy())[0]) + 2
        raise UserError(f"{what} {path} line {line}: label {bad[0]!r} is not a label (PASS or a defect name "
                        f"such as MISSING)")
    return col.map(mapping)


def image_file(root: str, rel_dir: str, object_name: str, light: str, ext: str) -> str:
    d = rel_dir if rel_dir.startswith("/") else f"{root.rstrip('/')}/{rel_dir}"
    return f"{d.rstrip('/')}/{object_name}_{light}{ext}"


def image_files(df: pd.DataFrame, root: str | Path, column: str, light: str, ext: str) -> np.ndarray:
    """Vectorised ``<root>/<df[column]>/<object_name>_<light><ext>`` for every row."""
    root_s = str(root).rstrip("/")
    dirs = df[column].astype(str)
    absolute = dirs.str.startswith("/")
    base = np.where(absolute, dirs, root_s + "/" + dirs)
    base = pd.Series(base, index=df.index).str.rstrip("/")
    return (base + "/" + df["object_name"].astype(str) + f"_{light}{ext}").to_numpy()


def missing_images(df: pd.DataFrame, root: str | Path, lights: Iterable[str], ext: str,
                   columns: Sequence[str] = ("input_path", "golden_path")) -> list[tuple[int, str]]:
    """(CSV line, path) for every image that does not exist; each unique file is stat'ed once."""
    import os

    out: list[tuple[int, str]] = []
    for col in columns:
        for light in lights:
            files = image_files(df, root, col, light, ext)
            uniq, inverse = np.unique(files, return_inverse=True)
            exists = np.fromiter((os.path.isfile(f) for f in uniq), dtype=bool, count=len(uniq))
            bad = np.flatnonzero(~exists[inverse])
            out.extend((int(i) + 2, str(files[i])) for i in bad)
    out.sort()
    return out


def normalised_column(df: pd.DataFrame, column: str, base: str | Path, images_root: str | Path) -> pd.Series:
    """``path_keys.normalise`` over a column, computed once per unique value."""
    base_s, root_s = str(base), str(images_root)
    uniq = pd.unique(df[column])
    mapping = {u: path_keys.normalise(u, base_s, root_s) for u in uniq}
    return df[column].map(mapping)


def sample_keys(df: pd.DataFrame, base: str | Path, images_root: str | Path) -> pd.Series:
    """Identity of each row's test sample: normalised input dir + object_name (label excluded)."""
    keys = normalised_column(df, "input_path", base, images_root)
    return keys.str.rstrip("/") + "/" + df["object_name"].astype(str).str.strip()


def write(df: pd.DataFrame, path: str | Path) -> None:
    """Atomic CSV write (temp file + rename)."""
    from tao_aoi import atomic

    with atomic.atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
