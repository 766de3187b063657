"""AutoML on Optuna: search a model's typed space, scored by FAR@100% recall on the validation set.

- Metric: FAR at 100% recall on the *validation* set (never the KPI set), direction explicitly
  ``minimize`` (the anchor's engine silently maximised FAR); it is the figure every trial reports.
- Objective (what the sampler minimises and the winner is chosen by): the FAR averaged over the
  recall range 90-100% (one value per defect among the hardest tenth), ties broken by the class
  margin. FAR at exactly 100% recall hangs on the single hardest defect and is 0 for most trials
  on an easy validation set; the average over the hardest tenth ranks trials the way the KPI set
  does (bench/automl.py: Spearman with KPI FAR, demo and field, in README).
- A trial whose model predicts one class only (mode collapse) is infeasible and never chosen.
- Samplers: ``bayesian`` = TPE, ``random``, ``cmaes``; ``hyperband`` / ``asha`` = TPE plus the
  Hyperband / successive-halving pruner on the per-epoch validation FAR.
- Trial 0 evaluates the starting spec itself, so the search never ends worse than where it began.
- A trial whose job fails (after the backend's retries of infrastructure faults) is a FAIL trial and
  the study goes on: a failed trial does not use the budget, the next one is asked in its place. The
  study stops (HardStop) only once more trials failed than ``defaults.AUTOML_MAX_FAILED_SHARE`` of
  the budget (at least 1); rerunning the same command resumes it with that allowance afresh.
- Deterministic and resumable: each trial's sampler is seeded by (seed, trial number) and reads the
  history from storage, so a killed search resumed later asks exactly what an uninterrupted one
  would; a trial left RUNNING by a dead worker is adopted (same number, same parameters) instead of
  being lost or duplicated. Trial creation happens under a file lock, so K workers (processes or
  SLURM jobs) sharing one storage never overshoot the budget.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from tao_aoi import atomic, defaults
from tao_aoi.analysis import kpi
from tao_aoi.automl import search_space, ties
from tao_aoi.backends import faults
from tao_aoi.backends.base import InferJob, TrainJob
from tao_aoi.errors import DiskFull, HardStop, UserError
from tao_aoi.file_lock import exclusive_lock
from tao_aoi.tao import train_spec

ALGORITHMS = defaults.AUTOML_ALGORITHMS
METRIC_NAME = "val_far_pct_at_recall_100"
OBJECTIVE_NAME = "val_far_pct_mean_over_recall_90_100"
HARD_SHARE = 0.1  # the objective averages the FAR at each of the hardest 10% of defects
DIRECTION = "minimize"
STUDY_NAME = "tao_aoi"
ORPHAN_GRACE_SEC = 600  # a RUNNING trial of another host with no heartbeat for this long is orphaned


@dataclass
class SearchConfig:
    spec: Path
    train_csv: Path
    val_csv: Path
    images_root: Path
    out_dir: Path
    space: dict[str, Any]
    algorithm: str = "bayesian"
    n_trials: int = defaults.AUTOML_TRIALS
    seed: int = defaults.SEED
    storage: str | None = None
    warm_start: Path | None = None
    study_name: str = STUDY_NAME
    start_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.space = search_space.active(self.space, train_spec.load(self.spec))  # only keys that take effect

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.out_dir / 'study.db'}"


def start_point(space: Mapping[str, Any], spec_path: Path) -> dict[str, Any]:
    """Trial 0: the starting spec's own values for the searched keys (clipped into the space)."""
    spec = train_spec.load(spec_path)
    space = search_space.active(space, spec)
    return search_space.in_space(space, {k: train_spec.get(spec, k) for k in space["params"]})


# ------------------------------------------------------------------ optuna plumbing


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(algorithm: str, seed: int, number: int, n_trials: int):
    optuna = _optuna()
    s = (seed * 1_000_003 + number) % (2**31)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=s)
    if algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s, n_startup_trials=min(5, max(1, n_trials // 4)),
                                            independent_sampler=optuna.samplers.RandomSampler(seed=s))
    startup = min(10, max(3, n_trials // 4))
    return optuna.samplers.TPESampler(seed=s, n_startup_trials=startup, multivariate=True)


def _min_resource(max_epochs: int) -> int:
    """First rung after ~1/9 of the epochs: a FAR after one or two epochs says little about the end
    (bench/automl.py: with 1, ASHA pruned every trial but the first in 2 of 5 seeds)."""
    return max(1, max_epochs // 9)


def make_pruner(algorithm: str, max_epochs: int):
    optuna = _optuna()
    if algorithm == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=_min_resource(max_epochs), max_resource=max(1, max_epochs),
                                              reduction_factor=3)
    if algorithm == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=_min_resource(max_epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _storage(url: str):
    optuna = _optuna()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def open_study(cfg: SearchConfig, max_epochs: int):
    optuna = _optuna()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cfg.out_dir / ".study.lock"):
        study = optuna.create_study(study_name=cfg.study_name, storage=_storage(cfg.storage_url),
                                    direction=DIRECTION, load_if_exists=True,
                                    pruner=make_pruner(cfg.algorithm, max_epochs))
        attrs = study.user_attrs
        mine = {"metric": METRIC_NAME, "objective": OBJECTIVE_NAME, "algorithm": cfg.algorithm, "seed": cfg.seed,
                "n_trials": cfg.n_trials}
        if not attrs:
            for k, v in mine.items():
                study.set_user_attr(k, v)
        elif any(attrs.get(k) != v for k, v in mine.items() if k != "n_trials"):
            raise UserError(f"study {cfg.study_name!r} in {cfg.storage_url} was started with {attrs}; "
                            f"use the same --algorithm/--seed or a new --results-dir")
    return study


# ------------------------------------------------------------------ one trial


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(owner: Mapping[str, Any] | None, heartbeat: float | None) -> bool:
    if not owner:
        return False  # created under the lock by a worker that died before claiming it
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
            return True
        except (ProcessLookupError, ValueError, TypeError):
            return False
        except PermissionError:
            return True
    return heartbeat is not None and time.time() - heartbeat < ORPHAN_GRACE_SEC


def decision_threshold(spec: Mapping[str, Any]) -> float:
    """Where the model's own classifier draws the line (TAO: eval_margin; local model: p=0.5)."""
    v = train_spec.get(spec, "model.classify.eval_margin")
    return float(v) if isinstance(v, (int, float)) else 0.5


def evaluate_checkpoint(backend, spec: Path, checkpoint: Path, val_csv: Path, images_root: Path,
                        out: Path) -> dict[str, Any]:
    """Validation FAR@100% recall and the prediction counts at the model's own threshold."""
    handle = backend.infer(InferJob(spec=spec, checkpoint=checkpoint, csv=val_csv, images_root=images_root,
                                    output_dir=out))
    if handle.state != "COMPLETE":
        raise HardStop(f"validation inference failed ({handle.detail or handle.state})")
    df, scores, positive = kpi.read_inference(str(out / "inference.csv"), "PASS")
    point = kpi.operating_point(scores, positive, "recall_pct", 100.0)
    t = decision_threshold(train_spec.load(spec))
    predicted_defect = int((scores > t).sum())
    # Tie-breaker when several trials reach the same FAR (often 0 on an easy validation set): how far
    # the lowest defect score sits above the highest PASS score (negative = overlap).
    margin = float(scores[positive].min() - scores[~positive].max())
    return {"far_pct": float(point.far_pct), "threshold": float(point.threshold), "margin": margin,
            "high_recall_far_pct": high_recall_far_pct(scores, positive),
            "objective": objective(scores, positive),
            "pred_counts": {"defect": predicted_defect, "pass": int(len(scores) - predicted_defect)},
            "collapsed": predicted_defect in (0, len(scores))}


def high_recall_far_pct(scores, positive, share: float = HARD_SHARE) -> float:
    """FAR (%) averaged over the hardest ``share`` of defects: for each of the k lowest-scoring
    defects, the share of PASS rows scoring at or above it (ties count as false alarms, as in the
    KPI). k = 1 is FAR at 100% recall; k = 10% of the defects is the mean FAR over recall 90-100%."""
    import numpy as np

    s = np.asarray(scores, np.float64)
    pos = np.asarray(positive, bool)
    passes = np.sort(s[~pos])
    if not len(passes) or not pos.any():
        return 0.0
    k = max(1, int(math.ceil(share * int(pos.sum()))))
    hardest = np.sort(s[pos])[:k]
    at_or_above = len(passes) - np.searchsorted(passes, hardest, side="left")
    return float(100.0 * at_or_above.mean() / len(passes))


def objective(scores, positive) -> float:
    """What the sampler minimises: ``high_recall_far_pct``, ties broken by the class margin.

    The mean FAR moves in steps of g = 100 / (n_pass * k); the tie-breaker adds less than g/2, so
    ranking by the objective is exactly ranking by the mean FAR first and then by the larger margin
    between the lowest defect and the highest PASS score (scaled by the score range, so it works for
    probabilities and for TAO's distances alike). Without it the sampler would see a flat 0 once
    several trials separate the validation set perfectly, and learn nothing.
    """
    import numpy as np

    s = np.asarray(scores, np.float64)
    pos = np.asarray(positive, bool)
    n_pass, n_def = int((~pos).sum()), int(pos.sum())
    if not n_pass or not n_def:
        return 0.0
    k = max(1, int(math.ceil(HARD_SHARE * n_def)))
    spread = float(s.max() - s.min()) or 1.0
    margin = float(s[pos].min() - s[~pos].max())
    closeness = 0.5 * (1.0 - max(-1.0, min(1.0, margin / spread)))  # 0 = widest margin, 1 = full overlap
    return high_recall_far_pct(s, pos) + (50.0 / (n_pass * k)) * closeness * 0.999


PRUNING_METRICS = ("val_far", "val_loss")


def pruning_value(metrics: Mapping[str, float]) -> tuple[str | None, float]:
    """What the pruner compares between trials after each epoch (lower = better): ``val_far``, FAR at
    100% recall on the validation set, where the backend logs it (local; TAO builds that compute
    it), else ``val_loss``, which every TAO 7 build logs. Never ``val_fpr``: TAO computes it at a fixed
    margin, not at 100% recall. One TAO image logs the same keys for every trial of a study."""
    for name in PRUNING_METRICS:
        v = metrics.get(name)
        if isinstance(v, (int, float)) and math.isfinite(v):
            return name, float(v)
    return None, math.nan


def run_trial(trial, cfg: SearchConfig, backend, max_epochs: int) -> tuple[str, float | None, float | None]:
    """Train + validate one trial; returns (final state name, objective, validation FAR %)."""
    optuna = _optuna()
    params = dict(trial.params)
    out = cfg.out_dir / "trials" / f"trial_{trial.number:04d}"
    trial.set_user_attr("output_dir", str(out))

    def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
        trial.set_user_attr("heartbeat", time.time())
        name, value = pruning_value(metrics)
        if name is None:
            return
        if trial.user_attrs.get("pruning_metric") != name:
            trial.set_user_attr("pruning_metric", name)
        trial.report(value, epoch + 1)  # step = epochs trained (the pruners' resource)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch + 1)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({name} {value:.4g})")

    t0 = time.monotonic()
    scope = f"automl {cfg.out_dir.name} trial {trial.number}"
    try:
        with faults.scope(scope):
            handle = backend.train(TrainJob(spec=cfg.spec, train_csv=cfg.train_csv, val_csv=cfg.val_csv,
                                            images_root=cfg.images_root, output_dir=out / "train",
                                            init_checkpoint=cfg.warm_start, overrides=params, on_epoch=on_epoch))
    except optuna.TrialPruned:
        trial.set_user_attr("duration_sec", round(time.monotonic() - t0, 3))
        return "PRUNED", None, None
    except DiskFull:
        raise  # every later trial would fail the same way: stop now
    except UserError as exc:
        return _failed(trial, str(exc), t0)
    if handle.state != "COMPLETE":
        return _failed(trial, handle.detail or handle.state, t0)
    ckpt = out / "train" / defaults.CHECKPOINT_NAME
    try:
        with faults.scope(scope):
            ev = evaluate_checkpoint(backend, out / "train" / "experiment.yaml", ckpt, cfg.val_csv, cfg.images_root,
                                     out / "val_inference")
    except DiskFull:
        raise
    except UserError as exc:
        return _failed(trial, f"validation inference: {exc}", t0)
    trial.set_user_attr("checkpoint", str(ckpt))
    trial.set_user_attr("spec", str(out / "train" / "experiment.yaml"))
    trial.set_user_attr("pred_counts", ev["pred_counts"])
    trial.set_user_attr("feasible", not ev["collapsed"])
    trial.set_user_attr("val_margin", ev["margin"])
    trial.set_user_attr("val_far_pct", ev["far_pct"])
    trial.set_user_attr("val_high_recall_far_pct", ev["high_recall_far_pct"])
    trial.set_user_attr("duration_sec", round(time.monotonic() - t0, 3))
    return "COMPLETE", ev["objective"], ev["far_pct"]


def _failed(trial, why: str, t0: float) -> tuple[str, None, None]:
    trial.set_user_attr("error", " ".join(why.split())[:1000])
    trial.set_user_attr("duration_sec", round(time.monotonic() - t0, 3))
    return "FAIL", None, None


# ------------------------------------------------------------------ the worker loop


def failure_allowance(n_trials: int) -> int:
    """Failed trials a study absorbs before it stops: the stated share of its budget, at least 1."""
    return max(1, int(math.floor(defaults.AUTOML_MAX_FAILED_SHARE * n_trials + 1e-9)))


def check_failures(study, cfg: SearchConfig) -> None:
    """Stop the study (HardStop) once more trials failed than the allowance; the stop is recorded,
    so rerunning the same command (after fixing the cause) resumes with the allowance afresh."""
    from optuna.trial import TrialState

    failed = sorted(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)), key=lambda t: t.number)
    accepted = int(study.user_attrs.get("failures_accepted", 0))
    allowed = failure_allowance(cfg.n_trials)
    if len(failed) - accepted <= allowed:
        return
    study.set_user_attr("failures_accepted", len(failed))
    reasons = "; ".join(f"trial {t.number}: {str(t.user_attrs.get('error', 'no detail'))[:240]}" for t in failed[-3:])
    raise HardStop(f"{len(failed) - accepted} AutoML trials failed, more than the {allowed} a {cfg.n_trials}-trial "
                   f"study allows ({defaults.AUTOML_MAX_FAILED_SHARE:.0%} of its trials, at least 1): {reasons}; fix "
                   f"the cause, then rerun the same command: the study resumes where it stopped")


def _resuggest(trial, name: str, dist) -> Any:
    """Suggest through the public API; a parameter already stored returns its stored value."""
    import optuna.distributions as od

    if isinstance(dist, od.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, od.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(name, dist.choices)


def _claim(study, cfg: SearchConfig, distributions: dict[str, Any]):
    """Under the lock: adopt an orphaned RUNNING trial, or ask a new one; None when the budget is used."""
    optuna = _optuna()
    from optuna.trial import TrialState

    with exclusive_lock(cfg.out_dir / ".ask.lock"):
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state == TrialState.RUNNING and not _alive(t.user_attrs.get("owner"), t.user_attrs.get("heartbeat")):
                trial = optuna.trial.Trial(study, t._trial_id)
                study.sampler = make_sampler(cfg.algorithm, cfg.seed, t.number, cfg.n_trials)
                for k, dist in distributions.items():  # stored params come back as they were
                    _resuggest(trial, k, dist)
                trial.set_user_attr("owner", _owner())
                trial.set_user_attr("adopted", True)
                return trial
        if sum(t.state != TrialState.FAIL for t in trials) >= cfg.n_trials:  # a failed trial uses no budget
            return None
        if not trials and cfg.start_params:
            study.enqueue_trial(cfg.start_params, user_attrs={"start_point": True})
        study.sampler = make_sampler(cfg.algorithm, cfg.seed, len(trials), cfg.n_trials)
        trial = study.ask(fixed_distributions=distributions)
        trial.set_user_attr("owner", _owner())
        return trial


def work(cfg: SearchConfig, backend, on_trial: Callable[[dict], None] | None = None) -> int:
    """Run trials until the study holds n_trials finished ones; returns how many this worker ran."""
    spec = train_spec.load(cfg.spec)
    max_epochs = int(train_spec.get(spec, "train.num_epochs", 10) or 10)
    study = open_study(cfg, max_epochs)
    dists = search_space.distributions(cfg.space)
    ran = 0
    while True:
        trial = _claim(study, cfg, dists)
        if trial is None:
            return ran
        state, value, far = run_trial(trial, cfg, backend, max_epochs)
        from optuna.trial import TrialState

        if state == "COMPLETE":
            study.tell(trial, value)
        else:
            study.tell(trial, state=getattr(TrialState, state))
        ran += 1
        if on_trial is not None:
            on_trial({"number": trial.number, "state": state, "value": far, "params": dict(trial.params),
                      "error": trial.user_attrs.get("error") if state == "FAIL" else None})
        if state == "FAIL":
            check_failures(study, cfg)


# ------------------------------------------------------------------ results


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        train_spec.set_dotted(out, key, value)
    return out


def best_record(cfg: SearchConfig) -> dict[str, Any]:
    """best_rec.json: the best feasible complete trial and every trial.

    Best = lowest objective (validation FAR over recall 90-100%, ties by the larger class margin: see
    ``objective``), then the earlier trial. ``value``/``score`` report the plain FAR at 100% recall.
    """
    optuna = _optuna()
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=cfg.study_name, storage=_storage(cfg.storage_url))
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = []
    for t in trials:
        rows.append({
            "number": t.number, "state": t.state.name, "value": t.user_attrs.get("val_far_pct"),
            "objective": t.value, "params": dict(t.params),
            "feasible": t.user_attrs.get("feasible"), "pred_counts": t.user_attrs.get("pred_counts"),
            "val_margin": t.user_attrs.get("val_margin"),
            "val_high_recall_far_pct": t.user_attrs.get("val_high_recall_far_pct"),
            "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
            "duration_sec": t.user_attrs.get("duration_sec"), "checkpoint": t.user_attrs.get("checkpoint"),
            "start_point": bool(t.user_attrs.get("start_point")), "adopted": bool(t.user_attrs.get("adopted")),
            "error": t.user_attrs.get("error"),
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        })
    ok = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")
          and t.value is not None and math.isfinite(t.value)]
    if not ok:
        collapsed = sum(1 for t in trials if t.user_attrs.get("feasible") is False)
        raise HardStop(f"no feasible AutoML trial among {len(trials)} ({collapsed} collapsed to one class, "
                       f"{sum(t.state == TrialState.PRUNED for t in trials)} pruned, "
                       f"{sum(t.state == TrialState.FAIL for t in trials)} failed); widen the search space or "
                       f"check the training data")
    ranked = sorted(ok, key=lambda t: (t.value, t.number))
    best = ranked[0]
    tied = tie_record(ranked, cfg.val_csv)
    runner = ranked[1] if len(ranked) > 1 else None  # how far the winner is from the next: the noise check
    spec = train_spec.load(cfg.spec)
    budget = {k.split(".")[-1]: train_spec.get(spec, k) for k in search_space.BUDGET_KEYS
              if train_spec.get(spec, k) is not None}
    return {
        "schema_version": 1,
        "study_name": cfg.study_name,
        "storage": cfg.storage_url,
        "metric_name": METRIC_NAME,
        "objective_name": OBJECTIVE_NAME,
        "metric_set": "validation",
        "direction": DIRECTION,
        "algorithm": cfg.algorithm,
        "seed": cfg.seed,
        "space": cfg.space,
        "warm_start": str(cfg.warm_start) if cfg.warm_start else None,
        "train_csv": str(cfg.train_csv),
        "val_csv": str(cfg.val_csv),
        "base_spec": str(cfg.spec),
        "best": {
            "trial": best.number,
            "score": best.user_attrs.get("val_far_pct"),
            "objective": best.value,
            "params": dict(best.params),
            "specs": nest(best.params),
            "observed_budget": budget,
            "checkpoint": best.user_attrs.get("checkpoint"),
            "spec": best.user_attrs.get("spec"),
            "pred_counts": best.user_attrs.get("pred_counts"),
        },
        "runner_up": None if runner is None else {
            "trial": runner.number, "score": runner.user_attrs.get("val_far_pct"), "objective": runner.value,
            "params": dict(runner.params)},
        "ties": tied,
        "counts": {s: sum(1 for t in trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "trials": rows,
    }


def tie_record(ranked: list, val_csv: Path) -> dict[str, Any]:
    """The trials tied with the winner on the reported metric (validation FAR@100% recall) and what broke the tie.

    On a small or easy validation set most trials score FAR 0 at 100% recall; the winner among them is then
    the objective's choice, which the report and the summary name instead of showing an unexplained pick."""
    from tao_aoi.analysis import binomial
    from tao_aoi.data import changenet_csv

    best = ranked[0]
    far = best.user_attrs.get("val_far_pct")
    tied = [t for t in ranked if t.user_attrs.get("val_far_pct") == far]
    hard = [t.user_attrs.get("val_high_recall_far_pct") for t in tied]
    if len(tied) == 1:
        decided = None
    elif sum(h == hard[0] for h in hard) == 1:
        decided = "FAR averaged over recall 90-100%"
    elif sum(t.value == best.value for t in tied) == 1:
        decided = "class margin"
    else:
        decided = "earlier trial"
    try:
        n_pass = int((changenet_csv.read_columns(val_csv, what="validation CSV")["label"] == "PASS").sum())
    except UserError:
        n_pass = 0
    return {"metric": METRIC_NAME, "value": far, "trials": [t.number for t in tied], "n_tied": len(tied),
            "n_feasible": len(ranked), "rule": ties.RULE, "decided_by": decided,
            "val_pass_rows": n_pass, "far_resolution_pct": binomial.resolution_pct(n_pass) if n_pass else None,
            "winner": {"trial": best.number, "val_high_recall_far_pct": hard[0], "val_margin":
                       best.user_attrs.get("val_margin")},
            "next": None if len(tied) < 2 else {"trial": tied[1].number, "val_high_recall_far_pct": hard[1],
                                                "val_margin": tied[1].user_attrs.get("val_margin")}}


def write_best(cfg: SearchConfig) -> dict[str, Any]:
    rec = best_record(cfg)
    atomic.write_json(cfg.out_dir / "best_rec.json", rec)
    return rec
