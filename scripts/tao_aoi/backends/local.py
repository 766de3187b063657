"""The embedded default backend: train, infer and embed in-process on the CPU.

Jobs run synchronously inside ``submit_*`` and come back COMPLETE (there is nothing to poll or
cancel); bad input raises ``UserError`` before any output is written. Every input is checked
first (spec values, CSV columns, both classes where training needs them, every image of every
light, the checkpoint), then features are computed (``features.py``, cached per process), and only
then are outputs written, each atomically:

- train: ``best.ckpt`` (``local_model``), ``experiment.yaml`` (the effective spec: overrides,
  dataset paths, ``train.pretrained_model_path``), ``status.json`` (TAO-shaped JSON lines, one per
  epoch with ``kpi.val_far`` in percent) and ``train.log``; ``TrainJob.on_epoch`` is called after
  every epoch and may raise to stop the run (a pruned AutoML trial);
- infer: ``inference.csv`` (input_path, golden_path, object_name, label, siamese_score, then the
  input's extra columns), ``status.json``, ``infer.log``;
- embed: the parquet (input columns + ``embedding``, a fixed-size float32 list) and
  ``<output>.settings.json`` (``features.embedder_settings``).
"""
from __future__ import annotations

import copy
import datetime as _dt
import itertools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tao_aoi import atomic, defaults, labels
from tao_aoi.backends.base import COMPLETE, Backend, EmbedJob, InferJob, JobHandle, TrainJob
from tao_aoi.data import changenet_csv, dataset_checks
from tao_aoi.errors import UserError
from tao_aoi.model import ensemble, features
from tao_aoi.tao import train_spec

if TYPE_CHECKING:
    import numpy as np

STATUS = "status.json"
INFER_REQUIRED = ("input_path", "golden_path", "object_name")
_ids = itertools.count(1)


def _job_id(kind: str) -> str:
    return f"local-{kind}-{os.getpid()}-{next(_ids)}"


def _stamp() -> dict[str, str]:
    now = _dt.datetime.now()
    return {"date": now.strftime("%m/%d/%Y"), "time": now.strftime("%H:%M:%S")}


def _status_line(status: str, message: str, **extra: Any) -> str:
    return json.dumps({**_stamp(), "status": status, "verbosity": "INFO", "message": message, **extra},
                      sort_keys=False, default=float) + "\n"


class _Journal:
    """status.json and the log, appended line by line while a job runs (readers follow progress)."""

    def __init__(self, out: Path, log_name: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.status_path, self.log_path = out / STATUS, out / log_name
        for p in (self.status_path, self.log_path):
            p.write_text("", encoding="utf-8")

    def status(self, status: str, message: str, **extra: Any) -> None:
        with open(self.status_path, "a", encoding="utf-8") as fh:
            fh.write(_status_line(status, message, **extra))

    def log(self, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{_dt.datetime.now().isoformat(timespec='seconds')} {text}\n")


# ------------------------------------------------------------------------------------ inputs

def effective_spec(path: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    return train_spec.with_values(train_spec.load(path), {str(k): v for k, v in overrides.items()})


def _require_classes(df, csv: Path, what: str) -> None:
    positive = (df["label"] != labels.PASS).to_numpy()
    if positive.all() or not positive.any():
        missing = "PASS" if positive.all() else "defect"
        raise UserError(f"{what} {csv} has no {missing} rows; it needs both PASS and defect rows")


def _require_images(df, csv: Path, images_root: Path, lights, ext: str) -> None:
    missing = changenet_csv.missing_images(df, images_root, lights, ext)
    if missing:
        line, path = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{csv} line {line}: image {path} does not exist{more}; restore it or drop the row")


def row_weights(path: Path, n_rows: int, csv: Path) -> np.ndarray:
    """Per-row training weights from ``path`` (a ``weight`` column, one row per training row in order; a
    ``row`` column, when present, must number them 0..n-1: a provenance CSV qualifies). Every weight is
    finite and in (0, defaults.MAX_ROW_WEIGHT]: a weight, never a repeated row."""
    import numpy as np
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"--row-weights {path} cannot be read ({' '.join(str(exc).split())[:160]}); pass the "
                        f"iteration's provenance CSV or a CSV with a weight column") from None
    if "weight" not in df.columns:
        raise UserError(f"--row-weights {path} has no 'weight' column (has: {', '.join(df.columns)})")
    if len(df) != n_rows:
        raise UserError(f"--row-weights {path} has {len(df)} rows but the training CSV {csv} has {n_rows}; "
                        f"they must be aligned row by row")
    if "row" in df.columns and not (pd.to_numeric(df["row"], errors="coerce").to_numpy() == np.arange(n_rows)).all():
        raise UserError(f"--row-weights {path}: column 'row' must number the training rows 0..{n_rows - 1} in order")
    w = pd.to_numeric(df["weight"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(w) | (w <= 0) | (w > defaults.MAX_ROW_WEIGHT))
    if bad.size:
        raise UserError(f"--row-weights {path} line {int(bad[0]) + 2}: weight {df['weight'].iat[int(bad[0])]!r} must "
                        f"be a number in (0, {defaults.MAX_ROW_WEIGHT:g}]")
    return w


def _init_checkpoint(job: TrainJob, spec: Mapping[str, Any]) -> Path | None:
    if job.init_checkpoint is not None and str(job.init_checkpoint):
        return Path(job.init_checkpoint)
    declared = train_spec.get(spec, "train.pretrained_model_path")
    return Path(declared) if isinstance(declared, str) and declared.strip() else None


# ------------------------------------------------------------------------------------ backend

class LocalBackend(Backend):
    name = "local"

    def __init__(self, **_options: Any) -> None:
        pass  # nothing to configure; options other backends take are accepted and ignored

    def status(self, handle: JobHandle) -> str:
        return handle.state

    def cancel(self, handle: JobHandle) -> None:
        """Jobs finish inside submit_*; there is never one left to cancel."""

    # -- train --------------------------------------------------------------------------------
    def submit_train(self, job: TrainJob) -> JobHandle:
        spec = effective_spec(Path(job.spec), job.overrides)
        where = f"train spec {job.spec}"
        lights, ext = train_spec.lights(spec, where), train_spec.image_ext(spec, where)
        hp = ensemble.hyperparams(spec, where)
        keep = ensemble.keep_rule(spec, where)
        init_path = _init_checkpoint(job, spec)
        init = ensemble.load(init_path, lights) if init_path is not None else None
        root = Path(job.images_root)
        frames = {}
        repeats = 0
        for what, csv in (("training CSV", Path(job.train_csv)), ("validation CSV", Path(job.val_csv))):
            df = changenet_csv.read(csv, what=what)
            if what == "training CSV":  # one row per training key: a repeated row is never a class weight
                df, repeats = dataset_checks.dedupe(df, root, csv, what)
            _require_classes(df, csv, what)
            _require_images(df, csv, root, lights, ext)
            frames[what] = df
        cfg = init.feature_config if init is not None else\
            features.config_for(frames["training CSV"], root, lights, ext)
        x = features.row_features(frames["training CSV"], root, lights, ext, cfg)
        x_val = features.row_features(frames["validation CSV"], root, lights, ext, cfg)
        y = (frames["training CSV"]["label"] != labels.PASS).to_numpy()
        y_val = (frames["validation CSV"]["label"] != labels.PASS).to_numpy()
        weights = row_weights(Path(job.row_weights), len(y), Path(job.train_csv)) if job.row_weights else None

        out = Path(job.output_dir)
        ckpt, exp = out / defaults.CHECKPOINT_NAME, out / "experiment.yaml"
        for stale in (ckpt, exp):
            stale.unlink(missing_ok=True)
        journal = _Journal(out, "train.log")
        journal.status("STARTED", "Starting local model training", max_epoch=hp.epochs)
        if repeats:
            journal.log(f"{job.train_csv}: {repeats} repeated training row(s) (same input_path, golden_path, "
                        f"object_name) dropped, the first of each kept")
        journal.log(f"train {job.train_csv} ({len(y)} rows, {int(y.sum())} defect) val {job.val_csv} "
                    f"({len(y_val)} rows) lights {lights} hyperparameters {hp.as_dict()} "
                    f"init {init_path or 'none'}"
                    + (f" row weights {job.row_weights} ({int((weights != 1).sum())} rows weighted, max "
                       f"{weights.max():g})" if weights is not None else ""))
        started = time.perf_counter()

        def epoch_done(epoch: int, metrics: dict[str, float]) -> None:
            eta = metrics["epoch_sec"] * (hp.epochs - epoch - 1)
            kpis = {k: round(v, 6) for k, v in metrics.items() if k != "epoch_sec"}
            journal.status("RUNNING", f"Epoch {epoch} finished", epoch=epoch, max_epoch=hp.epochs,
                           time_per_epoch=str(_dt.timedelta(seconds=round(metrics["epoch_sec"], 3))),
                           eta=str(_dt.timedelta(seconds=round(eta, 1))), kpi=kpis)
            journal.log(f"epoch {epoch}: " + " ".join(f"{k}={v:.6g}" for k, v in kpis.items()))
            if job.on_epoch is not None:
                job.on_epoch(epoch, {k: v for k, v in metrics.items() if k != "epoch_sec"})

        try:
            model, history = ensemble.fit(x, y, x_val, y_val, hp, lights=lights, cfg=cfg, init=init,
                                          on_epoch=epoch_done, sample_weight=weights, keep=keep)
        except BaseException as exc:  # the caller stopped us (pruning) or something broke: say so, re-raise
            stopped = type(exc).__name__ in ("TrialPruned", "KeyboardInterrupt")
            journal.status("SKIPPED" if stopped else "FAILURE", f"{type(exc).__name__}: {exc}")
            journal.log(f"stopped: {type(exc).__name__}: {exc}")
            raise
        model.meta["init_checkpoint"] = str(init_path) if init_path else None
        if weights is not None:
            model.meta["row_weights"] = {"file": str(job.row_weights), "weighted_rows": int((weights != 1).sum()),
                                         "max": float(weights.max())}
        model.save(ckpt)
        atomic.write_text(exp, train_spec.dump(_experiment(spec, job, out, init_path)))
        best = model.meta["best_epoch"]
        summary = (f"kept epoch {best} by {model.meta['kept_by']}, val FAR {model.meta['val_far_pct']:.4g}% "
                   f"({len(history)} epochs, {time.perf_counter() - started:.2f} s)")
        journal.status("SUCCESS", f"Training finished: {summary}",
                       kpi={"best_epoch": best, "val_far": round(model.meta["val_far_pct"], 6),
                            "val_loss": round(model.meta["val_loss"], 6)})
        journal.log(f"saved {ckpt}: {summary}")
        return JobHandle("local", "train", _job_id("train"), out, COMPLETE, summary)

    # -- infer --------------------------------------------------------------------------------
    def submit_infer(self, job: InferJob) -> JobHandle:
        spec = train_spec.load(job.spec)
        where = f"train spec {job.spec}"
        lights, ext = train_spec.lights(spec, where), train_spec.image_ext(spec, where)
        csv, root = Path(job.csv), Path(job.images_root)
        df = changenet_csv.read(csv, INFER_REQUIRED, what="inference CSV")
        model = ensemble.load(job.checkpoint, lights)
        _require_images(df, csv, root, lights, ext)
        started = time.perf_counter()
        scores = model.scores(features.row_features(df, root, lights, ext, model.feature_config))
        first = [c for c in ("input_path", "golden_path", "object_name", "label") if c in df.columns]
        result = df[first].assign(siamese_score=scores)
        result = result.join(df[[c for c in df.columns if c not in first]])
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        changenet_csv.write(result, out / "inference.csv")
        secs = time.perf_counter() - started
        summary = f"{len(df)} rows scored in {secs:.2f} s with {job.checkpoint}"
        atomic.write_text(out / STATUS, _status_line("STARTED", "Starting local model inference")
                          + _status_line("SUCCESS", f"Inference finished: {summary}", kpi={"rows": len(df)}))
        atomic.write_text(out / "infer.log", f"{_dt.datetime.now().isoformat(timespec='seconds')} "
                                             f"{csv} -> {out / 'inference.csv'}: {summary}\n")
        return JobHandle("local", "infer", _job_id("infer"), out, COMPLETE, summary)

    # -- embed --------------------------------------------------------------------------------
    def submit_embed(self, job: EmbedJob) -> JobHandle:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        spec = train_spec.load(job.spec)
        where = f"train spec {job.spec}"
        lights, ext = train_spec.lights(spec, where), train_spec.image_ext(spec, where)
        csv, root = Path(job.csv), Path(job.images_root)
        df = changenet_csv.read(csv, INFER_REQUIRED, what="embedding CSV")
        _require_images(df, csv, root, lights, ext)
        cfg = _embed_config(job.settings, features.config_for(df, root, lights, ext))
        emb = features.embeddings(df, root, lights, ext, cfg)
        table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
        flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).ravel(), type=pa.float32())
        table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]))
        out = Path(job.output)
        settings_path = Path(f"{out}.settings.json")
        settings_path.unlink(missing_ok=True)  # never leave new vectors beside old settings
        with atomic.atomic_path(out) as tmp:
            pq.write_table(table, tmp)
        atomic.write_json(settings_path, features.embedder_settings(lights, ext, cfg))
        return JobHandle("local", "embed", _job_id("embed"), out.parent, COMPLETE,
                         f"{len(df)} rows embedded ({emb.shape[1]} dims) -> {out}")


def _embed_config(settings: Mapping[str, Any], base: features.FeatureConfig) -> features.FeatureConfig:
    """Feature settings an embed job may change (size, border, ...) over ``base`` (the settings for
    the crops at hand); anything else is an error."""
    known = set(features.DEFAULT.as_dict()) - {"version"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UserError(f"embed settings {unknown} are not settings of the local embedder (it takes "
                        f"{sorted(known)})")
    return features.FeatureConfig.from_dict({**base.as_dict(), **settings}, "embed settings")


def _experiment(spec: Mapping[str, Any], job: TrainJob, out: Path, init: Path | None) -> dict[str, Any]:
    """The spec as run: overrides applied, dataset paths and the init checkpoint filled in."""
    exp = copy.deepcopy(dict(spec))
    root = str(Path(job.images_root).resolve())
    for key, csv in (("train_dataset", job.train_csv), ("validation_dataset", job.val_csv)):
        train_spec.set_dotted(exp, f"dataset.classify.{key}.csv_path", str(Path(csv).resolve()))
        train_spec.set_dotted(exp, f"dataset.classify.{key}.images_dir", root)
    train_spec.set_dotted(exp, "train.pretrained_model_path", str(init.resolve()) if init else "")
    exp["results_dir"] = str(out.resolve())
    return exp
