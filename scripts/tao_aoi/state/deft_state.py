"""deft_state.json: the one writer of the run's durable state.

Every change is a *commit*: under the results folder's exclusive lock, check the transition
table, check the stage's artifacts, append one event (carrying the state patch) to
loop_log.jsonl, then atomically replace deft_state.json. The log is written first, so it is the
write-ahead record: if a SIGKILL lands between the two writes, the next reader rolls the state
forward from the log's patch. Either way the state parses and agrees with the log.

The file is a view of the log, and every reader checks it: it must equal the log's commits
replayed up to the seq it names (the last commit, or the one before after such a kill). A hand
edit is refused (exit 2) naming the file, the first differing key and repair_state.py, which
rewrites it from the log. Writers hold the folder's run lock (run_lock.py); log() does not.
Pure Python (no pandas/numpy): these functions run on every agent step.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Mapping

from tao_aoi import atomic
from tao_aoi.analysis import metric_contract
from tao_aoi.errors import UserError
from tao_aoi.file_lock import exclusive_lock
from tao_aoi.layout import Results, iteration_label, iteration_number
from tao_aoi.state import event_log, pipeline_state, run_lock, schema_check, stages

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- reading


def _read_state_file(results: Results) -> dict[str, Any] | None:
    try:
        text = results.state.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{results.state} is not valid JSON ({exc.msg} at line {exc.lineno}); it is written only by "
            f"commit_stage.py - {event_log.rebuild_hint(results.root)}"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"{results.state} does not hold a JSON object; {event_log.rebuild_hint(results.root)}")
    return state


def _absorb(state: dict[str, Any] | None, event: Mapping[str, Any]) -> dict[str, Any]:
    """Fold one commit event into ``state`` in place (sharing the event's objects: replay only)."""
    patch = event["patch"]
    if state is None:
        state = {"iterations": {}}
    state.update(patch.get("set", {}))
    state.setdefault("iterations", {})
    state["iterations"].update(patch.get("iterations", {}))
    state["last_seq"] = event["seq"]
    return state


def apply_patch(state: dict[str, Any] | None, event: Mapping[str, Any]) -> dict[str, Any]:
    """The state after ``event``, sharing nothing with either argument."""
    return _absorb(copy.deepcopy(state), copy.deepcopy(event))


def _replay(results: Results, events: list[dict[str, Any]], on_disk: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    return event_log.replay(events, "commit", _absorb, on_disk, file=results.state)


def _materialize(results: Results, events: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], bool]:
    """The state as the log records it, after checking that the file on disk agrees.

    The file must equal the log replayed up to its ``last_seq`` (a hand edit is refused, naming the
    first differing key); so must pipeline_state.json. Returns (state, changed) where changed means
    the file lagged the log: a commit was killed between its log append and its state rename, and
    the state rolls forward.
    """
    if events is None:
        events = event_log.read_events(results.log)
    pipeline_state.load(results, events)  # the runner's state is checked by every reader too
    on_disk = _read_state_file(results)
    if on_disk is not None and not events:
        raise UserError(
            f"{results.log} is missing or empty but {results.state} exists; the log is the run's record - "
            f"restore it, or start a new run in a new --results-dir"
        )
    if not events:
        raise UserError(f"{results.root} holds no DEFT run; create one with init_deft_state.py")
    state, changed = _replay(results, events, on_disk)
    if state is None:
        if any(e["kind"] == pipeline_state.KIND for e in events):  # run_pipeline.py seeds DEFT after Phase 1
            raise UserError(f"{results.root} holds a three-phase run whose DEFT loop has not started yet (run_pipeline.py "
                            f"starts it after Phase 1); next_stage.py --results-dir {results.root} shows where it is")
        raise UserError(f"{results.log} has no init event; create the run with init_deft_state.py")
    if changed:
        schema_check.validate("deft_state", state, where=f"{results.state} (rolled forward from the log)")
    return state, changed


def load(results_dir: str | os.PathLike[str], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Current state, checked against the log (read-only; no lock: both files are replaced atomically);
    ``events``: the log as the caller just read it (event_log.read_events), read here otherwise."""
    results = Results.at(results_dir)
    state, _ = _materialize(results, events)
    return state


def started(results_dir: str | os.PathLike[str]) -> bool:
    """True once the folder holds a DEFT run (a state file, or an init in the log)."""
    results = Results.at(results_dir)
    if results.state.exists():
        return True
    return any(e["kind"] == "commit" for e in event_log.read_events(results.log))


def repair(results_dir: str | os.PathLike[str]) -> bool:
    """Under the lock, write the rolled-forward state if the file lagged the log. True if it did."""
    results = Results.at(results_dir)
    with run_lock.hold(results.root), exclusive_lock(results.lock):
        state, changed = _materialize(results)
        if changed:
            atomic.write_json(results.state, state)
        return changed


def rebuild(results_dir: str | os.PathLike[str]) -> str:
    """repair_state.py: rewrite deft_state.json as the log replayed, whatever the file says now.

    A file that disagrees is kept as ``deft_state.json.edited``; a tampered log cannot be rebuilt
    from (read_events refuses it). Returns one line saying what was done.
    """
    results = Results.at(results_dir)
    with run_lock.hold(results.root), exclusive_lock(results.lock):
        events = event_log.read_events(results.log)
        state, _ = _replay(results, events, None)
        return event_log.rewrite_view(results.state, state, "the DEFT run's commits")


# --------------------------------------------------------------------------- init


CONFIG_KEYS_THAT_DEFINE_A_RUN = (
    "workspace", "backend", "max_iterations", "images_root", "train_spec", "training_csv",
    "validation_csv", "kpi_csv", "sdg_pool", "mining_pool_csv", "num_sdg", "top_k_per_label",
    "top_k_per_target", "min_similarity", "min_recall", "sdg_labels", "holdout_csv",
)


def init(results_dir: str | os.PathLike[str], *, kpi_target: str, config: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the run (state + init event). Idempotent for the same config; refuses a different one.

    Returns (state, created).
    """
    results = Results.at(results_dir)
    contract = metric_contract.parse_kpi_target(kpi_target)
    results.root.mkdir(parents=True, exist_ok=True)
    with run_lock.hold(results.root), exclusive_lock(results.lock):
        events = event_log.read_events(results.log)
        if any(e["kind"] == "commit" for e in events):
            state, changed = _materialize(results, events)
            if changed:
                atomic.write_json(results.state, state)
            diffs = [k for k in CONFIG_KEYS_THAT_DEFINE_A_RUN
                     if json.dumps(state["config"].get(k), sort_keys=True) != json.dumps(config.get(k), sort_keys=True)]
            if not metric_contract.same(state["metric_contract"], contract):
                diffs.insert(0, "kpi_target")
            if diffs and all(k in stages.ADJUSTABLE_CONFIG for k in diffs):
                return _reconfigure_locked(results, events, state, {k: config.get(k) for k in diffs})[0], False
            if diffs:
                diffs.sort(key=lambda k: k in stages.ADJUSTABLE_CONFIG)  # name a key that cannot change
                k = diffs[0]
                old = state["kpi_target"] if k == "kpi_target" else state["config"].get(k)
                new = kpi_target if k == "kpi_target" else config.get(k)
                raise UserError(
                    f"{results.state} already holds a run with {k}={old!r} (asked for {new!r}); resume it with "
                    f"the same arguments (only {', '.join(stages.ADJUSTABLE_CONFIG)} may change) or use a new "
                    f"--results-dir"
                )
            return state, False
        if results.state.exists():
            raise UserError(f"{results.state} exists without {results.log}; use a new --results-dir")
        seq = events[-1]["seq"] + 1 if events else 1  # notes may have been logged before init
        now = event_log.utc_now()
        initial = {
            "schema_version": SCHEMA_VERSION,
            "run_id": results.root.name,
            "status": "in_progress",
            "created_at": now,
            "updated_at": now,
            "kpi_target": contract["text"],
            "metric_contract": contract,
            "config": dict(config),
            "current_iteration": "baseline",
            "last_commit": {"iter": stages.RUN, "stage": "init", "seq": seq},
            "failure": None,
            "stop_reason": None,
            "best_iteration": None,
            "final_artifacts": {},
        }
        event = event_log.make_event(
            seq, iter=stages.RUN, stage="init", status="ok",
            summary=f"run initialised: {contract['text']}, max_iterations={config.get('max_iterations')}",
            duration_sec=0.0, kind="commit", patch={"set": initial, "iterations": {}},
        )
        state = apply_patch(None, event)
        schema_check.validate("deft_state", state, where=str(results.state))
        event_log.append(results.log, event)
        atomic.write_json(results.state, state)
        return state, True


# --------------------------------------------------------------------------- reconfigure


def _applies_from(state: Mapping[str, Any], key: str) -> str:
    """The first iteration that will read ``key`` (stage keys) or the one in progress (max_iterations)."""
    step = stages.expected_next(state)
    last = (state.get("last_commit") or {}).get("iter") or "baseline"
    if step is None or step.iter == stages.RUN:  # finalize next: only a later iteration could use it
        return iteration_label(iteration_number(last) + 1) if last != stages.RUN else "iter1"
    if step.iter == "baseline":
        return "iter1"
    n = iteration_number(step.iter)
    reader = stages.ADJUSTABLE_CONFIG[key]
    if reader is None or stages.ITER_STAGES.index(step.stage) <= stages.ITER_STAGES.index(reader):
        return step.iter
    return iteration_label(n + 1)


def _reconfigure_locked(results: Results, events: list[dict[str, Any]], state: dict[str, Any],
                        changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    changes = {k: v for k, v in changes.items() if state["config"].get(k) != v}
    unknown = [k for k in changes if k not in stages.ADJUSTABLE_CONFIG]
    if unknown:
        raise UserError(f"{unknown[0]} cannot change in a started run (only {', '.join(stages.ADJUSTABLE_CONFIG)} "
                        f"can); use a new --results-dir")
    if not changes:
        return state, None
    if stages.expected_next(state) is None or "final_automl" in state["iterations"]:
        raise UserError(f"the DEFT loop in {results.root} is finished; {', '.join(changes)} can no longer change "
                        f"(start a new run in a new --results-dir)")
    if "max_iterations" in changes:
        evaluated = [iteration_number(lb) for lb, _ in candidates(state) if lb.startswith("iter")]
        floor = max(evaluated + [1])
        if not isinstance(changes["max_iterations"], int) or changes["max_iterations"] < floor:
            raise UserError(f"--max-iterations {changes['max_iterations']} is below iteration {floor}, which is "
                            f"already evaluated; pass --max-iterations {floor} or more")
    seq = events[-1]["seq"] + 1
    now = event_log.utc_now()
    entry = {"seq": seq, "ts": now, "changes": {
        k: {"from": state["config"].get(k), "to": v, "applies_from": _applies_from(state, k)} for k, v in changes.items()}}
    set_ = {"updated_at": now, "config": {**state["config"], **changes},
            "config_changes": [*state.get("config_changes", []), entry]}
    summary = "options changed on resume: " + ", ".join(
        f"{k} {c['from']} -> {c['to']} (from {c['applies_from']})" for k, c in entry["changes"].items())
    event = event_log.make_event(seq, iter=stages.RUN, stage=stages.RECONFIGURE, status="ok", summary=summary,
                                 duration_sec=0.0, kind="commit", patch={"set": set_, "iterations": {}})
    new_state = apply_patch(state, event)
    schema_check.validate("deft_state", new_state, where=str(results.state))
    event_log.append(results.log, event)
    atomic.write_json(results.state, new_state)
    return new_state, event


def reconfigure(results_dir: str | os.PathLike[str], changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Change options that only shape iterations not yet started (stages.ADJUSTABLE_CONFIG) in a
    started run, through the writer: one ``run/reconfigure`` commit records each old and new value
    and the iteration it applies from (the report shows them). Returns (state, event or None)."""
    results = Results.at(results_dir)
    with run_lock.hold(results.root), exclusive_lock(results.lock):
        events = event_log.read_events(results.log)
        state, changed = _materialize(results, events)
        if changed:
            atomic.write_json(results.state, state)
        return _reconfigure_locked(results, events, state, changes)


# --------------------------------------------------------------------------- commit


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _artifact_paths(results: Results, label: str, stage: str, artifacts: Mapping[str, str | None]) -> dict[str, str]:
    spec = dict(stages.ARTIFACTS.get(stage, ()))
    unknown = [k for k, v in artifacts.items() if v is not None and k not in spec]
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        allowed = ", ".join("--" + k.replace("_", "-") for k in spec) or "none"
        raise UserError(f"{flag} does not belong to stage {stage!r} (its artifacts: {allowed})")
    out: dict[str, str] = {}
    for key, required in spec.items():
        raw = artifacts.get(key)
        flag = "--" + key.replace("_", "-")
        if raw is None:
            if required:
                raise UserError(f"stage {label}/{stage} needs {flag} (the file the stage wrote)")
            continue
        path = Path(raw).expanduser().resolve()
        if not path.is_file() or path.stat().st_size == 0:
            raise UserError(f"{flag} {path} does not exist or is empty; run the stage first")
        if key not in ("training_spec", "train_csv") and not _inside(path, results.root):
            raise UserError(f"{flag} {path} is outside the results folder {results.root}; stage outputs live in it")
        out[key] = str(path)
    if stage == "train":
        train_dir = results.stage_dir(label, "train")
        if not _inside(Path(out["checkpoint"]), train_dir):
            raise UserError(
                f"--checkpoint {out['checkpoint']} must be inside {train_dir} (each iteration keeps its own "
                f"checkpoint; seed_baseline.py copies a Phase 1 winner there)"
            )
    return out


def _load_json(path: str, flag: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{flag} {path} is not valid JSON ({exc})") from None


def _check_metric_result(contract: Mapping[str, Any], path: str) -> dict[str, Any]:
    raw = _load_json(path, "--metric-result")
    if not isinstance(raw, dict):
        raise UserError(f"--metric-result {path} must hold a JSON object")
    value = metric_contract.metric_value(raw, contract["name"])
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        raise UserError(f"--metric-result {path} has no finite {contract['name']!r}; rerun analyze_kpi.py")
    passed, failures = metric_contract.evaluate(contract, raw)
    result = {
        "name": contract["name"],
        "value": float(value),
        "unit": contract["unit"],
        "constraints": {c["name"]: metric_contract.metric_value(raw, c["name"]) for c in contract["constraints"]},
        "passed": passed,  # recomputed, never trusted from the file
        "failures": failures,
        "evidence_path": path,
    }
    for key in ("threshold", "far_pct", "recall_pct", "precision_pct", "f1", "counts", "n_pass", "n_defect",
                "far_resolution_pct", "far_ci95_pct"):
        if key in raw:
            result[key] = raw[key]
    # The figures a candidate ships with (the report's trajectory reads them from the state): the threshold
    # with its margins and the calibrated KPI (threshold chosen on the validation set), without their details.
    dep = raw.get("deployment")
    if isinstance(dep, dict):
        result["deployment"] = {k: dep.get(k) for k in ("threshold", "margin", "moved_gaps")}
    cal = raw.get("calibrated")
    if isinstance(cal, dict) and isinstance(cal.get("kpi"), dict):
        result["calibrated"] = {"threshold": cal.get("threshold"),
                                "kpi": {k: cal["kpi"].get(k) for k in ("far_pct", "recall_pct", "far_ci95_pct")},
                                "families_not_in_validation": cal.get("families_not_in_validation") or []}
    return result


def _check_validation_report(path: str) -> dict[str, Any]:
    report = _load_json(path, "--validation-report")
    problems = []
    for key in ("missing_file_count", "leakage_count", "bad_label_count"):
        v = report.get(key) if isinstance(report, dict) else None
        if not isinstance(v, int) or isinstance(v, bool):
            problems.append(f"{key} is missing")
        elif v != 0:
            problems.append(f"{key}={v}")
    new_rows = report.get("new_rows") if isinstance(report, dict) else None
    if not isinstance(new_rows, int) or isinstance(new_rows, bool) or new_rows <= 0:
        problems.append(f"new_rows={new_rows!r} (an iteration must add rows)")
    if problems:
        raise UserError(
            f"--validation-report {path} does not prove a clean merge: {', '.join(problems)}; fix the dataset "
            f"and rerun assemble_dataset.py"
        )
    return report


def commit(
    results_dir: str | os.PathLike[str],
    *,
    label: str,
    stage: str,
    status: str = "ok",
    summary: str = "",
    duration_sec: float = 0.0,
    artifacts: Mapping[str, str | None] | None = None,
    source: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate and record one stage result. Returns (new state, event). Raises UserError if refused."""
    results = Results.at(results_dir)
    artifacts = dict(artifacts or {})
    if status not in ("ok", "error"):
        raise UserError(f"--status must be ok or error, got {status!r}")
    if not (isinstance(duration_sec, (int, float)) and math.isfinite(duration_sec) and duration_sec >= 0):
        raise UserError(f"--duration-sec must be a non-negative number of seconds, got {duration_sec!r}")
    if stage not in stages.COMMIT_STAGES or stage == "init":
        raise UserError(f"--stage {stage!r} cannot be committed; stages: {', '.join(stages.COMMIT_STAGES[1:])}")
    with run_lock.hold(results.root), exclusive_lock(results.lock):
        events = event_log.read_events(results.log)
        state, lagged = _materialize(results, events)
        if lagged:  # a kill left the file behind the log: persist the roll-forward before appending, so
            atomic.write_json(results.state, state)  # the file is never more than one commit behind
        step = stages.Step(label, stage)
        allowed = stages.allowed_next(state)
        if step not in allowed:
            if not allowed:
                raise UserError(f"refused {step}: the run in {results.root} is complete; nothing more to commit")
            want = " or ".join(str(s) for s in allowed)
            why = ""
            if state["status"] == "failed" and state.get("failure"):
                f = state["failure"]
                why = f" (the run failed at {f['iter']}/{f['stage']}: {f['summary']}; fix the cause and retry that stage)"
            raise UserError(f"refused {step}: out of order, {want} is expected next{why}")

        now = event_log.utc_now()
        seq = events[-1]["seq"] + 1
        set_: dict[str, Any] = {"updated_at": now, "last_seq": seq}
        iterations: dict[str, Any] = {}
        record: dict[str, Any] | None = None
        if label != stages.RUN:
            record = copy.deepcopy(state["iterations"].get(label)) or {
                "status": "in_progress", "stage_completed": None, "artifacts": {}, "stages": {},
            }
            record.setdefault("stages", {})
            set_["current_iteration"] = label

        if status == "error":
            set_["status"] = "failed"
            set_["failure"] = {"iter": label, "stage": stage, "summary": summary or "stage failed", "seq": seq}
            if record is not None:
                record["status"] = "complete" if record.get("metric_result") else "failed"
                record["stages"][stage] = {"seq": seq, "ts": now, "status": "error",
                                           "duration_sec": duration_sec, "summary": summary}
        else:
            paths = _artifact_paths(results, label, stage, artifacts)
            set_["status"] = "in_progress"
            set_["failure"] = None
            set_["last_commit"] = {"iter": label, "stage": stage, "seq": seq}
            if stage == "evaluate":
                record["metric_result"] = _check_metric_result(state["metric_contract"], paths["metric_result"])
            if stage == "assemble":
                _check_validation_report(paths["validation_report"])
            if stage == "finalize":
                best = _load_json(paths["best_model"], "--best-model")
                label_best = best.get("iteration") if isinstance(best, dict) else None
                complete = {k for k, v in state["iterations"].items() if v.get("status") == "complete"}
                if label_best not in complete:
                    raise UserError(
                        f"--best-model {paths['best_model']} names iteration {label_best!r}, which is not a complete "
                        f"candidate ({', '.join(sorted(complete)) or 'none'}); rerun prepare_inference_spec.py"
                    )
                set_["status"] = "complete"
                set_["best_iteration"] = label_best
                set_["stop_reason"] = stages.stop_reason(state)
                set_["final_artifacts"] = paths
            if record is not None:
                if stage == "train" and source:
                    record["source"] = source
                record["artifacts"].update(paths)
                record["stage_completed"] = stage
                # An evaluated iteration is a candidate model for good, whatever happens after it.
                record["status"] = "complete" if record.get("metric_result") else "in_progress"
                record["stages"][stage] = {"seq": seq, "ts": now, "status": "ok",
                                           "duration_sec": duration_sec, "summary": summary}
        if record is not None:
            iterations[label] = record

        event = event_log.make_event(
            seq, iter=label, stage=stage, status=status,
            summary=summary or f"{label}/{stage} {status}", duration_sec=duration_sec,
            kind="commit", patch={"set": set_, "iterations": iterations},
        )
        new_state = apply_patch(state, event)
        schema_check.validate("deft_state", new_state, where=str(results.state))
        event_log.append(results.log, event)
        atomic.write_json(results.state, new_state)
        return new_state, event


def log(
    results_dir: str | os.PathLike[str],
    *,
    label: str,
    stage: str,
    status: str,
    summary: str,
    duration_sec: float = 0.0,
) -> dict[str, Any]:
    """Append an informational event (no state change) with the next seq."""
    results = Results.at(results_dir)
    if not results.root.is_dir():
        raise UserError(f"results folder {results.root} does not exist; create the run with init_deft_state.py")
    if not (isinstance(duration_sec, (int, float)) and math.isfinite(duration_sec) and duration_sec >= 0):
        raise UserError(f"--duration-sec must be a non-negative number of seconds, got {duration_sec!r}")
    with exclusive_lock(results.lock):  # not the run lock: a note may be logged while a run goes
        seq = event_log.next_seq(results.log)
        event = event_log.make_event(seq, iter=label, stage=stage, status=status, summary=summary,
                                     duration_sec=duration_sec, kind="log")
        event_log.append(results.log, event)
        return event


def candidates(state: Mapping[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """Complete iterations in run order, with their metric results (for pick_best)."""
    labels = sorted(state.get("iterations", {}), key=iteration_number)
    return [(lb, state["iterations"][lb].get("metric_result"))
            for lb in labels if state["iterations"][lb].get("status") == "complete"]


def trajectory(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every evaluated candidate in run order: its KPI value, whether it passed, where it came from."""
    return [{"iteration": label, "kpi_value": (res or {}).get("value"), "passed": (res or {}).get("passed"),
             "source": state["iterations"][label].get("source")} for label, res in candidates(state)]
