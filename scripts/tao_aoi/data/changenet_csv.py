"""Reading and checking ChangeNet CSVs (input_path, golden_path, label, object_name, ...): the one CSV reader.

Every CSV the toolkit reads comes through here. pyarrow.csv parses, every column a string (explicit
types: no guessing, ``NA``/``null``/``007`` stay text); then one set of rules: canonical labels, errors
that name the file, the column or the 1-based CSV line (the header is line 1), extra columns (boardname,
...) kept. ``read`` gives a DataFrame; ``read_columns`` numpy object arrays and ``read_arrays`` pyarrow
arrays, both without importing pandas (gap_analysis.py and analyze_kpi's reader; the HTML report). The
parse is pandas' read_csv's (dtype=str, na_filter=False), which tests/test_changenet_csv.py checks on
random and adversarial CSVs: a BOM, quoted commas, quotes and newlines, blank and whitespace-only lines
skipped, a short row padded with "", a row with more fields than the header refused, a quote still open at
the end of the file refused, repeated header names numbered ``x.1``, an empty name read as ``Unnamed: <i>``.

Why pyarrow and no stdlib path (bench/csv_reader.py on 2 shared cores, ratios to pandas' read_csv in the
same run; 1k / 100k / 1M rows): pyarrow.csv takes 0.45 / 0.42 / 0.24x pandas' time cold (a fresh process,
import included) and 0.35 / 0.43 / 0.17x warm. The stdlib csv module wins only cold on small files (0.26x at
1k rows: importing numpy + pyarrow costs more than parsing them) and loses from 100k rows on (6.1x warm,
2.1x cold at 1M). No CLI that reads a CSV needs that light path: the state scripts read none
(tests/test_state.py checks they import neither numpy nor pyarrow), gap_analysis.py imports pyarrow for its
parquet anyway (same wall time at 300 and 30k rows as with the stdlib reader), and the report is measured
in report/sources.py.
"""
from __future__ import annotations

from bisect import bisect_left
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from tao_aoi import labels, path_keys
from tao_aoi.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

REQUIRED = ("input_path", "golden_path", "label", "object_name")
# What str.strip() removes (a required cell is stripped as pandas' .str.strip() would); tests check the set.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_BLANK = " \t"  # a line of only these is blank to pandas' tokenizer: skipped like an empty line
OPEN_QUOTE = 'the file ends inside a quoted field (a " is not closed)'


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


def _label_map(uniq: Iterable[str], first_row: Callable[[str], int], path: Path | str,
               what: str) -> dict[str, str]:
    """raw -> canonical for each distinct label; the first bad one is refused with its line."""
    mapping = {u: labels.canonical_label(u) for u in uniq}
    bad = [u for u, c in mapping.items() if not labels.is_valid_canonical(c)]
    if bad:
        raise UserError(f"{what} {path} line {first_row(bad[0]) + 2}: label {bad[0]!r} is not a label (PASS or a "
                        f"defect name such as MISSING)")
    return mapping


def _header_names(raw: Sequence[str]) -> list[str]:
    """pandas' names for a header row, then stripped (so " label " and "label" clash: _check_header refuses).

    An empty name is ``Unnamed: <i>``; a repeat gets the first free ``.1``, ``.2``, ... suffix (one the
    header does not hold), named columns first, then the unnamed ones (pandas' C parser does the same).
    """
    header = [name or f"Unnamed: {i}" for i, name in enumerate(raw)]
    unnamed = [i for i, name in enumerate(raw) if not name]
    counts: dict[str, int] = {}
    for i in [i for i in range(len(header)) if raw[i]] + unnamed:
        col = old = header[i]
        cur = counts.get(col, 0)
        while cur > 0:
            counts[old] = cur + 1
            col = f"{old}.{cur}"
            cur = cur + 1 if col in header else counts.get(col, 0)
        header[i] = col
        counts[col] = cur + 1
    return [c.strip() for c in header]


def _leading_blank_lines(p: Path) -> int:
    """Blank or whitespace-only lines before the header (pandas skips them; pyarrow would take the first
    as a one-column header)."""
    with open(p, "rb") as fh:
        head = fh.read(65536)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head[:1].isspace():
        return 0
    n = 0
    for line in head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")[:-1]:
        if line.strip(b" \t"):
            break
        n += 1
    return n


def _options(skip: int, on_invalid: Callable | None, width: int | None = None) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    out: dict[str, Any] = {
        "read_options": pcsv.ReadOptions(autogenerate_column_names=True, skip_rows=skip, use_threads=False),
        "parse_options": pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid)}
    if width is not None:  # every column a string, "" never null
        out["convert_options"] = pcsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(width)},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False)
    return out


def arrow_strings(values: Iterable[object]) -> pa.Array:
    """A pyarrow large_string array built from buffers: ``pa.array`` (like any Python-to-arrow conversion and
    ``to_numpy``) imports pandas just to check for it, which costs the pandas-free readers ~0.3 s."""
    import pyarrow as pa

    enc = [str(v).encode() for v in values]
    offsets = np.concatenate(([0], np.cumsum([len(e) for e in enc], dtype=np.int64))).astype(np.int64)
    return pa.Array.from_buffers(pa.large_string(), len(enc), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(enc))])


def _arrow_ints(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def _is_empty(values: pa.Array) -> pa.Array:
    """Boolean array: the cell is "" (no Python scalar involved: see arrow_strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.invert(pc.cast(pc.utf8_length(values), pa.bool_()))


def _first(mask: pa.Array) -> int:
    """Index of the first true value, -1 if none."""
    import pyarrow.compute as pc

    hits = pc.indices_nonzero(mask)
    return int(hits[0].as_py()) if len(hits) else -1


def _quote_left_open(src: Path | bytes, last: str) -> bool:
    """Whether the file ends inside a quoted field whose text (so far) is ``last``: pyarrow then reads the
    rest of the file into that field, where pandas refuses ("EOF inside string")."""
    opened = ('"' + last.replace('"', '""')).encode()
    if isinstance(src, bytes):
        data, start = src, len(src) - len(opened)
        tail = data[max(0, start - 1):]
    else:
        start = src.stat().st_size - len(opened)  # where that opening quote would be
        with open(src, "rb") as fh:
            fh.seek(max(0, start - 1))
            tail = fh.read()
            fh.seek(0)
            data = fh.read(3)
    if start < 0 or not tail.endswith(opened):
        return False
    # the quote opens a field: at the start of the file (after a BOM) or after a delimiter or a line end
    return start == 0 or (start == 3 and data.startswith(b"\xef\xbb\xbf")) or tail[:1] in (b",", b"\n", b"\r")


def _arrow_read(p: Path, what: str, required: Sequence[str], skip: int, on_invalid: Callable
                ) -> tuple[Any, int, Path | bytes]:
    """(table of strings with the header as row 0, the header's width, what was read: the file or its bytes)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    src: Path | bytes = p
    while True:
        try:
            width = len(pcsv.open_csv(_source(src), **_options(skip, lambda row: "skip")).schema)
            return pcsv.read_csv(_source(src), **_options(skip, on_invalid, width)), width, src
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" not in str(exc):
                raise _unparsable(p, what, exc) from None
            if isinstance(src, bytes) or not p.read_bytes().strip(b" \t\r\n\xef\xbb\xbf"):
                raise _no_header(p, what, required) from None
            src = p.read_bytes() + b"\n"  # pyarrow finds no column in a lone line without a line end


def _source(src: Path | bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(src) if isinstance(src, bytes) else src


def _put_back(p: Path, what: str, table: Any, width: int, short: list[Any], blank: list[int], skip: int) -> Any:
    """``table`` with the short rows pyarrow skipped back in their places, padded with "" as pandas pads
    them: their text plus the missing delimiters, parsed in one go."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # the leading line end keeps pyarrow from taking a U+FEFF that starts the first row for a BOM
    text = "\n" + "".join(r.text + "," * (width - r.actual_columns) + "\n" for r in short)
    try:
        padded = pcsv.read_csv(pa.py_buffer(text.encode()), **_options(0, None, width))
    except pa.ArrowInvalid:
        padded = None
    if padded is None or padded.num_rows != len(short):  # only a quote left open swallows the delimiters
        raise _unparsable(p, what, OPEN_QUOTE)
    blank = sorted(blank)
    # pyarrow numbers the records after the skipped lines from skip + 1 (the header, row 0 of the table)
    at = np.array([r.number - skip - 1 - bisect_left(blank, r.number) for r in short], dtype=np.int64)
    is_short = np.zeros(table.num_rows + len(short), dtype=bool)
    is_short[at] = True
    order = np.empty(is_short.size, dtype=np.int64)
    order[~is_short] = np.arange(table.num_rows)
    order[is_short] = table.num_rows + np.arange(len(short))
    return pa.concat_tables([table, padded]).take(_arrow_ints(order))


def _parse(p: Path, what: str, required: Sequence[str]) -> tuple[list[str], list[pa.Array]]:
    """(header names, one string array per column) of the data rows, as pandas' read_csv reads them."""
    skip = _leading_blank_lines(p)
    short: list[Any] = []   # rows with fewer fields than the header (pyarrow skips them; pandas pads them)
    long: list[Any] = []    # rows with more (pandas refuses them)
    blank: list[int] = []   # record numbers of lines of only spaces/tabs (pandas skips them)

    def on_invalid(row: Any) -> str:
        if not row.text.strip(_BLANK):
            blank.append(row.number)
        else:
            (short if row.actual_columns < row.expected_columns else long).append(row)
        return "skip"

    table, width, src = _arrow_read(p, what, required, skip, on_invalid)
    if long:
        r = min(long, key=lambda r: r.number)
        raise _unparsable(p, what, f"Expected {width} fields in line {r.number}, saw {r.actual_columns}")
    n = table.num_rows
    last_is_valid = max([r.number for r in short] + blank, default=0) < skip + n + len(short) + len(blank)
    if last_is_valid and n and _quote_left_open(src, table.column(width - 1)[n - 1].as_py()):
        raise _unparsable(p, what, OPEN_QUOTE)
    if short:
        table = _put_back(p, what, table, width, short, blank, skip)
    names = _header_names([str(c[0]) for c in table.columns])
    columns = [c.combine_chunks()[1:] for c in table.columns]
    if width == 1 and len(columns[0]):  # a one-column file's whitespace-only lines are blank too
        import pyarrow.compute as pc

        keep = pc.or_(_is_empty(columns[0]), pc.invert(_is_empty(pc.utf8_trim(columns[0], _BLANK))))
        columns = [columns[0].filter(keep)]
    return names, columns


def read_arrays(path: str | Path, required: Sequence[str] = REQUIRED, *, what: str = "ChangeNet CSV",
                allow_empty: bool = False, canonicalize: bool = True) -> dict[str, pa.Array]:
    """``read`` as {column: pyarrow string array}: the parse and the checks without a conversion (the
    report counts rows and shows a few; pandas is not imported)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    names, columns = _parse(p, what, required)
    n = len(columns[0])
    _check_header(p, what, names, required, n, allow_empty)
    for col in required:
        i = names.index(col)
        values = pc.utf8_trim(columns[i], WHITESPACE)
        blank = _first(_is_empty(values))
        if blank >= 0:
            raise UserError(f"{what} {p} line {blank + 2}: empty {col!r}; fill it or drop the row")
        columns[i] = values
    if "label" in names and canonicalize and n:
        i = names.index("label")
        uniq = pc.unique(columns[i])
        codes = pc.index_in(columns[i], value_set=uniq)  # row -> its label's place in uniq
        distinct = uniq.to_pylist()

        def first_row(label: str) -> int:
            k = distinct.index(label)
            return int(np.flatnonzero(np.asarray(codes.to_pylist()) == k)[0])

        mapping = _label_map(distinct, first_row, p, what)
        columns[i] = arrow_strings(mapping[u] for u in distinct).take(codes).cast(pa.string())
    return dict(zip(names, columns))


def read(path: str | Path, required: Sequence[str] = REQUIRED, *, what: str = "ChangeNet CSV",
         allow_empty: bool = False, canonicalize: bool = True) -> pd.DataFrame:
    """Read a CSV as strings. ``canonicalize=False`` keeps raw labels (validate_training_csv reports them)."""
    import pyarrow as pa

    columns = read_arrays(path, required, what=what, allow_empty=allow_empty, canonicalize=canonicalize)
    return pa.Table.from_arrays(list(columns.values()), names=list(columns)).to_pandas()


def read_columns(path: str | Path, required: Sequence[str] = REQUIRED, *, what: str = "ChangeNet CSV",
                 allow_empty: bool = False, canonicalize: bool = True) -> dict[str, np.ndarray]:
    """``read`` as {column: object array of str}, columns in file order, without importing pandas
    (pyarrow's own to_numpy would import it for string columns)."""
    columns = read_arrays(path, required, what=what, allow_empty=allow_empty, canonicalize=canonicalize)
    return {name: _objects(col) for name, col in columns.items()}


def _objects(col: pa.Array) -> np.ndarray:
    """A string column as an object array. A column of few distinct values (labels) turns each into a
    Python string once (1M labels: 0.17 s instead of 0.64 s, same run); a column of mostly distinct values
    (object names, scores) is faster converted as it is: dictionary-encoding it first costs more."""
    import pyarrow.compute as pc

    head = col.slice(0, 4096)
    if len(col) > 8192 and pc.count_distinct(head).as_py() < len(head) // 4:
        enc = pc.dictionary_encode(col)
        codes = np.frombuffer(enc.indices.buffers()[1], dtype=np.int32)[enc.offset:enc.offset + len(enc)]
        return np.array(enc.dictionary.to_pylist(), dtype=object)[codes]
    return np.array(col.to_pylist(), dtype=object)


def factorize(values: Iterable) -> tuple[np.ndarray, list]:
    """(codes in order of first appearance, the distinct values): pd.factorize without pandas."""
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64)
    return codes, list(index)


def canonical_labels(col: pd.Series, path: Path | str, what: str = "CSV") -> pd.Series:
    import pandas as pd

    values = col.to_numpy()
    mapping = _label_map(pd.unique(col), lambda v: int(np.flatnonzero(values == v)[0]), path, what)
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
