"""The bridge between phases: AutoML winner -> DEFT baseline, DEFT winner -> Phase 3 warm start.

Phase 1 -> 2 (seed_baseline): the winning parameters are set on the baseline spec key by key
(budget keys never searched, so DEFT keeps its epoch count) into specs/baseline_spec_automl.yaml;
the run is initialised on that spec; the winning checkpoint is copied into <R>/baseline/train/ and
committed through the normal writer with source automl_phase1, so DEFT starts at evaluate. A
winner that collapsed to one class is skipped for the next best.
Phase 2 -> 3 (warm_start): the best DEFT iteration by the contract (not a hard-coded min) gives
both the data (its own combined CSV) and the weights (its own checkpoint); the search space pins
the architecture and narrows the learning rate for fine-tuning. Phase 3's winner is registered as
the normal candidate ``final_automl``; the deliverable choice then decides, so a regressed Phase 3
never ships.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping

from tao_aoi import atomic, defaults, fmt
from tao_aoi.analysis import metric_contract
from tao_aoi.automl import search_space
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import Results, Workspace
from tao_aoi.state import deft_state, run_lock
from tao_aoi.tao import train_spec


def read_best_rec(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"AutoML result {p} cannot be read ({exc}); run automl.py first") from None
    for key in ("best", "trials", "direction", "metric_name"):
        if key not in rec:
            raise UserError(f"AutoML result {p} has no {key!r}; it was not written by automl.py")
    if rec["direction"] not in ("minimize", "maximize"):
        raise UserError(f"AutoML result {p}: direction must be minimize or maximize, got {rec['direction']!r}")
    return rec


def _rank(t: Mapping[str, Any], sign: int) -> tuple:
    """best_record's order (automl/study.py): the objective, then the earlier trial; a record without
    an objective (written before it existed) by the plain value, then the larger class margin."""
    obj = t.get("objective")
    if isinstance(obj, (int, float)) and math.isfinite(obj):
        return (0, sign * obj, 0.0, t["number"])
    return (1, sign * t["value"], -float(t.get("val_margin") or 0.0), t["number"])


def sane_winner(rec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Best feasible, non-collapsed trial with a checkpoint on disk (next best if the first is unusable),
    in the order best_rec.json's ``best`` was chosen by, so the trial the search reports is the one
    that seeds the baseline (it ranked by the plain FAR@100% before, and a demo run reported trial 4
    while trial 5 became the baseline)."""
    sign = 1 if rec["direction"] == "minimize" else -1
    ok = []
    for t in rec["trials"]:
        pc = t.get("pred_counts") or {}
        if t.get("state") != "COMPLETE" or not isinstance(t.get("value"), (int, float)) or not math.isfinite(t["value"]):
            continue
        if t.get("feasible") is False or not pc.get("defect") or not pc.get("pass"):
            continue  # mode collapse: predicts one class only
        if not t.get("checkpoint") or not Path(t["checkpoint"]).is_file():
            continue
        ok.append(t)
    if not ok:
        raise HardStop(f"{where}: no usable AutoML trial (all collapsed to one class, failed, or lost their "
                       f"checkpoint); rerun automl.py with more trials or a wider space")
    return min(ok, key=lambda t: _rank(t, sign))


def adopt_checkpoint(results_dir: str | Path, label: str, trial: Mapping[str, Any], train_csv: str | None,
                     source: str, summary: str) -> dict:
    """Copy a trial's checkpoint + effective spec into <R>/<label>/train/ and commit the train stage."""
    R = Results.at(results_dir)
    out = R.stage_dir(label, "train")
    src_ckpt = Path(trial["checkpoint"])
    src_spec = src_ckpt.parent / "experiment.yaml"
    if not src_spec.is_file():
        raise UserError(f"{src_spec} is missing next to the trial checkpoint; rerun that AutoML trial")
    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / defaults.CHECKPOINT_NAME) as tmp:
        shutil.copyfile(src_ckpt, tmp)
    with atomic.atomic_path(out / "experiment.yaml") as tmp:
        shutil.copyfile(src_spec, tmp)
    st, _ = deft_state.commit(R.root, label=label, stage="train", source=source, summary=summary,
                         artifacts={"checkpoint": str(out / defaults.CHECKPOINT_NAME),
                                    "training_spec": str(out / "experiment.yaml"), "train_csv": train_csv})
    return st


def seed_baseline(best_rec: str | Path, results_dir: str | Path, workspace: str | Path,
                  init_config: Mapping[str, Any] | None, kpi_target: str | None) -> dict[str, Any]:
    with run_lock.hold(results_dir):
        return _seed_baseline(best_rec, results_dir, workspace, init_config, kpi_target)


def _seed_baseline(best_rec: str | Path, results_dir: str | Path, workspace: str | Path,
                   init_config: Mapping[str, Any] | None, kpi_target: str | None) -> dict[str, Any]:
    rec = read_best_rec(best_rec)
    ws = Workspace.at(workspace)
    winner = sane_winner(rec, str(best_rec))
    base = train_spec.load(rec.get("base_spec") or ws.baseline_spec)
    tuned = {k: v for k, v in winner["params"].items() if k not in search_space.BUDGET_KEYS}
    merged = train_spec.dump(train_spec.with_values(base, tuned))
    R = Results.at(results_dir)
    run_spec = R.root / "baseline_spec_automl.yaml"  # the run's own copy: later runs cannot change it
    atomic.write_text(run_spec, merged)
    atomic.write_text(ws.automl_spec, merged)        # DESIGN.md's location, for the user
    if init_config is not None:
        deft_state.init(R.root, kpi_target=kpi_target, config={**init_config, "train_spec": str(run_spec)})
    st = deft_state.load(R.root)
    if st["config"]["train_spec"] != str(run_spec):
        raise UserError(f"{R.state} was initialised with train_spec {st['config']['train_spec']}; a seeded run "
                        f"uses the merged spec {run_spec}: let seed_baseline.py initialise the run "
                        f"(--max-iterations, --kpi-target) in a new --results-dir")
    done = st["iterations"].get("baseline", {}).get("stage_completed")
    if done:
        return {"seeded": False, "reason": f"baseline already at {done}", "trial": winner["number"],
                "spec": str(run_spec)}
    adopt_checkpoint(R.root, "baseline", winner, st["config"]["training_csv"], "automl_phase1",
                     f"baseline = Phase 1 AutoML trial {winner['number']} (val FAR {fmt.num(winner['value'])}%), "
                     f"not retrained")
    return {"seeded": True, "trial": winner["number"], "score": winner["value"], "spec": str(run_spec),
            "params": tuned}


def warm_start_inputs(results_dir: str | Path, space: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Phase 3's inputs from the finished DEFT run; HardStop if DEFT did not finish."""
    with run_lock.hold(results_dir):
        return _warm_start_inputs(results_dir, space)


def _warm_start_inputs(results_dir: str | Path, space: Mapping[str, Any] | None) -> dict[str, Any]:
    R = Results.at(results_dir)
    st = deft_state.load(R.root)
    recorded = R.automl("phase3") / "warm_start.json"
    if "final_automl" in st["iterations"] and recorded.is_file():
        # Phase 3 already registered its winner (a run killed during its evaluate or finalize resumes here):
        # the inputs it was started from, not a fresh choice from a state that is no longer "complete".
        return json.loads(recorded.read_text(encoding="utf-8"))
    if st["status"] == "failed":
        f = st["failure"] or {}
        raise HardStop(f"DEFT hard-stopped at {f.get('iter')}/{f.get('stage')} ({f.get('summary')}); Phase 3 is "
                       f"skipped: there is no validated augmented training set to tune on")
    if st["status"] != "complete":
        raise UserError(f"DEFT in {R.root} has not finished (next: run next_stage.py); Phase 3 starts after finalize")
    cands = [(lb, res) for lb, res in deft_state.candidates(st) if lb != "final_automl"]
    best = metric_contract.pick_best(st["metric_contract"], cands)
    if best is None:
        raise HardStop("no evaluated DEFT iteration to warm-start from")
    rec = st["iterations"][best]
    train_csv = st["config"]["training_csv"] if best == "baseline" else str(R.combined_csv(int(best[4:])))
    spec_path = rec["artifacts"]["training_spec"]
    spec = train_spec.load(spec_path)
    base_space = dict(space) if space else search_space.default_for_backend(st["config"]["backend"])
    winner_values = {k: train_spec.get(spec, k) for k in base_space["params"]}
    narrowed = search_space.for_warm_start(base_space, {k: v for k, v in winner_values.items() if v is not None})
    out = R.automl("phase3")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "search_space.json", narrowed)
    inputs = {
        "best_iteration": best,
        "metric": rec["metric_result"]["value"],
        "train_csv": train_csv,
        "val_csv": st["config"]["validation_csv"],
        "checkpoint": rec["artifacts"]["checkpoint"],
        "spec": spec_path,
        "search_space": str(out / "search_space.json"),
        "results_dir": str(out),
        "pinned": list(base_space.get("architecture", [])),
    }
    atomic.write_json(out / "warm_start.json", inputs)
    return inputs


def register_phase3(results_dir: str | Path, best_rec: str | Path) -> dict[str, Any]:
    """Commit Phase 3's winner as final_automl/train (then evaluate + finalize run as normal stages)."""
    with run_lock.hold(results_dir):
        return _register_phase3(results_dir, best_rec)


def _register_phase3(results_dir: str | Path, best_rec: str | Path) -> dict[str, Any]:
    R = Results.at(results_dir)
    st = deft_state.load(R.root)
    if "final_automl" in st["iterations"]:
        return {"registered": False, "reason": "final_automl already registered"}
    rec = read_best_rec(best_rec)
    winner = sane_winner(rec, str(best_rec))
    adopt_checkpoint(R.root, "final_automl", winner, rec.get("train_csv") or None, "automl_phase3",
                     f"Phase 3 AutoML trial {winner['number']} (val FAR {fmt.num(winner['value'])}%), warm-started")
    return {"registered": True, "trial": winner["number"], "score": winner["value"]}
