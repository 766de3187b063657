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
5. with ``--trees own,lightgbm,xgboost,hgb`` (bench/tree_candidates.py; ``own`` = model/boosted_trees.py),
   the boosted-tree member side by side, the MLP unchanged:
   a. KPI FAR@100% recall of the full three-phase run as ``make demo`` runs it (8 trials, 3 iterations,
      target FAR < 1% at Recall=100%) on demo and field workspaces built with ``--tree-seeds`` (each run
      in its own process, implementations in a rotating order): Phase 1, each iteration, Phase 3, the
      deliverable, and the run's wall time as a ratio to ``own``'s in the same round;
   b. cost on demo and field (seed 0), features cached, implementations interleaved, fastest of
      ``--tree-repeats``: the local backend's train (30 epochs) + infer on the KPI set, the trees alone
      (150 rounds on the base training rows + scoring the KPI rows), ratios to ``own``;
   c. warm start (the trees alone): 150 rounds on the base training set, then 50 more from that model
      on base + the pools' rows of the missing families at the fine-tune step: the old trees kept?
      log-loss on the KPI rows of the new families and of the others, before and after; for hgb, how
      far sklearn's warm-start margin (old trees on the new rows' bins) is from the model's own;
   d. the checkpoint's size and its trees' part, and load safety: the format, and ``--fuzz`` damaged
      copies of the trees' model each loaded in a child process: refused with an error, loaded, or
      the process died.
Run: .venv/bin/python bench/embedded.py [--presets tiny,demo,large,field] [--work DIR] [--keep]
     .venv/bin/python bench/embedded.py --presets none --trees own,lightgbm,xgboost,hgb [--tree-seeds 0,1]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tao_aoi import defaults
from tao_aoi.analysis import kpi  # noqa: E402
from tao_aoi.backends.base import InferJob, TrainJob  # noqa: E402
from tao_aoi.backends.local import LocalBackend  # noqa: E402
from tao_aoi.data import changenet_csv
from tao_aoi.layout import Workspace  # noqa: E402
from tao_aoi.model import boosted_trees, ensemble, features
from tao_aoi.tao import train_spec
from tao_aoi.workspace import demo, diagnostics, field

import deft_quality  # noqa: E402  (bench/ is on sys.path when this runs as a script)
import tree_candidates  # noqa: E402

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


# ------------------------------------------------------------------ 5. boosted trees side by side

def rotated(items: list[str], k: int) -> list[str]:
    return items[k % len(items):] + items[:k % len(items)]


def trees_child(impl: str, workspace: str, out: str) -> None:
    """One three-phase run with ``impl`` as the trees, in this process; its figures to ``out``."""
    tree_candidates.use(impl)
    t0 = time.perf_counter()
    summary, _ = deft_quality.run_three_phases(Workspace.at(workspace), 8, run=f"trees_{impl}")
    save_json(out, {"trajectory": {t["iteration"]: t["kpi_value"] for t in summary["trajectory"]},
                      "deliverable": summary["deliverable"], "wall": time.perf_counter() - t0})


def save_json(path: str | Path, data) -> None:
    Path(path).write_text(json.dumps(data), encoding="utf-8")


def tree_full_runs(impls: list[str], names: list[str], seeds: list[int], work: Path) -> dict:
    results = {}
    for name in names:
        for k, seed in enumerate(seeds):
            ws = deft_quality.build(name, seed, work)
            walls = {}
            for impl in rotated(impls, k):
                out = work / f"{name}_s{seed}_{impl}.json"
                proc = subprocess.run([PY, __file__, "--trees-child", impl, str(ws.root), str(out)], env=ENV,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{impl} on {name} seed {seed} failed: {proc.stderr[-800:]}")
                r = json.loads(out.read_text())
                results[(name, seed, impl)] = r
                walls[impl] = r["wall"]
                traj = r["trajectory"]
                d = r["deliverable"]
                print(f"  {name} s{seed} {impl:8s} " + "  ".join(f"{k_}={v:.3g}" for k_, v in traj.items())
                      + f"  deliverable {d['iteration']} {d['kpi_value']:.3g}% ({'met' if d['passed'] else 'missed'})"
                      f"  {r['wall']:.0f} s", flush=True)
            print(f"  {name} s{seed} run wall time / own's: "
                  + "  ".join(f"{i} {walls[i] / walls[impls[0]]:.2f}" for i in impls), flush=True)
    print("  deliverable KPI FAR@100%R % (Phase 1 | iterations | Phase 3):")
    print("  " + f"{'run':10s}" + "".join(f"  {i:>30s}" for i in impls))
    for name in names:
        for seed in seeds:
            cells = []
            for impl in impls:
                r = results[(name, seed, impl)]
                t = r["trajectory"]
                iters = ",".join(f"{v:.2g}" for k_, v in t.items() if k_.startswith("iter"))
                cells.append(f"{r['deliverable']['kpi_value']:.3g} ({t.get('baseline', float('nan')):.3g} | {iters} | "
                             f"{t.get('final_automl', float('nan')):.3g})")
            print("  " + f"{name} s{seed}".ljust(10) + "".join(f"  {c:>30s}" for c in cells))
    return results


def descriptors(ws: Workspace, csv: Path | pd.DataFrame, cfg: features.FeatureConfig | None = None):
    spec = train_spec.load(ws.baseline_spec)
    lights, ext = train_spec.lights(spec), train_spec.image_ext(spec)
    df = changenet_csv.read(csv) if isinstance(csv, Path) else csv
    cfg = cfg or features.config_for(df, ws.images, lights, ext)
    return features.row_features(df, ws.images, lights, ext, cfg), (df["label"] != "PASS").to_numpy(), df, cfg


def booster(impl, x, y, *, shrinkage: float = defaults.LOCAL_TREES["shrinkage"], init=None):
    t = defaults.LOCAL_TREES
    weight = np.where(y, defaults.LOCAL_MODEL["train.classify.cls_weight"][1], 1.0)
    return impl.Booster(x, y, weight, shrinkage=shrinkage, depth=t["depth"], min_leaf=t["min_leaf"], l2=t["l2"],
                        bins=boosted_trees.BINS, seed=defaults.SEED, threads=tree_candidates.THREADS, init=init)


def tree_costs(impls: list[str], name: str, ws: Workspace, work: Path, repeats: int) -> dict:
    backend = LocalBackend()
    job = TrainJob(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                   images_root=ws.images, output_dir=work / f"{name}_cost_warmup")
    backend.train(job)  # decodes every image once: the rows below all read cached descriptors
    x, y, _, cfg = descriptors(ws, ws.training_csv)
    x_kpi = descriptors(ws, ws.kpi_csv, cfg)[0]
    rounds = defaults.LOCAL_TREES["per_epoch"] * defaults.LOCAL_MODEL["train.num_epochs"]
    best: dict[str, dict[str, float]] = {i: {} for i in impls}
    sizes = {}
    for rep in range(repeats):
        for impl in rotated(impls, rep):
            tree_candidates.use(impl)
            out = work / f"{name}_cost_{impl}"
            t0 = time.perf_counter()
            backend.train(TrainJob(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                                   images_root=ws.images, output_dir=out / "train"))
            t1 = time.perf_counter()
            backend.infer(InferJob(spec=out / "train" / "experiment.yaml", checkpoint=out / "train" / "best.ckpt",
                                   csv=ws.kpi_csv, images_root=ws.images, output_dir=out / "inference"))
            t2 = time.perf_counter()
            b = booster(tree_candidates.get(impl), x, y)
            b.rounds(rounds)
            t3 = time.perf_counter()
            b.forest.margin(x_kpi)
            t4 = time.perf_counter()
            for key, v in (("train", t1 - t0), ("infer", t2 - t1), ("both", t2 - t0), ("tree fit", t3 - t2),
                           ("tree score", t4 - t3)):
                best[impl][key] = min(best[impl].get(key, float("inf")), v)
            ckpt = out / "train" / "best.ckpt"
            forest = ensemble.load(ckpt).forest  # the trees part: the model's own bytes (ours: its arrays in an npz)
            sizes[impl] = (ckpt.stat().st_size, len(tree_candidates.model_bytes(forest)), int(forest.n_trees))
    base = best[impls[0]]
    print(f"  {name}: fastest of {repeats}, features cached; x = ratio to {impls[0]} ({len(y)} train rows, "
          f"{len(x_kpi)} KPI rows, {rounds} rounds)")
    for impl in impls:
        b = best[impl]
        print(f"    {impl:8s} train {b['train']:6.2f} s  infer {b['infer']:5.2f} s  train+infer {b['both']:6.2f} s "
              f"({b['both'] / base['both']:.2f}x)  | trees alone: fit {b['tree fit']:6.3f} s "
              f"({b['tree fit'] / base['tree fit']:.2f}x), score {1000 * b['tree score']:6.1f} ms "
              f"({b['tree score'] / base['tree score']:.2f}x) | checkpoint {sizes[impl][0] / 1024:6.1f} KiB, "
              f"trees {sizes[impl][1] / 1024:6.1f} KiB ({sizes[impl][2]} trees kept)", flush=True)
    return best


def _log_loss(z: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(1 / (1 + np.exp(-np.clip(z, -60, 60))), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def warm_start(impls: list[str], name: str, ws: Workspace, manifest: dict) -> None:
    fam = manifest["families"]
    new = set(fam["missing_from_base_train"]) | set(fam["rare_in_base_train"])
    x, y, base_df, cfg = descriptors(ws, ws.training_csv)
    added = diagnostics.pool_rows_for_missing_families(ws.root)
    x_add, y_add, _, _ = descriptors(ws, added, cfg)
    x_kpi, y_kpi, kpi_df, _ = descriptors(ws, ws.kpi_csv, cfg)
    is_new = kpi_df["label"].isin(new).to_numpy()
    groups = {"new families": is_new | ~y_kpi, "other families": ~is_new}  # each with every PASS row
    x2, y2 = np.concatenate([x, x_add]), np.concatenate([y, y_add])
    rounds = defaults.LOCAL_TREES["per_epoch"] * defaults.LOCAL_MODEL["train.num_epochs"]
    fine_step = defaults.LOCAL_TREES["shrinkage"] * 0.5  # Phase 3 / DEFT fine-tunes take smaller steps
    print(f"  {name}: {rounds} rounds on {len(y)} base rows, then 50 from that model on {len(y2)} rows "
          f"(+{len(y_add)}: {', '.join(sorted(new))}) at shrinkage {fine_step:g}; KPI log-loss "
          f"(new families + PASS | other families + PASS), FAR@100%R")
    for impl_name in impls:
        impl = tree_candidates.get(impl_name)
        a = booster(impl, x, y)
        first = a.rounds(rounds)
        k = first.n_trees
        b = booster(impl, x2, y2, shrinkage=fine_step, init=first)
        start_err = float(np.abs(b.z - first.margin(x2)).max())
        tuned = b.rounds(50)
        kept = float(np.abs(tuned.margin(x_kpi, k) - first.margin(x_kpi)).max())
        z0, z1 = first.margin(x_kpi), tuned.margin(x_kpi)
        cells = " | ".join(f"{_log_loss(z0[g], y_kpi[g]):.3f} -> {_log_loss(z1[g], y_kpi[g]):.3f}" for g in groups.values())
        far0, far1 = (float(kpi.at_recall(z, y_kpi, 100.0).far_pct) for z in (z0, z1))
        extra = ""
        if impl_name == "hgb":
            extra = f"; sklearn's own warm-start margin off by {hgb_stale_margin(x, y, x2, y2):.3g} (max |logit|)"
        print(f"    {impl_name:8s} trees {k} -> {tuned.n_trees}, old trees unchanged (max |diff| {kept:.1e}), start "
              f"margin = the model's (max |diff| {start_err:.1e}); log-loss {cells}; FAR {far0:.2f}% -> {far1:.2f}%"
              + extra, flush=True)


def hgb_stale_margin(x, y, x2, y2) -> float:
    """sklearn's warm start on new rows: its starting margin (the old trees on the new rows' bins)
    against the old model's own prediction of those rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    t = defaults.LOCAL_TREES
    est = HistGradientBoostingClassifier(learning_rate=t["shrinkage"], max_depth=t["depth"],
                                         max_leaf_nodes=2 ** t["depth"], min_samples_leaf=t["min_leaf"],
                                         l2_regularization=t["l2"], max_bins=t["bins"], early_stopping=False,
                                         warm_start=True, max_iter=50, random_state=0).fit(x, y)
    own = est.decision_function(x2)
    est._bin_mapper.fit(x2)  # what fit() does first on the new rows
    est._in_fit = True
    stale = est._raw_predict(est._bin_mapper.transform(x2)).ravel()
    est._in_fit = False
    return float(np.abs(stale - own).max())


def fuzz_child(impl_name: str, blob: str, n_features: int, start: int) -> None:
    """Load damaged copies of one trees model, one line per case; a case that kills the process
    shows as the missing line."""
    impl = tree_candidates.get(impl_name)
    raw = Path(blob).read_bytes()
    for case in range(start, 10**6):
        r = random.Random(case)
        t = bytearray(raw)
        kind = case % 3
        if kind == 0:
            t = t[:r.randrange(1, len(t))]
        elif kind == 1:
            for _ in range(5):
                t[r.randrange(len(t))] = r.randrange(256)
        else:
            i = r.randrange(len(t))
            t = t[:i] + t[i + 50:]
        try:
            impl.load(bytes(t), n_features).margin(np.zeros((3, n_features)))
            result = "loaded"
        except Exception:  # noqa: BLE001  any Python error counts as refused
            result = "refused"
        print(f"{case} {result}", flush=True)


def load_safety(impls: list[str], work: Path, fuzz: int) -> None:
    formats = {"own": "npz of arrays (np.load, allow_pickle=False)",
               "lightgbm": "LightGBM text (model_to_string / Booster(model_str=...))",
               "xgboost": "XGBoost JSON (save_raw('json') / load_model)",
               "hgb": "none of its own (pickle/joblib only); here sklearn's private node records in an npz"}
    for impl_name in impls:
        ckpt = next(work.glob(f"*_cost_{impl_name}/train/best.ckpt"))
        tree_candidates.use(impl_name)
        model = ensemble.load(ckpt)
        raw, n_features = tree_candidates.model_bytes(model.forest), int(model.mean.shape[0])
        blob = work / f"trees_{impl_name}.bin"
        blob.write_bytes(raw)
        counts = {"refused": 0, "loaded": 0, "died": 0}
        case = 0
        while case < fuzz:
            proc = subprocess.Popen([PY, __file__, "--fuzz-child", impl_name, str(blob), str(n_features), str(case)],
                                    env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    errors="replace")
            died = True
            for line in proc.stdout:
                parts = line.split()
                if len(parts) != 2 or parts[1] not in counts:
                    continue  # the library's own messages (LightGBM prints to stdout)
                c, result = parts
                counts[result] += 1
                case = int(c) + 1
                if case >= fuzz:
                    died = False
                    break
            proc.kill()
            proc.wait()
            if died:
                counts["died"] += 1
                case += 1
        print(f"    {impl_name:8s} {formats[impl_name]}: {fuzz} damaged copies (truncated / 5 bytes changed / 50 bytes "
              f"cut): refused {counts['refused']}, loaded {counts['loaded']}, process died {counts['died']}", flush=True)


def trees_section(impls: list[str], names: list[str], seeds: list[int], work: Path, repeats: int, fuzz: int,
                  parts: str) -> None:
    if "a" in parts:
        print("5a. three-phase runs (KPI FAR@100% recall, %)")
        tree_full_runs(impls, names, seeds, work)
    for name in names if "b" in parts or "c" in parts else []:
        ws = deft_quality.build(name, seeds[0], work / "cost")
        if "b" in parts:
            print(f"5b. cost ({name} seed {seeds[0]})")
            tree_costs(impls, name, ws, work / "cost", repeats)
        if "c" in parts:
            print(f"5c. warm start ({name} seed {seeds[0]})")
            warm_start(impls, name, ws, dict(pd.read_json(ws.root / "demo_manifest.json", typ="series")))
    if "d" in parts:  # reads the checkpoints 5b wrote
        print("5d. load safety of the trees' model format")
        load_safety(impls, work / "cost", fuzz)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,demo,large,field", help="workspace presets of 1-4 ('none': skip)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--trees", default="", help="section 5: comma-separated tree implementations, the first is the "
                                                 "baseline of the ratios (own,lightgbm,xgboost,hgb)")
    ap.add_argument("--tree-seeds", default="0,1", help="workspace seeds of the three-phase runs")
    ap.add_argument("--tree-workspaces", default="demo,field", help="generators of section 5 (b, c: the first seed)")
    ap.add_argument("--tree-repeats", type=int, default=3)
    ap.add_argument("--fuzz", type=int, default=60)
    ap.add_argument("--tree-parts", default="abcd", help="a: the three-phase runs, b: cost, c: warm start, "
                                                          "d: load safety (after b)")
    ap.add_argument("--trees-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--fuzz-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trees_child:
        return trees_child(*args.trees_child)
    if args.fuzz_child:
        impl, blob, n, start = args.fuzz_child
        return fuzz_child(impl, blob, int(n), int(start))
    presets = [p for p in args.presets.split(",") if p and p != "none"]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_embedded_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"host: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; scratch {work}")
    try:
        if presets:
            print("1. workspace build")
        built = {p: build(p, work) for p in presets}
        if "demo" in built and "field" in built:
            print(f"  field / demo images per second: {built['field'][2] / built['demo'][2]:.2f}")
        if built:
            print("2. train / infer (local backend)")
        for p in ("demo", "field", "large"):
            if p in built:
                train_infer(built[p][0], p, work)
        if built:
            print("3. headroom (base train alone vs with the pools' missing families)")
        for p in ("demo", "field"):
            if p in built:
                headroom(p, built[p][0], built[p][1], work)
        if built:
            print("4. mining floor with the local embedder")
            floor_sweep(built)
        if args.trees:
            trees_section([i for i in args.trees.split(",") if i], [n for n in args.tree_workspaces.split(",") if n],
                          [int(x) for x in args.tree_seeds.split(",") if x],
                          work, args.tree_repeats, args.fuzz, args.tree_parts)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
