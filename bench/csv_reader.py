#!/usr/bin/env python3
"""Reading a ChangeNet CSV: pyarrow.csv against pandas' read_csv and the stdlib csv module, cold and warm.

The file is inference-shaped (input_path, golden_path, label, object_name, siamese_score, boardname;
paths repeat per board, a few cells quoted with commas, 6-decimal scores). Three raw parsers, each
reading every column as a string:
  pandas    pd.read_csv(dtype=str, keep_default_na=False, na_filter=False)        -> DataFrame
  stdlib    csv.reader, columns as numpy object arrays                            -> {column: array}
  pyarrow   pyarrow.csv.read_csv, explicit string column types (convert_options)  -> Table
and the reader every script goes through (tao_aoi.data.changenet_csv): ``read`` (DataFrame, what most
commands use) and ``read_columns`` ({column: object array} without pandas, gap_analysis.py's path),
checks and label canonicalisation included.
Cold: a fresh interpreter imports what the reader needs and reads once (the wall time a CLI pays),
median of --cold runs. Warm: in-process, best of --warm after one untimed read. Every ratio is
against pandas' read_csv measured in the same run (< 1 = faster than pandas), so a loaded machine
shifts both sides. A bare interpreter start is printed for scale.
Run: .venv/bin/python bench/csv_reader.py [--sizes 1000,100000,1000000] [--cold 5] [--warm 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

COLUMNS = ("input_path", "golden_path", "label", "object_name", "siamese_score", "boardname")
LABELS = ("PASS",) * 9 + ("MISSING", "BRIDGE", "SHIFT")

# One statement per candidate: imports first, then the read of PATH. Run in a fresh process (cold) and
# in this one (warm: the imports are then free).
CANDIDATES = {
    "pandas read_csv": ("import pandas as pd",
                        "pd.read_csv(PATH, dtype=str, keep_default_na=False, na_filter=False, encoding='utf-8-sig')"),
    "stdlib csv": ("import csv, numpy as np",
                   "rows = list(csv.reader(open(PATH, newline='', encoding='utf-8-sig')))\n"
                   "cols = [np.array(c, dtype=object) for c in zip(*rows[1:])]"),
    "pyarrow.csv": ("import pyarrow as pa, pyarrow.csv as pcsv",
                    "pcsv.read_csv(PATH, read_options=pcsv.ReadOptions(autogenerate_column_names=True), "
                    "parse_options=pcsv.ParseOptions(newlines_in_values=True), "
                    "convert_options=pcsv.ConvertOptions(column_types={f'f{i}': pa.string() for i in range(6)}, "
                    "strings_can_be_null=False))"),
    "changenet_csv.read": ("from tao_aoi.data import changenet_csv",
                           "changenet_csv.read(PATH, ('input_path', 'label', 'siamese_score'))"),
    "changenet_csv.read_columns": ("from tao_aoi.data import changenet_csv",
                                   "changenet_csv.read_columns(PATH, ('input_path', 'label', 'siamese_score'))"),
}
BASELINE = "pandas read_csv"


def write_csv(path: Path, n: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    board = rng.integers(0, max(1, n // 200), n)
    label = np.asarray(LABELS, dtype=object)[rng.integers(0, len(LABELS), n)]
    score = np.round(rng.random(n), 6)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for i in range(n):
            b = int(board[i])
            name = f"C{i}" if i % 97 else f"C{i},part {i % 7}"  # a quoted cell now and then
            w.writerow((f"boards/b{b}/test", f"boards/b{b}/golden", label[i], name, f"{score[i]:.6f}", f"00{b}"))


def cold_seconds(setup: str, stmt: str, path: Path, runs: int) -> float:
    code = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r})\n{setup}\nPATH = {str(path)!r}\n{stmt}\n"
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def warm_seconds(setup: str, stmt: str, path: Path, runs: int) -> float:
    scope: dict = {"PATH": str(path)}
    exec(setup, scope)
    exec(stmt, scope)  # untimed: page cache and lazy imports
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        exec(stmt, scope)
        best = min(best, time.perf_counter() - t)
    return best


def same_result(path: Path) -> None:
    """Every candidate reads the same strings; the bench refuses to time readers that disagree."""
    import numpy as np
    import pandas as pd

    scope: dict = {"PATH": str(path)}
    for name in CANDIDATES:
        exec(CANDIDATES[name][0], scope)
    ref = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    from tao_aoi.data import changenet_csv

    got = {"changenet_csv.read": changenet_csv.read(path, ()),
           "changenet_csv.read_columns": changenet_csv.read_columns(path, ())}
    for name, cols in got.items():
        for c in COLUMNS:
            if not np.array_equal(np.asarray(cols[c], dtype=object), ref[c].to_numpy(dtype=object)):
                raise SystemExit(f"{name} disagrees with pandas on column {c} of {path}")


def fmt_row(name: str, sec: float, base: float) -> str:
    return f"{sec * 1000:>10.1f} ms {sec / base:>6.2f}x"


def table(work: Path, sizes: list[int], cold_runs: int, warm_runs: int) -> None:
    bare = statistics.median([_timed([sys.executable, "-c", "pass"]) for _ in range(max(5, cold_runs))])
    print(f"bare interpreter start: {bare * 1000:.1f} ms (median); host: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (shared: compare the ratios, not the milliseconds)")
    for n in sizes:
        path = work / f"inference_{n}.csv"
        write_csv(path, n)
        same_result(path)
        print(f"\n{n:,} rows ({path.stat().st_size / 1e6:.1f} MB); ratio = time / {BASELINE} in this run")
        print(f"{'reader':<28} {'cold (fresh process)':>22} {'warm (in process)':>22}")
        runs = cold_runs if n < 1_000_000 else max(1, cold_runs // 2)
        cold = {k: cold_seconds(*v, path, runs) for k, v in CANDIDATES.items()}
        warm = {k: warm_seconds(*v, path, warm_runs) for k, v in CANDIDATES.items()}
        for k in CANDIDATES:
            print(f"{k:<28} {fmt_row(k, cold[k], cold[BASELINE]):>22} {fmt_row(k, warm[k], warm[BASELINE]):>22}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000,1000000", help="rows per file (comma-separated)")
    ap.add_argument("--cold", type=int, default=5, help="fresh-process runs per cell (median; half at 1M rows)")
    ap.add_argument("--warm", type=int, default=3, help="in-process runs per cell (best of)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_csv_") as tmp:
        table(Path(tmp), [int(x) for x in args.sizes.split(",") if x.strip()], args.cold, args.warm)
    return 0


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
