"""Typed AutoML search spaces: which spec keys are tuned, their ranges, which are pinned.

Keys are dotted spec paths (``train.optim.lr``; ``key[i]`` for one entry of a list such as
``train.classify.cls_weight[1]``) so a trial's parameters are set straight on the TAO-shaped spec. Budget keys (epochs) are never searched: they are pinned from the spec and
reported apart (the anchor leaked per-rung epochs into DEFT's baseline spec). Architecture keys are
pinned when warm-starting, because a checkpoint only loads into the same architecture.
Spaces are plain data and can be given as a YAML/JSON file (``--search-space``).

A parameter may apply only in some configurations: ``"when": {"<dotted key>": value or [values]}``
(every key must hold). ``active`` drops, before a search starts, every parameter whose condition the
starting spec does not meet (a searched value that changes nothing is a wasted trial dimension);
a missing key reads the space's ``"defaults"`` (the values TAO uses when a spec omits the key, taken
from NVIDIA's schema; a test keeps them equal). Conditions read the spec, never another searched
parameter.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

from tao_aoi.errors import UserError

BUDGET_KEYS = ("train.num_epochs",)

# The embedded local model (backends/local.py): an MLP on golden-vs-test difference features. Its keys
# are TAO's, in the role TAO gives them: embed_dec = classifier head width, cls_weight[1] = the defect
# class's cross-entropy weight (PASS stays at the spec's cls_weight[0]).
LOCAL = {
    "model": "local",
    "params": {
        "train.optim.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
        "train.optim.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "model.classify.embed_dec": {"type": "int", "low": 16, "high": 128, "log": True},
        "dataset.classify.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        "train.classify.cls_weight[1]": {"type": "float", "low": 1.0, "high": 20.0, "log": True},
    },
    "architecture": ["model.classify.embed_dec"],
    "learning_rate": "train.optim.lr",
}

# TAO Visual ChangeNet (classify) on the docker/slurm backends: optimizer and imbalance levers only
# (searching all 33 schema parameters with 5-10 trials is random search in disguise). Every key exists
# in NVIDIA's 7.1.0 schema and is searched only where TAO reads it (tests/test_tao_schema.py walks it).
_AUG = "dataset.classify.augmentation_config"
VISUAL_CHANGENET = {
    "model": "visual_changenet",
    "params": {
        "train.optim.lr": {"type": "float", "low": 5e-6, "high": 5e-4, "log": True},
        "train.optim.weight_decay": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "train.optim.momentum": {"type": "float", "low": 0.85, "high": 0.99,
                                 "when": {"train.optim.optim": "sgd"}},  # Adam/AdamW never read it
        "dataset.classify.fpratio_sampling": {"type": "float", "low": 0.1, "high": 0.95},  # the train sampler
        "model.classify.learnable_difference_modules": {"type": "int", "low": 1, "high": 4,
                                                        "when": {"model.classify.difference_module": "learnable"}},
        "train.classify.cls_weight[1]": {"type": "float", "low": 1.0, "high": 20.0, "log": True,
                                         "when": {"model.classify.difference_module": "learnable"}},  # ce only
        f"{_AUG}.random_rotate.rotate_probability": {"type": "float", "low": 0.1, "high": 0.7,
                                                     "when": {f"{_AUG}.augment": True,
                                                              f"{_AUG}.random_rotate.enable": True}},
    },
    "defaults": {  # NVIDIA's TAO 7.1.0 schema defaults for every key above (test_tao_schema checks them)
        "train.optim.lr": 1e-4, "train.optim.weight_decay": 0.01, "train.optim.momentum": 0.9,
        "train.optim.optim": "adamw", "dataset.classify.fpratio_sampling": 0.1,
        "model.classify.difference_module": "euclidean", "model.classify.learnable_difference_modules": 4,
        "train.classify.cls_weight[1]": 10.0, f"{_AUG}.augment": False, f"{_AUG}.random_rotate.enable": True,
        f"{_AUG}.random_rotate.rotate_probability": 0.5,
    },
    "architecture": ["model.classify.learnable_difference_modules"],
    "learning_rate": "train.optim.lr",
}

SPACES = {"local": LOCAL, "visual_changenet": VISUAL_CHANGENET}


def default_for_backend(backend: str) -> dict[str, Any]:
    return copy.deepcopy(LOCAL if backend == "local" else VISUAL_CHANGENET)


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"search space {p} cannot be read ({exc})") from None
    if p.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"search space {p} is not valid JSON ({exc.msg} line {exc.lineno})") from None
    validate(data, str(p))
    return data


def validate(space: Mapping[str, Any], where: str = "search space") -> None:
    params = space.get("params") if isinstance(space, Mapping) else None
    if not isinstance(params, Mapping) or not params:
        raise UserError(f"{where}: needs a non-empty 'params' mapping of dotted spec keys to ranges")
    if not isinstance(space.get("defaults", {}), Mapping):
        raise UserError(f"{where}: 'defaults' must map dotted spec keys to the value used when a spec omits them")
    for key, d in params.items():
        when = d.get("when", {}) if isinstance(d, Mapping) else {}
        if not isinstance(when, Mapping) or not all(isinstance(k, str) for k in when):
            raise UserError(f"{where}: {key} 'when' must map dotted spec keys to a value or a list of values")
        searched = sorted(set(when) & set(params))
        if searched:
            raise UserError(f"{where}: {key} is conditional on {searched[0]}, which is itself searched; conditions "
                            f"read the starting spec only")
        if key in BUDGET_KEYS:
            raise UserError(f"{where}: {key} is a budget key; pin it in the spec instead of searching it")
        kind = d.get("type") if isinstance(d, Mapping) else None
        if kind in ("float", "int"):
            lo, hi = d.get("low"), d.get("high")
            if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)) or lo > hi:
                raise UserError(f"{where}: {key} needs numeric low <= high, got {lo!r}..{hi!r}")
            if d.get("log") and lo <= 0:
                raise UserError(f"{where}: {key} is log-scaled, so low must be > 0 (got {lo})")
        elif kind == "categorical":
            if not isinstance(d.get("choices"), list) or not d["choices"]:
                raise UserError(f"{where}: {key} needs a non-empty 'choices' list")
        else:
            raise UserError(f"{where}: {key} has type {kind!r}; use float, int or categorical "
                            f"(ranges use low/high/log; unknown keys are errors, never silently ignored)")
        unknown = set(d) - {"type", "low", "high", "log", "step", "choices", "when"}
        if unknown:
            raise UserError(f"{where}: {key} has unknown range key(s) {sorted(unknown)}")


def _value(spec: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> Any:
    from tao_aoi.tao import train_spec

    v = train_spec.get(spec, key)
    return defaults.get(key) if v is None else v


def active(space: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The space with only the parameters whose ``when`` holds in ``spec``; the dropped ones are
    listed under ``inactive`` with the reason. UserError if nothing is left to search."""
    out = copy.deepcopy(dict(space))
    defaults = space.get("defaults", {})
    inactive = dict(out.get("inactive", {}))
    for key, d in space["params"].items():
        for cond, want in (d.get("when") or {}).items():
            have = _value(spec, cond, defaults)
            if have not in (want if isinstance(want, list) else [want]):
                inactive[key] = f"only with {cond} = {want!r} (the spec has {have!r})"
                del out["params"][key]
                break
    if not out["params"]:
        raise UserError(f"no search-space parameter applies to this spec ({'; '.join(f'{k}: {v}' for k, v in inactive.items())})")
    if inactive:
        out["inactive"] = inactive
    return out


def distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    import optuna.distributions as od

    out = {}
    for key, d in space["params"].items():
        if d["type"] == "float":
            if d["low"] == d["high"]:
                out[key] = od.CategoricalDistribution([d["low"]])
            else:
                out[key] = od.FloatDistribution(d["low"], d["high"], log=bool(d.get("log")), step=d.get("step"))
        elif d["type"] == "int":
            out[key] = od.IntDistribution(int(d["low"]), int(d["high"]), log=bool(d.get("log")),
                                          step=int(d.get("step", 1)))
        else:
            out[key] = od.CategoricalDistribution(list(d["choices"]))
    return out


def for_warm_start(space: Mapping[str, Any], winner: Mapping[str, Any], lr_shrink: float = 10.0) -> dict[str, Any]:
    """Phase 3's space: architecture pinned to the winner's, learning rate narrowed for fine-tuning.

    Fine-tuning needs a smaller step than training from scratch (the reference's cliff ~1e-4 for VCN):
    the LR range becomes [winner/shrink^1.5, winner/shrink^0.5] clipped into the original range.
    """
    out = copy.deepcopy(dict(space))
    for key in space.get("architecture", []):
        if key in out["params"] and key in winner:
            v = winner[key]
            out["params"][key] = {"type": "categorical", "choices": [v]}
    lr_key = space.get("learning_rate")
    if lr_key and lr_key in out["params"] and lr_key in winner:
        d = out["params"][lr_key]
        lr = float(winner[lr_key])
        lo = max(d["low"], lr / lr_shrink ** 1.5)
        hi = min(d["high"], max(lo, lr / lr_shrink ** 0.5))
        out["params"][lr_key] = {"type": "float", "low": lo, "high": hi, "log": True}
    out["warm_start"] = True
    return out


def in_space(space: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A starting point inside the space from ``values`` (numbers clipped into range), to enqueue as
    trial 0; empty when a parameter is missing or a categorical value is not a choice."""
    out = {}
    for key, d in space["params"].items():
        v = values.get(key)
        v = space.get("defaults", {}).get(key) if v is None else v
        if d["type"] == "categorical":
            if v not in d["choices"]:
                return {}
            out[key] = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            v = min(max(v, d["low"]), d["high"])
            out[key] = int(round(v)) if d["type"] == "int" else float(v)
        else:
            return {}
    return out
