"""NVIDIA's own TAO schema as the oracle for every spec the docker and slurm backends hand to TAO.

TAO's hydra runner merges the YAML file into the structured config of the container's
nvidia-tao-core (``OmegaConf.merge(OmegaConf.structured(ExperimentConfig), <yaml>)``, hydra's
automatic schema matching): a key the schema lacks or a value of the wrong type ends the container
before training starts. ``check`` does the same merge with the wheel at the version of the pinned
image (``nvidia-tao-core`` for Visual ChangeNet, ``nvidia-tao-ds`` for the embedder), before any
container or sbatch job starts, then applies TAO's run-time asserts that no schema expresses
(``runtime_problems``, read from NVIDIA's source: cn_pl_model.py, changenet.py, oi_dataset.py,
initialize_experiments.py, tao_lightning_module.py). Imports are lazy: the local backend never
needs the wheels.
"""
from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Any, Mapping

from tao_aoi.errors import UserError
from tao_aoi.tao import versions

CHANGENET = ("nvidia-tao-core", "nvidia_tao_core.config.visual_changenet.default_config", "ExperimentConfig")
EMBEDDING = ("nvidia-tao-ds", "nvidia_tao_ds.config.mining.embedding.image_embeddings", "ImageEmbeddingsConfig")
ACTIONS = {"train": "train", "evaluate": "evaluate", "infer": "inference"}
# Metrics TAO 7 logs during training, with the direction that means better (checkpointer.mode).
MONITORS = {"val_loss": "min", "val_fpr": "min", "val_far": "min", "train_loss": "min", "val_acc": "max",
            "train_acc": "max"}
SETUP_HINT = "run python3 scripts/setup_env.py (it installs NVIDIA's schema wheels at the pinned TAO version)"


def tao_version() -> str:
    """The TAO release of the pinned pyt image (``...:7.1.0-pyt`` -> ``7.1.0``): the schema version."""
    image = versions.image("pyt")
    m = re.search(r":(\d+\.\d+\.\d+)", image)
    if not m:
        raise UserError(f"versions.yaml images.tao_toolkit.pyt {image!r} has no x.y.z tag; pin a TAO release")
    return m.group(1)


def schema_class(which: tuple[str, str, str] = CHANGENET):
    """The structured config class from NVIDIA's wheel, checked to be the pinned image's version."""
    import importlib
    from importlib import metadata

    dist, module, name = which
    try:
        installed = metadata.version(dist)
        cls = getattr(importlib.import_module(module), name)
    except (metadata.PackageNotFoundError, ImportError) as exc:
        raise UserError(f"{dist} is not installed ({exc}); the docker and slurm backends check every spec "
                        f"against NVIDIA's schema before a job starts: {SETUP_HINT}") from None
    if installed != tao_version():
        raise UserError(f"{dist} {installed} is installed but versions.yaml pins TAO {tao_version()}; the schema "
                        f"must match the container: {SETUP_HINT}")
    return cls


def _fix(exc: Any, base: Any) -> str:
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    key = str(getattr(exc, "full_key", "") or getattr(exc, "key", "") or "")
    if isinstance(exc, ConfigKeyError):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        names = [str(k) for k in node.keys()] if OmegaConf.is_dict(node) else []
        close = difflib.get_close_matches(leaf, names, n=1, cutoff=0.5)
        return (f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else
                "remove it (TAO refuses keys its schema does not have)") + \
            (f" keys there: {', '.join(sorted(names))}" if names and len(names) <= 25 else "")
    node = OmegaConf.select(base, key) if key else None
    if OmegaConf.is_list(node) or isinstance(node, list):
        return f"give a list, e.g. {OmegaConf.to_container(node) if OmegaConf.is_config(node) else node}"
    return "give it the type the schema declares" + (f" (default {node!r})" if node not in (None, "???") else "")


@functools.lru_cache(maxsize=None)
def _structured(which: tuple[str, str, str]):
    """The schema as an OmegaConf node, built once per process (merge copies, never mutates it)."""
    from omegaconf import OmegaConf

    return OmegaConf.structured(schema_class(which))


class SpecProblems(UserError):
    """Every problem TAO would refuse in one spec file, all at once (a fix per round trip costs a
    container start each on a cluster). ``problems``: one line each, naming the file, the key and the
    fix; ``keys``: the keys named."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]) -> None:
        self.keys = [k for k, _ in problems]
        self.problems = [f"{path}: {key}: {text}" for key, text in problems]
        if len(problems) == 1:
            message = self.problems[0]
        else:
            message = (f"{path}: {len(problems)} problems, each a key to change: "
                       + " | ".join(f"{key}: {text}" for key, text in problems))
        super().__init__(message)


def _drop(data: Any, key: str) -> bool:
    """Remove the node at a full key (``a.b``, ``a.b[0].c``: the list itself) from a plain spec; False
    if there is nothing to remove (the merge cannot go on past it)."""
    parts = [p for p in re.split(r"\.|\[\d+\].*", key) if p]
    node = data
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if isinstance(node, dict) and parts and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def _merge_all(spec_path: str | Path, which: tuple[str, str, str]) -> tuple[Any, list[tuple[str, str]]]:
    """The spec merged into NVIDIA's schema exactly as TAO's runner does, and every key or type the schema
    refuses: on a refusal the key is set aside and the merge goes on, so all of them are named at once.
    The merged config leaves out the refused keys (None if one cannot be set aside)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    base = _structured(which)
    path = Path(spec_path)
    try:
        spec = OmegaConf.load(path)  # TAO's loader (a yaml.SafeLoader that also reads 1e-4 as a float)
    except FileNotFoundError:
        raise UserError(f"spec {path} does not exist") from None
    except Exception as exc:  # yaml errors and OmegaConf's own
        raise UserError(f"{path} is not a YAML mapping TAO can load: {' '.join(str(exc).split())[:300]}") from None
    if OmegaConf.is_dict(spec) and "hydra" in spec:  # hydra removes its own node before validating
        spec.pop("hydra")
    problems: list[tuple[str, str]] = []
    data = None
    while True:
        try:
            return OmegaConf.merge(base, spec if data is None else OmegaConf.create(data)), problems
        except OmegaConfBaseException as exc:
            key = str(getattr(exc, "full_key", "") or "?")
            msg = str(getattr(exc, "msg", exc)).splitlines()[0]
            problems.append((key, f"{msg} (NVIDIA's TAO {tao_version()} {which[2]} refuses it before the job "
                                  f"starts); {_fix(exc, base)}"))
            if data is None:
                data = OmegaConf.to_container(spec, resolve=False) if OmegaConf.is_dict(spec) else None
            if not isinstance(data, dict) or not _drop(data, key):
                return None, problems


def merged(spec_path: str | Path, which: tuple[str, str, str] = CHANGENET):
    """The spec file merged into NVIDIA's schema exactly as TAO's runner does; SpecProblems naming the
    file, and every key refused with its fix."""
    cfg, problems = _merge_all(spec_path, which)
    if problems:
        raise SpecProblems(spec_path, problems)
    return cfg


def _sel(cfg: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    return default if value is None else value


def model_input(cfg: Any) -> tuple[int, int]:
    """(height, width) of the network input TAO builds the model for: lights side by side for
    ``linear``, an x by y grid of them for ``grid`` (changenet.py)."""
    h, w = int(_sel(cfg, "dataset.classify.image_height", 224)), int(_sel(cfg, "dataset.classify.image_width", 224))
    n = int(_sel(cfg, "dataset.classify.num_input", 1))
    concat = _sel(cfg, "dataset.classify.concat_type", "linear")
    if concat == "grid":
        return h * int(_sel(cfg, "dataset.classify.grid_map.y", 1)), w * int(_sel(cfg, "dataset.classify.grid_map.x", 1))
    if concat == "linear":
        return h, w * n
    return h, w


def runtime_problems(cfg: Any, kind: str) -> list[tuple[str, str]]:
    """(key, what to change) for every run-time assert of TAO 7 the merged spec would hit."""
    out: list[tuple[str, str]] = []
    action = ACTIONS[kind]
    if not (_sel(cfg, "results_dir", "") or _sel(cfg, f"{action}.results_dir", "")):
        out.append(("results_dir", f"set results_dir or {action}.results_dir (TAO writes nothing without it)"))
    if _sel(cfg, "task") != "classify":
        out.append(("task", f"is {_sel(cfg, 'task')!r}; these are classify jobs: set task: classify"))
    if kind != "train" and not _sel(cfg, f"{action}.checkpoint", ""):
        out.append((f"{action}.checkpoint", "is mandatory for this action; pass the train job's checkpoint"))
    diff = _sel(cfg, "model.classify.difference_module", "euclidean")
    loss = _sel(cfg, "train.classify.loss", "contrastive")
    n_classes = int(_sel(cfg, "dataset.classify.num_classes", 2))
    golden = int(_sel(cfg, "dataset.classify.num_golden", 1))
    if diff not in ("learnable", "euclidean"):
        out.append(("model.classify.difference_module", f"is {diff!r}; use learnable or euclidean"))
    elif diff == "learnable":
        weights = list(_sel(cfg, "train.classify.cls_weight", []))
        if len(weights) != n_classes:
            out.append(("train.classify.cls_weight", f"has {len(weights)} weight(s) for {n_classes} classes "
                                                     f"(dataset.classify.num_classes); give one per class, e.g. [1.0, 10.0]"))
        if kind == "train" and loss != "ce":
            out.append(("train.classify.loss", f"is {loss!r} but difference_module learnable trains with ce; "
                                               f"set loss: ce (or difference_module: euclidean with contrastive)"))
    else:
        if kind == "train" and loss != "contrastive":
            out.append(("train.classify.loss", f"is {loss!r} but difference_module euclidean (the default) trains "
                                               f"with contrastive; set model.classify.difference_module: learnable "
                                               f"for ce, or loss: contrastive"))
        if golden != 1:
            out.append(("dataset.classify.num_golden", "must be 1 with the euclidean difference module"))
    ldm = int(_sel(cfg, "model.classify.learnable_difference_modules", 4))
    if not 1 <= ldm <= 4:
        out.append(("model.classify.learnable_difference_modules", f"is {ldm}; TAO supports 1 to 4"))
    out += _input_problems(cfg, diff, golden)
    if kind == "train":
        out += _train_problems(cfg)
    return out


def _input_problems(cfg: Any, diff: str, golden: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    n = int(_sel(cfg, "dataset.classify.num_input", 1))
    lights = _sel(cfg, "dataset.classify.input_map", {}) or {}
    if len(lights) != n:
        out.append(("dataset.classify.num_input", f"is {n} but input_map names {len(lights)} light(s); make them agree"))
    concat = _sel(cfg, "dataset.classify.concat_type", "linear")
    if concat == "grid":
        x, y = int(_sel(cfg, "dataset.classify.grid_map.x", 0)), int(_sel(cfg, "dataset.classify.grid_map.y", 0))
        if x * y != n:
            out.append(("dataset.classify.grid_map", f"is {x} x {y} = {x * y} cells for {n} lights; each cell holds "
                                                     f"one light, so x * y must equal num_input"))
        elif n % 2 and x != 1:
            out.append(("dataset.classify.grid_map", f"TAO 7 tiles a grid only for an even number of lights; with "
                                                     f"{n} it stacks them top to bottom, so use x: 1, y: {n}"))
    elif concat != "linear":
        out.append(("dataset.classify.concat_type", f"is {concat!r}; use linear or grid"))
    h, w = model_input(cfg)
    backbone = str(_sel(cfg, "model.backbone.type", ""))
    key = "dataset.classify.concat_type" if n > 1 else "dataset.classify.image_width"
    if "fan" in backbone:
        if h % 16 or w % 16:
            out.append(("dataset.classify.image_width", f"the {backbone} input is {h} x {w}; FAN needs both sides "
                                                        f"to be multiples of 16 (change image_width/image_height)"))
        if golden != 1:
            out.append(("dataset.classify.num_golden", f"must be 1 with the FAN backbone {backbone}"))
    elif "radio" in backbone or "vit" in backbone:
        if h != w:
            what = (f"{n} lights side by side (linear) give a {h} x {w} input" if concat == "linear"
                    else f"the grid gives a {h} x {w} input")
            out.append((key, f"{backbone} is a ViT and needs a square input, but {what}; use concat_type: grid "
                             f"with grid_map x * y = {n} and image_width/image_height making it square"))
        elif diff == "learnable" and (h % 32 or w % 32):
            out.append(("dataset.classify.image_width", f"the ViT-Adapter input {h} x {w} must be a multiple of 32"))
    else:
        out.append(("model.backbone.type", f"{backbone!r} is not a Visual ChangeNet backbone (fan_*, "
                                           f"c_radio_*, vit_* families)"))
    return out


def _train_problems(cfg: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    epochs = int(_sel(cfg, "train.num_epochs", 1))
    for key in ("train.validation_interval", "train.checkpoint_interval"):
        if key.endswith("checkpoint_interval") and _sel(cfg, "train.checkpoint_interval_unit", "epoch") != "epoch":
            continue
        if int(_sel(cfg, key, 1)) > epochs:
            out.append((key, f"is {_sel(cfg, key)} > train.num_epochs {epochs}; TAO asserts it is <= num_epochs"))
    optim = _sel(cfg, "train.optim.optim", "adamw")
    if optim not in ("adamw", "adam", "sgd"):
        out.append(("train.optim.optim", f"is {optim!r}; use adamw, adam or sgd"))
    if _sel(cfg, "train.optim.policy", "linear") not in ("linear", "step"):
        out.append(("train.optim.policy", "use linear or step"))
    if _sel(cfg, "train.checkpointer.enable_topk", False):
        problem = checkpointer_problem(_sel(cfg, "train.checkpointer.monitor"), _sel(cfg, "train.checkpointer.mode"))
        if problem:
            out.append(problem)
    return out


def checkpointer_problem(monitor: Any, mode: Any) -> tuple[str, str] | None:
    """(key, what is wrong) when TAO's top-k checkpointer cannot apply ``monitor`` / ``mode``; the local
    backend keeps its epoch by the same rule (``model.ensemble.keep_rule``)."""
    if monitor not in MONITORS:
        return ("train.checkpointer.monitor", f"is {monitor!r}; name a metric TAO logs every validation: "
                                              f"val_loss (mode min) is in every TAO 7 build")
    if mode != MONITORS[monitor]:
        return ("train.checkpointer.mode", f"is {mode!r}; {monitor} is better when it is "
                                           f"{'lower' if MONITORS[monitor] == 'min' else 'higher'}: set mode: "
                                           f"{MONITORS[monitor]}")
    return None


def batch_problems(cfg: Any, rows: Mapping[str, int], kind: str) -> list[tuple[str, str]]:
    """Every TAO data loader needs at least batch_size x GPUs rows (tao_lightning_module.py), and a
    training batch of one row breaks the classifier head's batch norm."""
    batch = int(_sel(cfg, "dataset.classify.batch_size", 8))
    gpus = max(1, int(_sel(cfg, f"{ACTIONS[kind]}.num_gpus", 1)))
    out = []
    if kind == "train" and batch < 2:
        out.append(("dataset.classify.batch_size", "is 1; TAO's classifier head needs training batches of 2+ rows"))
    for what, n in rows.items():
        if n < batch * gpus:
            out.append(("dataset.classify.batch_size", f"is {batch} x {gpus} GPU(s) but {what} has {n} rows; TAO "
                                                       f"refuses a loader it cannot fill once: lower batch_size to "
                                                       f"<= {max(1, n // gpus)} or add rows"))
    return out


def check(spec_path: str | Path, kind: str, rows: Mapping[str, int] | None = None):
    """Merge + run-time rules for one job's spec file; every problem at once in a SpecProblems naming
    the file, each key and its fix. Returns the merged config."""
    if kind == "embed":
        return merged(spec_path, EMBEDDING)
    cfg, problems = _merge_all(spec_path, CHANGENET)
    if cfg is not None:
        refused = [k for k, _ in problems]
        late = f"TAO {tao_version()} would fail on it after the container starts"
        problems += [(key, f"{why}; {late}") for key, why in runtime_problems(cfg, kind) + batch_problems(cfg, rows or {}, kind)
                     if not any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in refused)]
    if problems:
        raise SpecProblems(spec_path, problems)
    return cfg
