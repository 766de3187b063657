"""TAO specifics shared by the docker backend and the slurm backend's container mode.

For each job: the per-job TAO spec (the user's spec merged with dataset paths, results folder,
overrides and warm start), checked against NVIDIA's own schema and TAO's run-time rules
(``tao_schema``) before anything starts, the command run inside the container, the host folders the
container must see (mounted at the same path, so every path in the spec is valid inside and out),
and, after TAO exits, turning what it left into the backend contract of base.py.

Choices: a CSV whose labels TAO would misread (TAO computes ``label != 'PASS'``, case-sensitive, so
``pass`` is a defect to it) is handed to TAO as a canonical copy in ``<job>/inputs/`` (recorded in
the job record); train jobs enable TAO's top-k checkpointer on ``val_loss`` (mode min, the metric
every TAO 7 build logs) unless the spec configures it, and ``best.ckpt`` is its ``model_best_*``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tao_aoi import atomic, defaults, labels
from tao_aoi.backends.base import EmbedJob, InferJob, TrainJob
from tao_aoi.backends.external import (
    LOG_NAMES,
    TAO_STATUS,
    check_expected,
    contract_outputs,
    log_tail,
    remove_stale,
    tao_final_status,
)
from tao_aoi.data import changenet_csv
from tao_aoi.errors import UserError
from tao_aoi.tao import schema, train_spec, versions

SPEC_NAME = "tao_spec.yaml"
EXPERIMENT_NAME = "experiment.yaml"
LATEST_CKPT = "changenet_model_classify_latest.pth"
EPOCH_CKPT_RE = re.compile(r"^model_epoch_(\d+)_step_(\d+)\.pth$")
BEST_CKPT_RE = re.compile(r"^model_best_.*\.pth$")
ACTIONS = {"train": "train", "infer": "inference", "evaluate": "evaluate"}
EMBED_INPUT, EMBED_RAW = "embed_input.parquet", "embed_raw.parquet"
INPUTS_DIR = "inputs"  # canonical-label copies of user CSVs handed to TAO
FINISHED_RE = re.compile(r"\bfinished successfully\.?$", re.IGNORECASE)
TOPK_DEFAULTS = {"enable_topk": True, "monitor": "val_loss", "mode": "min", "save_top_k": 1}
ROW_WEIGHTS_NOT_APPLIED = ("TAO's classify loss has per-class weights only (train.classify.cls_weight), no per-row "
                           "weight: the rows train unweighted (never repeated to fake a weight)")


def air_gapped() -> bool:
    """AIR_GAPPED=1: never pull images or models; everything must already be on the host."""
    return os.environ.get("AIR_GAPPED", "").strip() == "1"


@dataclass
class TaoJob:
    """One container run: what to run, in which image, what it must see, and what to check after."""
    kind: str                            # train | infer | evaluate | embed
    image: str
    command: list[str]                   # argv inside the container
    mounts: list[tuple[str, bool]]       # (host folder, writable), mounted at the same path
    env: dict[str, str] = field(default_factory=dict)  # non-secret values only
    record: dict[str, Any] = field(default_factory=dict)


def prepare(kind: str, job: TrainJob | InferJob | EmbedJob, job_dir: Path, *, offline: bool) -> TaoJob:
    """Write the per-job spec into ``job_dir``, check it as TAO will, and describe the container run."""
    if any(c.isspace() for c in str(job_dir)):
        raise UserError(f"{job_dir}: TAO's entrypoint splits the spec path on spaces; use an output folder "
                        f"without spaces")
    if kind == "train":
        tj = _prepare_train(job, job_dir)  # type: ignore[arg-type]
    elif kind in ("infer", "evaluate"):
        tj = _prepare_infer(job, job_dir, kind)  # type: ignore[arg-type]
    elif kind == "embed":
        tj = _prepare_embed(job, job_dir, offline)  # type: ignore[arg-type]
    else:
        raise ValueError(kind)
    remove_stale([*map(Path, tj.record["expect"]), *previous_tao_outputs(job_dir)])
    schema.check(tj.record["spec"], kind, tj.record.pop("rows", None))
    if offline:  # air-gapped hosts: Hugging Face libraries must use the mounted snapshot, never the hub;
        # TAO's telemetry would wait ~30 s for a network that is not there
        tj.env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TELEMETRY_OPT_OUT="1")
    tj.record.update(tao=True, kind=kind, job_dir=str(job_dir), log=str(job_dir / LOG_NAMES[kind]),
                     image=tj.image)
    return tj


def _lights_ext(job_spec: Path, overrides: Any) -> tuple[list[str], str]:
    spec = train_spec.with_values(train_spec.load(job_spec), dict(overrides))
    return train_spec.lights(spec, job_spec), train_spec.image_ext(spec, job_spec)


def _spec_with(job_spec: Path, settings: dict[str, Any], overrides: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    spec = train_spec.with_values(train_spec.with_values(train_spec.load(job_spec), overrides or {}), settings)
    train_spec.lights(spec, job_spec)      # fail here, not after a container start, on a bad spec
    train_spec.image_ext(spec, job_spec)
    return spec


def _backbone_mounts(spec: dict[str, Any], where: Path) -> list[tuple[str, bool]]:
    backbone = train_spec.get(spec, "model.backbone.pretrained_backbone_path")
    if not (isinstance(backbone, str) and backbone.strip()):
        return []
    bb = Path(backbone)
    if not bb.is_absolute() or not bb.exists():
        raise UserError(f"{where}: model.backbone.pretrained_backbone_path {backbone} is not an existing "
                        f"absolute path on this host; stage the backbone file there (it is mounted at the "
                        f"same path) or leave the key empty")
    return [(str(bb.parent), False)]


def _write_spec(job_dir: Path, spec: dict[str, Any]) -> Path:
    path = job_dir / SPEC_NAME
    atomic.write_text(path, train_spec.dump(spec))
    return path


@dataclass
class _Csv:
    """One input CSV as TAO will get it: the file to hand over, its rows, folders it names outside
    the image root, and whether it is a canonical-label copy."""
    source: Path
    path: Path
    rows: int
    abs_dirs: list[str]
    copied: bool


def _tao_csv(csv: Path, job_dir: Path, images: Path, lights: list[str], ext: str, what: str) -> _Csv:
    """Read a CSV once: every image of every light must exist, and labels TAO would misread are
    canonicalised into a copy (the ChangeNet CSVs the stages write already are canonical). A training
    CSV is also handed over with one row per training key (dataset_checks.dedupe: a repeated row is
    never a class weight; a key labelled twice is refused)."""
    import pandas as pd

    raw = changenet_csv.read(csv, what=what, canonicalize=False)
    repeats = 0
    if what == "training CSV":
        from tao_aoi.data import dataset_checks

        raw, repeats = dataset_checks.dedupe(raw, images, csv, what)
    missing = changenet_csv.missing_images(raw, images, lights, ext)
    if missing:
        line, path = missing[0]
        raise UserError(f"{csv} line {line}: image {path} does not exist ({len(missing)} missing in all); TAO "
                        f"would stop at it mid-run: restore it or drop the row")
    dirs = pd.unique(pd.concat([raw["input_path"], raw["golden_path"]], ignore_index=True))
    abs_dirs = [d for d in dirs if d.startswith("/")]
    canon = raw["label"].map(labels.canonical_label)
    if (canon == raw["label"]).all() and not repeats:
        return _Csv(csv, csv, len(raw), abs_dirs, False)
    copy = job_dir / INPUTS_DIR / f"{what.split()[0]}-{csv.name}"  # role prefix: two inputs may share a name
    copy.parent.mkdir(parents=True, exist_ok=True)
    changenet_csv.write(raw.assign(label=canon), copy)
    return _Csv(csv, copy, len(raw), abs_dirs, True)


def _copies(*csvs: _Csv) -> list[dict[str, str]]:
    return [{"source": str(c.source), "handed_to_tao": str(c.path)} for c in csvs if c.copied]


def _prepare_train(job: TrainJob, job_dir: Path) -> TaoJob:
    images = _abs(job.images_root)
    lights, ext = _lights_ext(job.spec, job.overrides)
    train = _tao_csv(_abs(job.train_csv), job_dir, images, lights, ext, "training CSV")
    val = _tao_csv(_abs(job.val_csv), job_dir, images, lights, ext, "validation CSV")
    settings: dict[str, Any] = {
        "dataset.classify.train_dataset.csv_path": str(train.path),
        "dataset.classify.train_dataset.images_dir": str(images),
        "dataset.classify.validation_dataset.csv_path": str(val.path),
        "dataset.classify.validation_dataset.images_dir": str(images),
        "results_dir": str(job_dir),
        "train.results_dir": str(job_dir),
    }
    mounts = [(str(images), False), (str(train.path.parent), False), (str(val.path.parent), False),
              (str(job_dir), True)]
    if job.init_checkpoint is not None:
        ckpt = _abs(job.init_checkpoint)
        if not ckpt.is_file():
            raise UserError(f"--init-checkpoint {ckpt} does not exist; pass the previous best.ckpt")
        settings["train.pretrained_model_path"] = str(ckpt)
        mounts.append((str(ckpt.parent), False))
    spec = _spec_with(job.spec, settings, dict(job.overrides))
    checkpointer = train_spec.get(spec, "train.checkpointer") or {}
    for key, value in TOPK_DEFAULTS.items():
        if not isinstance(checkpointer, dict) or key not in checkpointer:
            train_spec.set_dotted(spec, f"train.checkpointer.{key}", value)
    if train_spec.get(spec, "train.checkpointer.enable_topk"):  # this job's best beside its epoch checkpoints
        train_spec.set_dotted(spec, "train.checkpointer.dirpath", str(job_dir))  # (a reused spec names an old job)
    mounts += _backbone_mounts(spec, job.spec)
    for csv in (train, val):
        mounts.extend((d, False) for d in csv.abs_dirs)
    spec_path = _write_spec(job_dir, spec)
    return TaoJob("train", versions.image("pyt"), ["visual_changenet", "train", "-e", str(spec_path)],
                  collapse_mounts(mounts),
                  record={"expect": [str(p) for p in contract_outputs("train", job_dir)], "spec": str(spec_path),
                          "rows": {f"training CSV {train.source}": train.rows,
                                   f"validation CSV {val.source}": val.rows},
                          "canonical_label_copies": _copies(train, val),
                          **({"row_weights": {"file": str(job.row_weights), "applied": False,
                                              "why": ROW_WEIGHTS_NOT_APPLIED}} if job.row_weights else {})})


def _prepare_infer(job: InferJob, job_dir: Path, kind: str) -> TaoJob:
    images, ckpt = _abs(job.images_root), _abs(job.checkpoint)
    if not ckpt.is_file():
        raise UserError(f"--checkpoint {ckpt} does not exist; pass a train job's best.ckpt")
    lights, ext = _lights_ext(job.spec, {})
    data = _tao_csv(_abs(job.csv), job_dir, images, lights, ext, "inference CSV")
    csv = data.path
    action = ACTIONS[kind]
    ds = "infer_dataset" if kind == "infer" else "test_dataset"
    spec = _spec_with(job.spec, {
        f"dataset.classify.{ds}.csv_path": str(csv),
        f"dataset.classify.{ds}.images_dir": str(images),
        f"{action}.checkpoint": str(ckpt),
        f"{action}.results_dir": str(job_dir),
        "results_dir": str(job_dir),
    })
    mounts = [(str(images), False), (str(csv.parent), False), (str(ckpt.parent), False), (str(job_dir), True)]
    mounts.extend((d, False) for d in data.abs_dirs)
    mounts += _backbone_mounts(spec, job.spec)  # every action builds the model, loading the backbone
    spec_path = _write_spec(job_dir, spec)
    expect = [str(p) for p in contract_outputs(kind, job_dir)]
    return TaoJob(kind, versions.image("pyt"), ["visual_changenet", action, "-e", str(spec_path)],
                  collapse_mounts(mounts), record={"expect": expect, "spec": str(spec_path), "input_csv": str(csv),
                                                   "rows": {f"{ds} {data.source}": data.rows},
                                                   "canonical_label_copies": _copies(data)})


EMBED_MODEL_PATH_ENV = "TAO_AOI_EMBED_MODEL_PATH"


def embed_settings(job: EmbedJob) -> dict[str, Any]:
    """The embedder: the job's settings, else TAO_AOI_EMBED_MODEL_PATH (a local snapshot, needed when
    air-gapped), else the defaults (a Hugging Face id the container downloads)."""
    s = dict(job.settings)
    return {"model": str(s.get("model") or defaults.TAO_EMBED_MODEL),
            "model_path": str(s.get("model_path") or os.environ.get(EMBED_MODEL_PATH_ENV, "").strip()
                              or defaults.TAO_EMBED_MODEL_PATH),
            "batch_size": int(s.get("batch_size") or defaults.TAO_EMBED_BATCH_SIZE)}


def _prepare_embed(job: EmbedJob, job_dir: Path, offline: bool) -> TaoJob:
    """One image per (row, light) goes to the data-services embedder; rows are reassembled after."""
    import pandas as pd

    csv, images, output = _abs(job.csv), _abs(job.images_root), _abs(job.output)
    spec = train_spec.load(job.spec)
    lights, ext = train_spec.lights(spec, job.spec), train_spec.image_ext(spec, job.spec)
    df = changenet_csv.read(csv, required=("input_path", "object_name"))
    missing = changenet_csv.missing_images(df, images, lights, ext, columns=("input_path",))
    if missing:
        line, path = missing[0]
        raise UserError(f"{csv} line {line}: image {path} does not exist ({len(missing)} missing in all)")
    files = [changenet_csv.image_files(df, images, "input_path", light, ext) for light in lights]
    table = pd.DataFrame({
        "filepath": [f for per_light in zip(*files) for f in per_light],
        "row": [i for i in range(len(df)) for _ in lights],
        "light": [light for _ in range(len(df)) for light in lights],
    })
    settings = embed_settings(job)
    model_path = Path(settings["model_path"])
    if model_path.is_absolute() and not model_path.exists():
        raise UserError(f"embed settings model_path {model_path} does not exist on this host; stage the model "
                        f"snapshot there (it is mounted at the same path)")
    if offline and not model_path.is_absolute():
        raise UserError(f"air-gapped: the embedder's model_path {model_path} is a Hugging Face id the container "
                        f"cannot download; stage the snapshot on this host and set {EMBED_MODEL_PATH_ENV} to it")
    with atomic.atomic_path(job_dir / EMBED_INPUT) as tmp:
        table.to_parquet(tmp, index=False)
    image = versions.image("data_services")
    # ImageEmbeddingsConfig has no results_dir (and the embedder writes no status.json)
    tao_spec = dict(settings, input_parquet=str(job_dir / EMBED_INPUT), output_parquet=str(job_dir / EMBED_RAW))
    spec_path = _write_spec(job_dir, tao_spec)
    mounts = [(str(images), False), (str(job_dir), True)]
    mounts.extend((d, False) for d in sorted({os.path.dirname(f) for f in table["filepath"]})
                  if not d.startswith(str(images).rstrip("/") + "/"))
    if model_path.is_absolute():
        mounts.append((str(model_path), False))
    return TaoJob("embed", image, ["embedding", "image_embeddings", "-e", str(spec_path)], collapse_mounts(mounts),
                  record={"expect": [str(p) for p in contract_outputs("embed", job_dir, output)],
                          "spec": str(spec_path), "input_csv": str(csv),
                          "embed": {"output": str(output), "lights": lights, "image_ext": ext,
                                    "settings": dict(settings, embedder="tao-data-services", image=image)}})


def finished(status_path: Path) -> bool:
    """Did TAO log a clean end? Its PyTorch workflows never write SUCCESS: the last line of a good
    run is ``RUNNING`` "<Action> finished successfully." (monitor_status in TAO's workflow.py)."""
    status, message = tao_final_status(status_path)
    return status == "SUCCESS" or (status == "RUNNING" and bool(FINISHED_RE.search(message.strip())))


def conclude(record: dict[str, Any], exit_code: int | None) -> None:
    """Judge a container run that exited 0 (or whose exit code is lost) and publish its outputs."""
    job_dir = Path(record["job_dir"])
    log = record.get("log", "")
    status, message = tao_final_status(job_dir / TAO_STATUS)
    if status == "FAILURE":  # also after exit 0: TAO logs an interrupted run as FAILURE and exits 0
        raise UserError(f"TAO reported FAILURE in {job_dir / TAO_STATUS}: {message or log_tail(Path(log))}; "
                        f"see {log}")
    kind = record["kind"]
    if exit_code is None and kind != "embed" and not finished(job_dir / TAO_STATUS):
        raise UserError(f"the container is gone, its exit code unknown, and {job_dir / TAO_STATUS} does not end "
                        f"with TAO's 'finished successfully.' line; see {log}")
    if kind == "train":
        _publish_checkpoint(record)
    elif kind == "infer":
        _publish_inference_csv(job_dir)
    elif kind == "embed":
        _assemble_embeddings(record)
    check_expected(record)


def previous_tao_outputs(job_dir: Path) -> list[Path]:
    """What an earlier TAO run in this folder left that the next one's checks would read."""
    ckpts = [p for p in job_dir.rglob("*.pth")
             if BEST_CKPT_RE.match(p.name) or p.name == LATEST_CKPT or EPOCH_CKPT_RE.match(p.name)]
    return [*ckpts, *job_dir.rglob("inference.csv"), job_dir / EMBED_RAW, job_dir / TAO_STATUS]


def find_checkpoint(job_dir: Path) -> Path | None:
    """TAO's deliverable: what its top-k checkpointer kept as best (``model_best_*``; the train job
    enables it on val_loss), else ``changenet_model_classify_latest.pth``, else the highest
    ``model_epoch_<EEE>_step_<SSS>.pth``."""
    best, latest, epochs = [], [], []
    for p in job_dir.rglob("*.pth"):
        if BEST_CKPT_RE.match(p.name):
            best.append(p)
        elif p.name == LATEST_CKPT:
            latest.append(p)
        elif m := EPOCH_CKPT_RE.match(p.name):
            epochs.append(((int(m.group(1)), int(m.group(2))), p))
    if best:
        return max(best, key=lambda p: (p.stat().st_mtime, p.name))
    if latest:
        return max(latest, key=lambda p: p.stat().st_mtime)
    if epochs:
        return max(epochs)[1]
    return None


def _publish_checkpoint(record: dict[str, Any]) -> None:
    job_dir = Path(record["job_dir"])
    ckpt = find_checkpoint(job_dir)
    if ckpt is None:
        raise UserError(f"{job_dir}: TAO finished but wrote no checkpoint (model_epoch_<EEE>_step_<SSS>.pth or "
                        f"{LATEST_CKPT}); check train.num_epochs/checkpoint_interval and {record.get('log')}")
    link_or_copy(ckpt.resolve(), job_dir / defaults.CHECKPOINT_NAME)  # the latest is a symlink
    atomic.write_text(job_dir / EXPERIMENT_NAME, Path(record["spec"]).read_text(encoding="utf-8"))
    record["published_from"] = str(ckpt)
    record["checkpoint_kind"] = "best (top-k checkpointer)" if BEST_CKPT_RE.match(ckpt.name) else "latest"
    record["detail"] = f"{ckpt.relative_to(job_dir)} published as {defaults.CHECKPOINT_NAME}" + (
        "; row weights not applied (TAO has no per-row weight)" if record.get("row_weights") else "")


def _publish_inference_csv(job_dir: Path) -> None:
    top = job_dir / "inference.csv"
    if top.is_file():
        return
    found = sorted(job_dir.rglob("inference.csv"))
    if len(found) == 1:
        link_or_copy(found[0], top)


def _assemble_embeddings(record: dict[str, Any]) -> None:
    """One vector per input row: each light's vector L2-normalised, concatenated in input_map order."""
    import numpy as np
    import pandas as pd

    job_dir, info = Path(record["job_dir"]), record["embed"]
    raw_path = job_dir / EMBED_RAW
    if not raw_path.is_file():
        raise UserError(f"{raw_path} was not written by the embedder; see {record.get('log')}")
    raw = pd.read_parquet(raw_path)
    col = next((c for c in ("embedding", "image_embed") if c in raw.columns), None)
    if col is None or "filepath" not in raw.columns:
        raise UserError(f"{raw_path} needs columns filepath and embedding (has: {', '.join(raw.columns)})")
    vec = dict(zip(raw["filepath"].astype(str), raw[col]))
    inp = pd.read_parquet(job_dir / EMBED_INPUT)
    absent = [f for f in inp["filepath"] if f not in vec]
    if absent:
        raise UserError(f"{raw_path}: the embedder returned no vector for {len(absent)} of {len(inp)} images "
                        f"(first: {absent[0]}); see {record.get('log')}")
    mats = np.asarray([np.asarray(vec[f], dtype=np.float32) for f in inp["filepath"]], dtype=np.float32)
    mats /= np.maximum(np.linalg.norm(mats, axis=1, keepdims=True), 1e-12)
    n_lights = len(info["lights"])
    rows = mats.reshape(len(inp) // n_lights, n_lights * mats.shape[1])
    df = changenet_csv.read(record["input_csv"], required=("input_path", "object_name"))
    df["embedding"] = list(rows)
    output = Path(info["output"])
    with atomic.atomic_path(output) as tmp:
        df.to_parquet(tmp, index=False)
    settings = dict(info["settings"], lights=info["lights"], image_ext=info["image_ext"],
                    combine="per-light L2-normalised vectors concatenated in input_map order")
    settings.pop("batch_size", None)  # does not change the vectors, so it must not block a match
    atomic.write_json(Path(f"{output}.settings.json"), settings)


def link_or_copy(src: Path, dst: Path) -> None:
    """Publish ``src`` as ``dst`` atomically; a hard link costs nothing for multi-GB checkpoints."""
    with atomic.atomic_path(dst, fsync=False) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            import shutil

            shutil.copyfile(src, tmp)


def collapse_mounts(mounts: Iterable[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Fewest same-path mounts: a folder inside an already mounted one is dropped unless it needs
    write access its parent lacks; parents come first so nested mounts layer correctly."""
    merged: dict[str, bool] = {}
    for path, writable in mounts:
        p = os.path.normpath(os.path.abspath(path))
        merged[p] = merged.get(p, False) or writable
    kept: list[tuple[str, bool]] = []
    for p in sorted(merged):
        parent = next((k for k in reversed(kept) if p == k[0] or p.startswith(k[0].rstrip("/") + "/")), None)
        if parent is not None and (parent[1] or not merged[p]):
            continue
        kept.append((p, merged[p]))
    return kept


def _abs(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(p))
