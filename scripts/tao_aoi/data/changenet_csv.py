"""Reading and checking ChangeNet CSVs (input_path, golden_path, label, object_name, ...).

One set of rules for every script: strings only (no type guessing), canonical labels, and errors
that name the file, the column or the 1-based CSV line. Extra columns (boardname, ...) are kept.
``read`` gives a DataFrame (pandas' C parser); ``read_columns`` the same columns as numpy arrays
through the stdlib csv module, for a CLI whose whole run costs less than importing pandas
(gap_analysis.py); tests/test_changenet_csv.py holds the two to the same result and messages.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from tao_aoi import labels, path_keys
from tao_aoi.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("input_path", "golden_path", "label", "object_name")


def _no_header(p: Path, what: str, required: Sequence[str]) -> UserError:
    return UserError(f"{what} {p} is empty (no header); it needs columns {', '.join(required)}")


def _unparsable(p: Path, what: str, reason: object) -> UserError:
    return UserError(f"{what} {p} cannot be parsed as CSV: {' '.join(str(reason).split())}")


def _check_header(p: Path, what: str, columns: Sequence[str], required: Sequence[str], n_rows: int,
                  allow_empty: bool) -> None:
    twice = sorted({c for c in columns if list(columns).count(c) > 1})
    if twice:  # e.g. "label" and " label ": which one would a reader mean?
        raise UserError(f"{what} {p} has column {twice[0]!r} twice (spaces around names do not count); "
                        f"rename or drop one")
    missing = [c for c in required if c not in columns]
    if missing:
        raise UserError(f"{what} {p} is missing column {missing[0]!r} (has: {', '.join(columns)})")
    if n_rows == 0 and not allow_empty:
        raise UserError(f"{what} {p} has a header but no rows")


def _check_blank(p: Path, what: str, col: str, blank: np.ndarray) -> None:
    if blank.size:
        raise UserError(f"{what} {p} line {int(blank[0]) + 2}: empty {col!r}; fill it or drop the row")


def _label_map(uniq: Iterable[str], values: np.ndarray, path: Path | str, what: str) -> dict[str, str]:
    """raw -> canonical for each distinct label; the first bad one is refused with its line."""
    mapping = {u: labels.canonical_label(u) for u in uniq}
    bad = [u for u, c in mapping.items() if not labels.is_valid_canonical(c)]
    if bad:
        line = int(np.flatnonzero(values == bad[0])[0]) + 2
        raise UserError(f"{what} {path} line {line}: label {bad[0]!r} is not a label (PASS or a defect name "
                        f"such as MISSING)")
    return mapping


def read(path: str | Path, required: Sequence[str] = REQUIRED, *, what: str = "ChangeNet CSV",
         allow_empty: bool = False, canonicalize: bool = True) -> pd.DataFrame:
    """Read a CSV as strings. ``canonicalize=False`` keeps raw labels (validate_training_csv reports them)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise _no_header(p, what, required) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise _unparsable(p, what, exc) from None
    if not isinstance(df.index, pd.RangeIndex):  # pandas takes a first row with one field too many as an index
        raise _unparsable(p, what, f"Expected {len(df.columns)} fields in line 2, saw {len(df.columns) + 1}")
    df.columns = [str(c).strip() for c in df.columns]
    _check_header(p, what, list(df.columns), required, len(df), allow_empty)
    for col in required:
        values = df[col].str.strip()
        _check_blank(p, what, col, np.flatnonzero((values == "").to_numpy()))
        df[col] = values
    if "label" in df.columns and canonicalize:
        df["label"] = canonical_labels(df["label"], p, what)
    return df


# Above this size pandas' C parser wins: importing pandas (~0.3 s) is then less than what the stdlib
# csv module loses (~4 us per row), from about 150k rows of an inference.csv on; bench/gaps.py runs both sides.
PANDAS_PARSE_BYTES = 8_000_000


def read_columns(path: str | Path, required: Sequence[str] = REQUIRED, *, what: str = "ChangeNet CSV",
                 allow_empty: bool = False) -> dict[str, np.ndarray]:
    """``read`` as {column: object array of str}, columns in file order, labels canonical; a file under
    ``PANDAS_PARSE_BYTES`` is parsed without importing pandas.

    Parsed like pandas does here: blank (or whitespace-only) lines skipped, short rows padded with "", a
    row with more fields than the header refused, repeated header names numbered ``x.1``, ``x.2``.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    if p.stat().st_size > PANDAS_PARSE_BYTES:
        df = read(p, required, what=what, allow_empty=allow_empty)
        return {str(c): df[c].to_numpy(dtype=object) for c in df.columns}
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and not (len(r) == 1 and r[0] and not r[0].strip())]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _unparsable(p, what, exc) from None
    if not rows:
        raise _no_header(p, what, required)
    header, body = [c.strip() for c in _dedupe(rows[0])], rows[1:]
    n = len(header)
    widths = np.fromiter(map(len, body), dtype=np.int64, count=len(body))
    if widths.size and widths.max() > n:
        i = int(np.argmax(widths > n))
        raise _unparsable(p, what, f"Expected {n} fields in line {i + 2}, saw {int(widths[i])}")
    if widths.size and widths.min() < n:
        body = [r + [""] * (n - len(r)) if len(r) < n else r for r in body]
    _check_header(p, what, header, required, len(body), allow_empty)
    columns = {name: np.array(col, dtype=object) for name, col in zip(header, zip(*body))} if body else \
        {name: np.array([], dtype=object) for name in header}
    for col in required:
        values = np.array([v.strip() for v in columns[col]], dtype=object)
        _check_blank(p, what, col, np.flatnonzero(values == ""))
        columns[col] = values
    if "label" in columns:
        raw = columns["label"]
        mapping = _label_map(dict.fromkeys(raw.tolist()), raw, p, what)
        columns["label"] = np.array([mapping[v] for v in raw], dtype=object)
    return columns


def factorize(values: Iterable) -> tuple[np.ndarray, list]:
    """(codes in order of first appearance, the distinct values): pd.factorize without pandas."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64)
    return codes, list(index)


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        out.append(name if k == 0 else f"{name}.{k}")
        seen[name] = k + 1
    return out


def canonical_labels(col: pd.Series, path: Path | str, what: str = "CSV") -> pd.Series:
    import pandas as pd

    mapping = _label_map(pd.unique(col), col.to_numpy(), path, what)
    return col.map(mapping)


def image_file(root: str, rel_dir: str, object_name: str, light: str, ext: str) -> str:
    d = rel_dir if rel_dir.startswith("/") else f"{root.rstrip('/')}/{rel_dir}"
    return f"{d.rstrip('/')}/{object_name}_{light}{ext}"


def image_files(df: pd.DataFrame, root: str | Path, column: str, light: str, ext: str) -> np.ndarray:
    """Vectorised ``<root>/<df[column]>/<object_name>_<light><ext>`` for every row."""
    import pandas as pd

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
    import pandas as pd

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
