#!/usr/bin/env python3
"""The embedded default on a 2-core host: workspace builds, train/infer cost, headroom, embedder.

Prints, in one run:
1. make_demo_workspace build time per preset (tiny, demo, large, field) and images written per
   second, the field generator's images/s as a ratio to demo's;
2. on demo, field and large: train.py and infer.py wall time and peak RSS (each CLI in its own
   process, as the pipeline runs them), rows/s, and an in-process re-train with the features cached
   (what an AutoML trial costs) with its tracemalloc peak;
3. the headroom the DEFT loop must win back, on demo and on field: KPI FAR@100% recall of a model
   trained on the base training set alone and of one trained with the pools' missing families
   added (demo targets: the baseline misses make demo's FAR < 1% by 3x or more, the added model
   meets it and is at most a quarter of the baseline; field: printed with the ratio), and the
   share of the unseen families' KPI rows scored below the median PASS row (target 0);
4. the mining floor with the local embedder, on demo and field, compared as mining compares
   (pool-standardised cosine, search across labels): per floor, the share of defect targets with a
   same-family neighbour at or above it and the share of kept neighbours of the target's family;
   the embedder's calibrated floor (defaults.MIN_SIMILARITY_BY_EMBEDDER) is the lowest floor where
   the kept share is >= 0.9 on both generators; then the per-family table at that floor.
Run: .venv/bin/python bench/embedded.py [--presets tiny,demo,large,field] [--work DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pandas as pd  # noqa: E402

from tao_aoi import defaults
from tao_aoi.analysis import kpi  # noqa: E402
from tao_aoi.backends.base import InferJob, TrainJob  # noqa: E402
from tao_aoi.backends.local import LocalBackend  # noqa: E402
from tao_aoi.data import changenet_csv
from tao_aoi.layout import Workspace  # noqa: E402
from tao_aoi.model import features
from tao_aoi.workspace import demo, diagnostics, field

PY = sys.executable
ENV = dict(os.environ, TAO_AOI_NO_REEXEC="1")


def run_cli(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one script in its own process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([PY, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def build(preset: str, work: Path) -> tuple[Workspace, dict, float]:
    out = work / preset
    wall, rss = run_cli([str(ROOT / "scripts" / "make_demo_workspace.py"), "--out", str(out), "--preset", preset,
                         "--force", "--quiet"])
    manifest = pd.read_json(out / "demo_manifest.json", typ="series")
    p = demo.PRESETS.get(preset) or field.PRESETS[preset]
    rows = sum(p.rows.values()) + p.sdg
    rate = manifest["files_written"] / wall
    print(f"  build {preset:10s}: {wall:6.1f} s  {rows:6d} rows  {manifest['files_written']:6d} images "
          f"({rate:,.0f} images/s)  peak RSS {rss:,.0f} MiB")
    return Workspace.at(out), dict(manifest), rate


def train_infer(ws: Workspace, preset: str, work: Path) -> None:
    out = work / f"{preset}_run"
    n_train = len(changenet_csv.read(ws.training_csv))
    n_val = len(changenet_csv.read(ws.validation_csv))
    n_kpi = len(changenet_csv.read(ws.kpi_csv))
    epochs = defaults.LOCAL_MODEL["train.num_epochs"]
    wall, rss = run_cli([str(ROOT / "scripts" / "train.py"), "--backend", "local", "--spec", str(ws.baseline_spec),
                         "--train-csv", str(ws.training_csv), "--val-csv", str(ws.validation_csv),
                         "--images-root", str(ws.images), "--output-dir", str(out / "train")])
    print(f"  train.py {preset:5s}: {wall:6.1f} s  peak RSS {rss:,.0f} MiB  ({n_train} train + {n_val} val rows, "
          f"{epochs} epochs; {(n_train + n_val) / wall:,.0f} rows/s incl. decoding and start-up)")
    wall, rss = run_cli([str(ROOT / "scripts" / "infer.py"), "--backend", "local", "--spec",
                         str(out / "train" / "experiment.yaml"), "--checkpoint", str(out / "train" / "best.ckpt"),
                         "--csv", str(ws.kpi_csv), "--images-root", str(ws.images), "--output-dir", str(out / "inf")])
    print(f"  infer.py {preset:5s}: {wall:6.1f} s  peak RSS {rss:,.0f} MiB  ({n_kpi} KPI rows; {n_kpi / wall:,.0f} rows/s "
          f"incl. decoding and start-up)")
    backend = LocalBackend()
    job = TrainJob(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                   images_root=ws.images, output_dir=out / "train_inproc")
    t0 = time.perf_counter()
    backend.train(job)  # cold: decodes every image once
    cold = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    backend.train(job)
    warm = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"  in-process train {preset:5s}: cold {cold:5.1f} s, features cached {warm:5.2f} s "
          f"({n_train * epochs / warm:,.0f} row-epochs/s), tracemalloc peak {peak:,.0f} MiB")


def kpi_far(backend: LocalBackend, ws: Workspace, train_csv: Path, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    backend.train(TrainJob(spec=ws.baseline_spec, train_csv=train_csv, val_csv=ws.validation_csv,
                           images_root=ws.images, output_dir=out / "train"))
    backend.infer(InferJob(spec=out / "train" / "experiment.yaml", checkpoint=out / "train" / "best.ckpt",
                           csv=ws.kpi_csv, images_root=ws.images, output_dir=out / "inference"))
    _, scores, positive = kpi.read_inference(str(out / "inference" / "inference.csv"))
    return float(kpi.at_recall(scores, positive, 100.0).far_pct), time.perf_counter() - t0


def headroom(name: str, ws: Workspace, manifest: dict, work: Path) -> None:
    fam = manifest["families"]
    wanted = set(fam["missing_from_base_train"]) | set(fam["rare_in_base_train"])
    base = changenet_csv.read(ws.training_csv)
    added = pd.concat([base, diagnostics.pool_rows_for_missing_families(ws.root)], ignore_index=True)
    added_csv = work / f"{name}_added.csv"
    added.to_csv(added_csv, index=False)
    backend = LocalBackend()
    far_base, t_base = kpi_far(backend, ws, ws.training_csv, work / f"{name}_headroom_baseline")
    far_added, t_added = kpi_far(backend, ws, added_csv, work / f"{name}_headroom_added")
    inf = pd.read_csv(work / f"{name}_headroom_baseline" / "inference" / "inference.csv")
    median_pass = inf.loc[inf["label"] == "PASS", "siamese_score"].median()
    unseen = inf[inf["label"].isin(fam["missing_from_base_train"])]
    below = float((unseen["siamese_score"] <= median_pass).mean())
    print(f"  {name}: families missing from base train: {', '.join(fam['missing_from_base_train'])}; rare: "
          f"{', '.join(fam['rare_in_base_train']) or 'none'}; added from the pools: "
          f"{len(added) - len(base)} rows ({', '.join(sorted(wanted))})")
    verdict = ""
    if name == "demo":
        ok_base, ok_added = far_base >= 3.0, far_added < 1.0 and far_added <= far_base / 4
        verdict = (f"  targets: baseline >= 3% {'ok' if ok_base else 'MISSED'}, added < 1% and <= 1/4 "
                   f"{'ok' if ok_added else 'MISSED'}")
    print(f"    baseline (base train only)      KPI FAR@100%R {far_base:6.2f}%  ({t_base:.1f} s); unseen-family rows "
          f"at or below the PASS median: {below:.3f} (target 0)")
    print(f"    base + pools' missing families  KPI FAR@100%R {far_added:6.2f}%  ratio {far_added / max(far_base, 1e-9):.3f}"
          f"  ({t_added:.1f} s)" + verdict)


FLOORS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def floor_sweep(built: dict) -> None:
    """Hit and kept-share per floor on every generator; the calibration rule picks the floor."""
    tables = {}
    for name in ("demo", "field"):
        if name in built:
            t0 = time.perf_counter()
            tables[name] = {f: diagnostics.similarity_check(built[name][0].root, f) for f in FLOORS}
            print(f"  {name}: {len(FLOORS)} floors in {time.perf_counter() - t0:.1f} s")
    print("  floor  " + "  ".join(f"{n:>6s} hit / kept" for n in tables))
    qualified = []
    for f in FLOORS:
        cells, ok = [], True
        for name, by_floor in tables.items():
            d = by_floor[f][by_floor[f]["label"] != "PASS"]
            w = d["targets"] / d["targets"].sum()
            hit, kept = float((d["with_same_label_hit"] * w).sum()), float((d["kept_same_label_share"] * w).sum())
            ok &= kept >= 0.9
            cells.append(f"{hit:11.2f} / {kept:4.2f}")
        qualified.append((f, ok))
        print(f"  {f:5.2f}  " + "  ".join(cells) + ("   <- kept >= 0.9 everywhere" if ok else ""))
    chosen = next((f for f, ok in qualified if ok), None)
    floor = defaults.MIN_SIMILARITY_BY_EMBEDDER[features.EMBEDDER]
    print(f"  lowest floor with kept >= 0.9 on every generator: {chosen}; the local embedder's calibrated floor: "
          f"{floor} ({'agrees' if chosen == floor else 'DIFFERS: recalibrate defaults.MIN_SIMILARITY_BY_EMBEDDER'})")
    for name, by_floor in tables.items():
        table = by_floor.get(floor) if floor in by_floor else diagnostics.similarity_check(built[name][0].root, floor)
        print(f"  {name} at {floor}: label severity targets | same-label hit | kept same-label | other-label rows")
        for r in table.itertuples():
            print(f"    {r.label:17s} {r.severity or '-':5s} {r.targets:4d} | {r.with_same_label_hit:5.2f} | "
                  f"{r.kept_same_label_share:5.2f} | {r.other_label_rows_above_floor:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,demo,large,field")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    presets = [p for p in args.presets.split(",") if p]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_embedded_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"host: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; scratch {work}")
    try:
        print("1. workspace build")
        built = {p: build(p, work) for p in presets}
        if "demo" in built and "field" in built:
            print(f"  field / demo images per second: {built['field'][2] / built['demo'][2]:.2f}")
        print("2. train / infer (local backend)")
        for p in ("demo", "field", "large"):
            if p in built:
                train_infer(built[p][0], p, work)
        print("3. headroom (base train alone vs with the pools' missing families)")
        for p in ("demo", "field"):
            if p in built:
                headroom(p, built[p][0], built[p][1], work)
        print("4. mining floor with the local embedder")
        floor_sweep(built)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
