#!/usr/bin/env python3
"""Warm start of the embedded model: does carrying Adam's state into the fine-tune help or hurt?

The DEFT loop fine-tunes the previous best checkpoint on a larger training set. model/ensemble.py
starts a new Adam optimizer then (the checkpoint holds weights, like TAO's train.pretrained_model_path);
the alternative continues the first and second moments and the step count of the checkpoint's epoch,
as a resumed training would. Per workspace (demo and field generators) and seed:
  baseline   trained from scratch on the base training set (the spec's hyper-parameters)
  fine-tune  base + the pools' rows of the families the base set lacks or nearly lacks (what DEFT can
             add at best, workspace/diagnostics.py), from the baseline, once with a fresh Adam and once
             with the baseline's Adam state; at the spec's learning rate (a DEFT iteration) and at a
             quarter of it (a Phase 3-like narrowed rate).
Printed: KPI FAR at 100% recall on the KPI set (the contract's number), the best epoch's validation
FAR (what picks the epoch, so this one is measured on the set that chose the model), the best epoch,
and validation FAR after the first fine-tune epoch (a step too large shows there). The kept-state
variant is built here, outside the library, from scikit-learn's own optimizer object.
Run: .venv/bin/python bench/warm_start.py [--presets demo,field] [--seeds 0,1]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import sklearn.neural_network as nn  # noqa: E402
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer  # noqa: E402

from tao_aoi import labels  # noqa: E402
from tao_aoi.analysis import kpi  # noqa: E402
from tao_aoi.data import changenet_csv  # noqa: E402
from tao_aoi.layout import Workspace  # noqa: E402
from tao_aoi.model import ensemble, features  # noqa: E402
from tao_aoi.tao import train_spec  # noqa: E402
from tao_aoi.workspace import diagnostics, presets  # noqa: E402


class _AdamProbe(nn.MLPClassifier):
    """MLPClassifier that records Adam's (t, m, v) after each epoch and, when given one, starts from it."""

    record: list = []
    start_from: tuple | None = None

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        epoch = len(X) > 2  # ensemble.fit builds the estimator with a 2-row call first
        if epoch and self.start_from is not None and not hasattr(self, "_optimizer"):
            t, ms, vs = self.start_from
            opt = AdamOptimizer(self.coefs_ + self.intercepts_, self.learning_rate_init, self.beta_1, self.beta_2,
                                self.epsilon)
            opt.t, opt.ms, opt.vs = t, [m.copy() for m in ms], [v.copy() for v in vs]
            self._optimizer = opt
        out = super().partial_fit(X, y, sample_weight=sample_weight, classes=classes)
        if epoch:
            o = self._optimizer
            type(self).record.append((o.t, [m.copy() for m in o.ms], [v.copy() for v in o.vs]))
        return out


@contextlib.contextmanager
def probed(start_from: tuple | None):
    probe = type("Probe", (_AdamProbe,), {"record": [], "start_from": start_from})
    saved, nn.MLPClassifier = nn.MLPClassifier, probe
    try:
        yield probe
    finally:
        nn.MLPClassifier = saved


def far100(model: ensemble.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(kpi.at_recall(model.scores(x), y, 100.0).far_pct)


def features_of(ws: Workspace) -> dict:
    spec = train_spec.load(ws.baseline_spec)
    lights, ext = train_spec.lights(spec), train_spec.image_ext(spec)
    base = changenet_csv.read(ws.training_csv)
    frames = {"base": base, "val": changenet_csv.read(ws.validation_csv), "kpi": changenet_csv.read(ws.kpi_csv),
              "added": pd.concat([base, diagnostics.pool_rows_for_missing_families(ws.root)], ignore_index=True)}
    cfg = features.config_for(base, ws.images, lights, ext)
    out = {"hp": ensemble.hyperparams(spec), "lights": lights, "cfg": cfg}
    for name, df in frames.items():
        out[name] = (features.row_features(df, ws.images, lights, ext, cfg), (df["label"] != labels.PASS).to_numpy())
    return out


def run(preset: str, seed: int, work: Path) -> list[dict]:
    ws = Workspace.at(work / f"{preset}_{seed}")
    presets.build(ws.root, preset, seed)
    d = features_of(ws)
    hp = replace(d["hp"], seed=seed)
    (x, y), (xv, yv), (xk, yk), (xa, ya) = d["base"], d["val"], d["kpi"], d["added"]
    with probed(None) as probe:
        base, _ = ensemble.fit(x, y, xv, yv, hp, lights=d["lights"], cfg=d["cfg"])
    state = probe.record[base.meta["best_epoch"]]  # what a checkpoint of that epoch would carry
    rows = [{"preset": preset, "seed": seed, "run": "baseline", "kpi_far": far100(base, xk, yk),
             "val_far": base.meta["val_far_pct"], "best_epoch": base.meta["best_epoch"], "first_val_far": None}]
    for lr_name, lr in (("lr", hp.lr), ("lr/4", hp.lr / 4)):
        for adam in ("fresh", "kept"):
            t0 = time.perf_counter()
            with probed(state if adam == "kept" else None) as probe:
                model, history = ensemble.fit(xa, ya, xv, yv, replace(hp, lr=lr), lights=d["lights"], cfg=d["cfg"],
                                              init=base)
            steps = -(-len(xa) // min(hp.batch_size, len(xa)))  # Adam steps in one epoch
            assert probe.record[0][0] == steps + (state[0] if adam == "kept" else 0), "the state was not used"
            rows.append({"preset": preset, "seed": seed, "run": f"fine-tune {lr_name} Adam {adam}",
                         "kpi_far": far100(model, xk, yk), "val_far": model.meta["val_far_pct"],
                         "best_epoch": model.meta["best_epoch"], "first_val_far": history[0]["val_far"],
                         "sec": time.perf_counter() - t0})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="demo,field")
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_warm_") as tmp:
        for preset in args.presets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows += run(preset, seed, Path(tmp))
                for r in rows[-5:]:
                    print(f"{r['preset']:6s} seed {r['seed']}  {r['run']:26s} KPI FAR@100%R {r['kpi_far']:7.3f}%  "
                          f"val FAR {r['val_far']:7.3f}% (epoch {r['best_epoch']:2d}; after epoch 0: "
                          f"{'-' if r['first_val_far'] is None else format(r['first_val_far'], '.3f')}%)", flush=True)
    summarise(pd.DataFrame(rows))
    return 0


def summarise(table: pd.DataFrame) -> None:
    print("\nmean over seeds (KPI FAR on the KPI set; val FAR chose the epoch):")
    summary = table.groupby(["preset", "run"], sort=False)[["kpi_far", "val_far"]].agg(statistics.fmean)
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    for (preset, lr_name), t in table.assign(lr=table["run"].str.extract(r"(lr/4|lr) ")[0]).groupby(
            ["preset", "lr"], sort=False):
        by = t.set_index(["run", "seed"])["kpi_far"]
        diff = by[f"fine-tune {lr_name} Adam kept"] - by[f"fine-tune {lr_name} Adam fresh"]
        print(f"{preset} {lr_name}: kept - fresh KPI FAR per seed {', '.join(f'{v:+.3f}' for v in diff)} points; "
              f"kept better on {int((diff < 0).sum())} of {len(diff)} seeds, worse on {int((diff > 0).sum())}")


if __name__ == "__main__":
    sys.exit(main())
