#!/usr/bin/env python3
"""Why a DEFT run stops improving: what the defects that pin the KPI threshold get from each iteration.

Runs the three phases as bench/deft_quality.py does (same workspace, same options) and prints, per
iteration:

1. the training set: its rows, the limiting family's rows (the baseline's limiting family, as in
   deft_quality.py) and how many of them this iteration added;
2. the KPI set: FAR@100% recall, the FAR each family's lowest defect alone would set, and the
   lowest defects of the limiting family (score, the share of PASS rows at or above it, the
   generator's truth: severity / footprint, from demo_truth.csv);
3. the fine-tune: learning rate, epochs, the epoch kept (by the spec's checkpointer rule) and the trees it holds;
4. mining for the sample that pins the threshold: neighbour slots it had, pool rows of its label
   above the similarity floor, rows it brought, its best cosine.

Then the headroom: one from-scratch training with Phase 1's spec on the base set plus every
labelled mining-pool row, and its KPI FAR (what the features allow with all the labelled data
there is). Run: .venv/bin/python bench/deft_plateau.py [--workspaces field] [--seeds 0]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

import deft_quality as dq  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tao_aoi import labels as labels_mod  # noqa: E402
from tao_aoi.analysis import kpi
from tao_aoi.backends import get_backend  # noqa: E402
from tao_aoi.backends.base import TrainJob  # noqa: E402
from tao_aoi.data import changenet_csv
from tao_aoi.deft import mining
from tao_aoi.layout import Results, Workspace  # noqa: E402
from tao_aoi.model import checkpoint, ensemble, features
from tao_aoi.tao import train_spec  # noqa: E402


def row_keys(df: pd.DataFrame) -> pd.Series:
    return df["input_path"].astype(str) + "/" + df["object_name"].astype(str)


def family_far(scores: np.ndarray, positive: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per defect family: the FAR its lowest-scored defect alone would set at 100% recall."""
    share = dq.pass_share_above(scores, positive)
    fam = labels[positive]
    return {f: 100.0 * float(share[fam == f].max()) for f in sorted(set(fam))}


def truth_of(ws: Workspace) -> dict[str, str]:
    t = pd.read_csv(ws.root / "demo_truth.csv", dtype=str, keep_default_na=False)
    return dict(zip(row_keys(t), t["severity"].replace("", "-") + "/" + t["footprint"]))


def iterations(R: Results) -> list[str]:
    st = json.loads(R.state.read_text(encoding="utf-8"))
    return ["baseline"] + sorted((k for k in st["iterations"] if k.startswith("iter")), key=lambda k: int(k[4:]))


def nearest(target: pd.DataFrame, train: pd.DataFrame, family: str, ws: Workspace, R: Results) -> str:
    """Best cosine of ``target`` to the training rows of ``family`` and of PASS, and its 5 nearest labels."""
    spec = train_spec.load(R.root / "baseline_spec_automl.yaml")
    lights, ext = train_spec.lights(spec, "spec"), train_spec.image_ext(spec, "spec")
    train = mining.resolved(train, ws.images)
    t_emb, p_emb = mining.comparable(features.embeddings(mining.resolved(target, ws.images), ws.images, lights, ext),
                                     features.embeddings(train, ws.images, lights, ext),
                                     features.embedder_settings(lights, ext))
    sim = (mining.unit_rows(p_emb) @ mining.unit_rows(t_emb)[0]).astype(np.float64)
    labels = train["label"].to_numpy()
    top = np.argsort(-sim)[:5]
    return (f"best {family} {sim[labels == family].max():.3f}, best PASS {sim[labels == labels_mod.PASS].max():.3f}; "
            f"5 nearest: " + ", ".join(f"{labels[i]} {sim[i]:.3f}" for i in top))


def report(name: str, seed: int, ws: Workspace, R: Results, work: Path) -> None:
    worst = dq.limiting_family(R, ws)[0]
    truth = truth_of(ws)
    st = json.loads(R.state.read_text(encoding="utf-8"))
    print(f"\n== {name} seed {seed}: limiting family {worst}")
    pool = mining.resolved(changenet_csv.read(ws.mining_pool_csv, what="mining pool"), ws.images,
                           ws.mining_pool_csv.parent)
    pool_truth = row_keys(pool).map(truth)[(pool["label"] == worst).to_numpy()]
    for it in iterations(R):
        n = 0 if it == "baseline" else int(it[4:])
        train = changenet_csv.read(ws.training_csv if n == 0 else R.combined_csv(n), what="training CSV")
        added = ""
        if n:
            prov = changenet_csv.read(R.provenance_csv(n), ("row", "added_in"), what="provenance CSV")
            new = (prov["added_in"] == it).to_numpy()
            added = f", +{int((new & (train['label'] == worst).to_numpy()).sum())} this iteration"
        df, scores, positive = kpi.read_inference(str(R.stage_dir(it, "evaluate") / "inference.csv"))
        labels = df["label"].to_numpy()
        fam = family_far(scores, positive, labels)
        share = dq.pass_share_above(scores, positive)
        lim = np.flatnonzero(labels[positive] == worst)
        lowest = lim[np.argsort(scores[positive][lim])][:3]
        keys = row_keys(df[positive]).to_numpy()
        meta = checkpoint.load(st["iterations"][it]["artifacts"]["checkpoint"], ensemble.FORMAT,
                               ensemble.FORMAT_VERSION)[1]
        hp = meta["hyperparameters"]
        pin_truth = truth.get(keys[lowest[0]], "?")
        like = int(((train["label"] == worst) & (row_keys(train).map(truth) == pin_truth)).sum())
        print(f"  {it:<9s} train {len(train):5d} rows, {worst} {int((train['label'] == worst).sum()):4d}{added}, "
              f"{like} of them {pin_truth} like its lowest (pool {int((pool_truth == pin_truth).sum())}); "
              f"KPI FAR {kpi.at_recall(scores, positive, 100.0).far_pct:6.2f}%")
        print("            family FAR: " + " ".join(f"{f[:8]} {v:.1f}" for f, v in fam.items()))
        print(f"            lowest {worst}: " + ", ".join(
            f"{scores[positive][i]:.3f} (PASS above {100 * share[i]:.1f}%, {truth.get(keys[i], '?')})" for i in lowest))
        print(f"            train: lr {hp['lr']:.3g}, {hp['epochs']} epochs, kept epoch {meta.get('best_epoch')} by {meta.get('kept_by')}, "
              f"{meta['trees']} trees, fine-tuned {meta['fine_tuned']}")
        if n:
            knn = changenet_csv.read(R.stage_dir(it, "mining") / "knn_summary.csv", mining.SUMMARY_COLUMNS,
                                     what="knn summary", allow_empty=True)
            pin = knn[knn["target"] == keys[lowest[0]]]
            if len(pin):
                r = pin.iloc[0]
                print(f"            mining its lowest {worst}: {r['k']} slots, {r['candidates']} candidates, "
                      f"{r['above_floor']} above the floor, {r['new']} brought, "
                      f"best cosine {float(r['best_similarity']):.3f}")
    print(f"  its lowest {worst} at {it} against that training set (mining's embedder, cosine): "
          + nearest(df[positive].iloc[[lowest[0]]], train, worst, ws, R))
    base = changenet_csv.read(ws.training_csv, what="training CSV")
    out = work / f"{name}_s{seed}_headroom"
    out.mkdir(parents=True, exist_ok=True)
    changenet_csv.write(pd.concat([base, pool[base.columns]], ignore_index=True), out / "train.csv")
    backend = get_backend("local")
    backend.train(TrainJob(spec=R.root / "baseline_spec_automl.yaml", train_csv=out / "train.csv",
                           val_csv=ws.validation_csv, images_root=ws.images, output_dir=out))
    far = dq.kpi_far_of(backend, out / "experiment.yaml", out / "best.ckpt", ws, out / "kpi")
    df, scores, positive = kpi.read_inference(str(out / "kpi" / "inference.csv"))
    fam = family_far(scores, positive, df["label"].to_numpy())
    print(f"  headroom: Phase 1's spec from scratch on base + whole pool ({len(base) + len(pool)} rows): KPI FAR "
          f"{far:.2f}%; family FAR: " + " ".join(f"{f[:8]} {v:.1f}" for f, v in fam.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspaces", default="field")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--trials", type=int, default=dq.defaults.AUTOML_TRIALS)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_deft_plateau_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for name in [w for w in args.workspaces.split(",") if w]:
            for seed in [int(s) for s in args.seeds.split(",") if s]:
                ws = dq.build(name, seed, work)
                _, R = dq.run_three_phases(ws, args.trials)
                report(name, seed, ws, R, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
