#!/usr/bin/env python3
"""The embedded default on a 2-core host: workspace builds, train/infer cost, headroom, embedder.

Prints, in one run:
1. make_demo_workspace build time per preset (tiny, demo, large) and images written per second;
2. on demo and large: train.py and infer.py wall time and peak RSS (each CLI in its own process,
   as the pipeline runs them), rows/s, and an in-process re-train with the features cached (what
   an AutoML trial costs) with its tracemalloc peak;
3. the headroom the DEFT loop must win back (issue 3 "done when", demo preset): KPI FAR@100%
   recall of a model trained on the base training set alone (target >= 20%) and of one trained
   with the pools' missing families added (target <= a quarter of the baseline);
4. whether the mining floor (cosine >= defaults.MIN_SIMILARITY) is meaningful with the local
   embedder on demo: KPI targets finding same-family pool rows above it, other families below.
Run: .venv/bin/python bench/embedded.py [--presets tiny,demo,large] [--work DIR] [--keep]
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

from tao_aoi import changenet_csv, defaults, demo_workspace, kpi  # noqa: E402
from tao_aoi.backends.base import InferJob, TrainJob  # noqa: E402
from tao_aoi.backends.local import LocalBackend  # noqa: E402
from tao_aoi.layout import Workspace  # noqa: E402

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


def build(preset: str, work: Path) -> tuple[Workspace, dict]:
    out = work / preset
    wall, rss = run_cli([str(ROOT / "scripts" / "make_demo_workspace.py"), "--out", str(out), "--preset", preset,
                         "--force", "--quiet"])
    manifest = pd.read_json(out / "demo_manifest.json", typ="series")
    rows = sum(demo_workspace.PRESETS[preset].rows.values()) + demo_workspace.PRESETS[preset].sdg
    print(f"  build {preset:5s}: {wall:6.1f} s  {rows:6d} rows  {manifest['files_written']:6d} images "
          f"({manifest['files_written'] / wall:,.0f} images/s)  peak RSS {rss:,.0f} MiB")
    return Workspace.at(out), dict(manifest)


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


def headroom(ws: Workspace, manifest: dict, work: Path) -> None:
    fam = manifest["families"]
    wanted = set(fam["missing_from_base_train"]) | set(fam["rare_in_base_train"])
    base = changenet_csv.read(ws.training_csv)
    added = pd.concat([base, demo_workspace.pool_rows_for_missing_families(ws.root)], ignore_index=True)
    added_csv = work / "demo_added.csv"
    added.to_csv(added_csv, index=False)
    backend = LocalBackend()
    far_base, t_base = kpi_far(backend, ws, ws.training_csv, work / "headroom_baseline")
    far_added, t_added = kpi_far(backend, ws, added_csv, work / "headroom_added")
    ok_base, ok_added = far_base >= 20.0, far_added <= far_base / 4
    print(f"  families missing from base train: {', '.join(fam['missing_from_base_train'])}; rare: "
          f"{', '.join(fam['rare_in_base_train'])}; added from the pools: "
          f"{len(added) - len(base)} rows ({', '.join(sorted(wanted))})")
    print(f"  baseline (base train only)          KPI FAR@100%R {far_base:6.2f}%  target >= 20%          "
          f"{'ok' if ok_base else 'MISSED'}  ({t_base:.1f} s)")
    print(f"  base + pools' missing families      KPI FAR@100%R {far_added:6.2f}%  target <= {far_base / 4:.2f}% "
          f"(1/4)  {'ok' if ok_added else 'MISSED'}  ratio {far_added / far_base:.3f}  ({t_added:.1f} s)")


def embedder(ws: Workspace) -> None:
    t0 = time.perf_counter()
    table = demo_workspace.similarity_check(ws.root)
    floor = defaults.MIN_SIMILARITY
    print(f"  KPI targets vs mining pool, local embedder, top-{defaults.TOP_K_PER_TARGET}, floor {floor} "
          f"({time.perf_counter() - t0:.1f} s):")
    print("    label          severity targets  same-label hit>=floor  kept same-label  other-label rows>=floor")
    for r in table.itertuples():
        print(f"    {r.label:14s} {r.severity or '-':8s} {r.targets:7d}  {r.with_same_label_hit:21.2f}  "
              f"{r.kept_same_label_share:15.2f}  {r.other_label_rows_above_floor:23.2f}")
    defects = table[table["label"] != "PASS"]
    print(f"  defect targets with a same-family row >= {floor}: "
          f"{(defects.with_same_label_hit * defects.targets).sum() / defects.targets.sum():.2f}; kept neighbours "
          f"of the same family: {(defects.kept_same_label_share * defects.targets).sum() / defects.targets.sum():.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,demo,large")
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
        print("2. train / infer (local backend)")
        for p in ("demo", "large"):
            if p in built:
                train_infer(built[p][0], p, work)
        if "demo" in built:
            print("3. headroom on demo (issue 3 done-when)")
            headroom(*built["demo"], work)
            print("4. mining floor with the local embedder (demo)")
            embedder(built["demo"][0])
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
