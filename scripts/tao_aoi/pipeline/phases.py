"""The three-phase job: Phase 1 AutoML -> Phase 2 DEFT -> Phase 3 AutoML, resumable as a whole.

pipeline_state.json (the bridge's own state, a view of its events in the run's log:
pipeline_state.py) records the options and which phase is done; each phase is itself resumable
(the Optuna study, the DEFT state), so a rerun after a kill at any moment continues in the right
phase and ends where an uninterrupted run would. The whole job holds the folder's run lock.
Nothing here asks questions after the single approval; only hard stops end the run early.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tao_aoi import defaults, fmt
from tao_aoi.analysis import metric_contract
from tao_aoi.automl import search_space, study, ties
from tao_aoi.backends import faults, get_backend
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import Results, Workspace
from tao_aoi.pipeline import deft_loop, handoff, run_config, run_progress
from tao_aoi.state import deft_state, pipeline_state, run_lock, stages

PHASE_SETS = defaults.PHASE_SETS
ALGORITHMS = study.ALGORITHMS
PHASES = run_progress.PHASES
ADJUSTABLE = tuple(stages.ADJUSTABLE_CONFIG)  # options a resumed run may change (state.reconfigure)


@dataclass(frozen=True)
class Options:
    """The run as the user asked for it. With a time limit, max_iterations and trials may be None:
    the budget (run_cost.plan, recorded in pipeline_state.json) fills them (``effective``)."""

    workspace: str
    backend: str
    phases: str
    max_iterations: int | None
    kpi_target: str
    trials: int | None
    algorithm: str
    num_sdg: int
    top_k_per_target: int
    min_similarity: float | None    # None: the embedder's calibrated floor
    seed: int
    time_limit: str | None = None
    holdout_csv: str | None = None  # the sealed holdout set, scored once by the deliverable (finalize)

    @classmethod
    def from_args(cls, args, ws: Path) -> "Options":
        limit = getattr(args, "time_limit", None)
        trials = args.trials if args.trials is not None else (None if limit else defaults.AUTOML_TRIALS)
        # The contract's canonical text: "FAR below 1% at 100% recall" resumes a "FAR < 1% at Recall=100%" run.
        kpi = metric_contract.render(metric_contract.parse_kpi_target(args.kpi_target))
        holdout = getattr(args, "holdout_csv", None)
        return cls(str(ws), args.backend, args.phases, args.max_iterations, kpi, trials,
                   args.algorithm, args.num_sdg, args.top_k_per_target, args.min_similarity, args.seed, limit,
                   str(Path(holdout).expanduser().resolve()) if holdout else None)


def effective(opts: Options, budget: dict[str, Any] | None) -> Options:
    """The options the run executes: what the user gave, the time budget's choice for the rest."""
    if not budget:
        return opts
    return replace(opts, max_iterations=opts.max_iterations if opts.max_iterations is not None
                   else budget.get("max_iterations") or 1,
                   trials=opts.trials if opts.trials is not None else budget.get("trials") or defaults.AUTOML_TRIALS)


def plan_budget(opts: Options, R: Results, *, epoch_sec: float | None = None) -> dict[str, Any] | None:
    """With --time-limit: the budget this run was confirmed with (a resumed run keeps it), else a
    fresh one from a dry run in this process (its decoded images stay cached for the run)."""
    if opts.time_limit is None:
        return None
    ps = pipeline_state.load(R)
    if ps and (ps.get("budget") or {}).get("time_limit") == opts.time_limit:
        return ps["budget"]
    if ps:
        _refuse_fixed_changes(R, ps, opts)  # before a dry run is spent on a run that will be refused
    from tao_aoi.pipeline import compute_budget

    return compute_budget.plan(opts.workspace, backend=opts.backend, phases=opts.phases, trials=opts.trials,
                         max_iterations=opts.max_iterations, num_sdg=opts.num_sdg,
                         top_k_per_target=opts.top_k_per_target, algorithm=opts.algorithm,
                         time_limit=opts.time_limit, epoch_sec=epoch_sec, in_process=True)


# ------------------------------------------------------------------ the results folder


def recorded_options(recorded: dict[str, Any]) -> dict[str, Any]:
    """Options recorded by an older version, with the fields added since at their defaults."""
    return {"holdout_csv": None, **recorded}


def same_run(recorded: dict[str, Any], opts: Options) -> bool:
    """The same run, perhaps with options of iterations not started yet changed (see resume_changes)."""
    recorded = recorded_options(recorded)
    mine = asdict(opts)
    return set(recorded) == set(mine) and all(recorded[k] == v for k, v in mine.items() if k not in ADJUSTABLE)


def results_dir_for(opts: Options, given: str | None) -> Results:
    if given:
        return Results.at(given)
    runs = sorted(Workspace.at(opts.workspace).results.glob("run_*/pipeline_state.json"), reverse=True)
    for p in runs:
        try:
            ps = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if same_run(ps.get("options") or {}, opts) and ps.get("status") != "complete":  # failed: rerun = retry
            return Results.at(p.parent)
    return Results.at(Workspace.at(opts.workspace).results / time.strftime("run_%Y%m%d_%H%M%S"))


# ------------------------------------------------------------------ the single gate


def plan_text(opts: Options, R: Results) -> str:
    ph = PHASES[opts.phases]
    lines = [f"Plan ({' -> '.join(ph)}) in {R.root}:"]
    if "automl1" in ph:
        lines.append(f"  Phase 1  AutoML {opts.algorithm}, {opts.trials} trials on the base training set, "
                     f"scored by FAR@100% recall on the validation set")
    if "deft" in ph:
        floor = "the embedder's floor" if opts.min_similarity is None else f"{opts.min_similarity:g}"
        lines.append(f"  Phase 2  DEFT up to {opts.max_iterations} iterations until {opts.kpi_target!r} on the KPI set "
                     f"(num_sdg {opts.num_sdg}, top-k {opts.top_k_per_target}, min similarity {floor})")
    if "automl3" in ph:
        lines.append(f"  Phase 3  AutoML {opts.trials} trials on DEFT's best training set, warm-started from its "
                     f"checkpoint; the deliverable is the best candidate by the contract")
    cost = []
    if "automl1" in ph:
        cost.append(f"{2 * opts.trials if 'automl3' in ph else opts.trials} AutoML trainings")
    if "deft" in ph:
        cost.append(f"{opts.max_iterations} DEFT iterations" + ("" if "automl1" in ph else " + a baseline training"))
    lines.append(f"  holdout  {opts.holdout_csv}: sealed, scored once by the deliverable at the shipped threshold"
                 if opts.holdout_csv else "  holdout  none: the KPI figure will be measured on the set that chose the "
                 "deliverable (pass --holdout-csv for what to expect on the line)")
    lines.append(f"  backend {opts.backend}; cost ~ {' + '.join(cost)}")
    return "\n".join(lines)


def preflight_checks(opts: Options) -> dict[str, Any]:
    """The pre-flight checks before anything starts: hard blockers stop the run at once (exit 2)."""
    from tao_aoi.pipeline import preflight

    report = preflight.run(opts.workspace, opts.backend, opts.max_iterations, opts.kpi_target, trials=opts.trials,
                           algorithm=opts.algorithm, num_sdg=opts.num_sdg, top_k_per_target=opts.top_k_per_target,
                           min_similarity=opts.min_similarity, phases=opts.phases, holdout_csv=opts.holdout_csv)
    preflight.require_ready(report)
    return report


def confirm(opts: Options, R: Results, warnings: list[str] = (), budget: dict[str, Any] | None = None) -> bool:
    print(plan_text(opts, R))
    if budget:
        from tao_aoi.pipeline import compute_budget

        print(f"  {compute_budget.summary_line(budget)}")
    for w in warnings:
        print(f"  warning: {w}")
    if not sys.stdin.isatty():
        print("(no terminal to confirm on: pass --yes to approve)")
        return False
    return input("Proceed? [yes/no] ").strip().lower() in ("y", "yes", "go")


# ------------------------------------------------------------------ phases


def _init_config(opts: Options) -> dict[str, Any]:
    return run_config.deft_config(workspace=opts.workspace, max_iterations=opts.max_iterations, backend=opts.backend,
                                  num_sdg=opts.num_sdg, top_k_per_target=opts.top_k_per_target,
                                  min_similarity=opts.min_similarity, holdout_csv=opts.holdout_csv)


def _search(opts: Options, R: Results, phase: str, spec: Path, train_csv: str, val_csv: str, *, space: dict,
            warm: str | None, progress: deft_loop.Progress) -> dict[str, Any]:
    ws = Workspace.at(opts.workspace)
    study_name = run_progress.STUDY[phase]
    out = R.automl(study_name)
    cfg = study.SearchConfig(spec=spec, train_csv=Path(train_csv), val_csv=Path(val_csv), images_root=ws.images,
                              out_dir=out, space=space, algorithm=opts.algorithm, n_trials=opts.trials,
                              seed=opts.seed, warm_start=Path(warm) if warm else None, start_params=study.start_point(space, spec))
    backend = get_backend("local" if opts.backend == "slurm" else opts.backend)
    t0 = time.monotonic()
    failed = 0  # a failed trial is replaced (it does not use the budget), so it is no step of the count

    def show(t: dict) -> None:
        nonlocal failed
        failed += t["state"] == "FAIL"
        value = "" if t["value"] is None else f"val FAR {fmt.num(t['value'])}%"
        # one note per finished trial: next_stage.py reports the phase's progress from the log
        deft_state.log(R.root, label=stages.RUN, stage="automl", status="error" if t["state"] == "FAIL" else "ok",
                       summary=run_progress.trial_note(study_name, t["number"], t["state"], value))
        progress.line(progress.count.at_trial(phase, t["number"] + 1 - failed), progress.count.total,
                      f"{study_name} trial {t['number']}", t["state"], time.monotonic() - t0, value)

    with faults.observe(deft_loop.record_retries(str(R.root), stages.RUN, progress)):
        study.work(cfg, backend, on_trial=show)
    return study.write_best(cfg)


def _render_report(R: Results, progress: deft_loop.Progress) -> str | None:
    try:
        deft_loop.run_command(["render_report.py", "--results-dir", str(R.root)])
        return str(R.report)
    except ModuleNotFoundError:
        return None
    except UserError as exc:
        progress.note(f"warning: report not rendered: {exc}")
        return None


def run(given: Options, R: Results, *, quiet: bool = False, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole job under the folder's run lock (a second start is refused at once, naming this one)."""
    progress = deft_loop.Progress(quiet=quiet)
    with run_lock.hold(R.root, kind="run") as took_over:
        if took_over:
            progress.note(f"note: {took_over}")
            deft_state.log(R.root, label=stages.RUN, stage="note", status="ok", summary=took_over)
        return _run_locked(given, R, progress, budget)


def _run_locked(given: Options, R: Results, progress: deft_loop.Progress,
                budget: dict[str, Any] | None) -> dict[str, Any]:
    ps = pipeline_state.load(R)  # refuses a hand-edited pipeline_state.json ...
    if deft_state.started(R.root):
        deft_state.load(R.root)       # ... and deft_state.json, before any work
    if ps is None:
        ps = pipeline_state.new(asdict(given))
        if budget:
            ps["budget"] = budget  # what the time limit became, as confirmed
        pipeline_state.save(R, ps, f"pipeline started: phases {given.phases}, backend {given.backend}")
    elif ps["options"] != asdict(given):
        resume_changes(R, ps, given, progress)
    opts = effective(given, ps.get("budget"))
    progress.count = run_progress.RunCount(max_iterations=opts.max_iterations, phases=opts.phases, trials=opts.trials)
    progress.note(f"progress counts {progress.count.units()}")
    _same_kpi_set(R, ps, opts)
    if ps["status"] == "failed":  # the cause was fixed and the same command rerun: retry where it stopped
        progress.note(f"resuming after a hard stop: {ps.get('failure')}")
        ps["status"] = "in_progress"
        pipeline_state.save(R, ps, "resuming after a hard stop")
    ws = Workspace.at(opts.workspace)
    phases = PHASES[opts.phases]

    def mark(phase: str, **info: Any) -> None:
        if phase not in ps["done"]:
            ps["done"].append(phase)
        ps.update(info)
        pipeline_state.save(R, ps, f"{phase} done")

    try:
        if "automl1" in phases and "automl1" not in ps["done"]:
            progress.note(f"== Phase 1: AutoML ({opts.algorithm}, {opts.trials} trials)")
            rec = _search(opts, R, "automl1", ws.baseline_spec, str(ws.training_csv), str(ws.validation_csv),
                          space=search_space.default_for_backend("local" if opts.backend == "slurm" else opts.backend),
                          warm=None, progress=progress)
            mark("automl1", phase1={"best_trial": rec["best"]["trial"], "val_far_pct": rec["best"]["score"],
                                    "objective": rec["best"].get("objective"),
                                    "runner_up": rec.get("runner_up"), "tie": ties.tie_text(rec.get("ties"))})
        if "deft" in phases and "deft" not in ps["done"]:
            progress.note(f"== Phase 2: DEFT loop (max {opts.max_iterations} iterations, {opts.kpi_target})")
            if "automl1" in phases:
                seed = handoff.seed_baseline(R.automl("phase1") / "best_rec.json", R.root, ws.root,
                                             None if R.state.exists() else _init_config(opts), opts.kpi_target)
                if seed["seeded"]:
                    progress.stage(deft_state.load(R.root), stages.Step("baseline", "train"), "seeded", 0.0,
                                   f"Phase 1 trial {seed['trial']} is the baseline (no retraining)")
            else:
                deft_state.init(R.root, kpi_target=opts.kpi_target, config=_init_config(opts))
            deft_loop.run_deft(str(R.root), progress, after_step=lambda st, step: _after(R, st, step, progress))
            mark("deft")
        if "automl3" in phases and "automl3" not in ps["done"]:
            if "final_automl" in deft_state.load(R.root)["iterations"]:
                # registered before a kill: DEFT's state now waits for final_automl's evaluate, not a warm start
                inputs = json.loads((R.automl("phase3") / "warm_start.json").read_text())
                rec = json.loads((R.automl("phase3") / "best_rec.json").read_text())
            else:
                inputs = handoff.warm_start_inputs(R.root)
                progress.note(f"== Phase 3: AutoML warm-started from {inputs['best_iteration']} "
                              f"({opts.trials} trials, architecture pinned, narrowed learning rate)")
                rec = _search(opts, R, "automl3", Path(inputs["spec"]), inputs["train_csv"], inputs["val_csv"],
                              space=search_space.load(inputs["search_space"]), warm=inputs["checkpoint"],
                              progress=progress)
                reg = handoff.register_phase3(R.root, R.automl("phase3") / "best_rec.json")
                progress.stage(deft_state.load(R.root), stages.Step("final_automl", "train"), "registered", 0.0,
                               f"Phase 3 trial {reg['trial']} is the final_automl candidate")
            deft_loop.run_deft(str(R.root), progress)  # final_automl evaluate, then finalize again
            mark("automl3", phase3={"best_trial": rec["best"]["trial"], "val_far_pct": rec["best"]["score"],
                                    "warm_start_from": inputs["best_iteration"], "tie": ties.tie_text(rec.get("ties"))})
    except HardStop as exc:
        ps["status"] = "failed"
        ps["failure"] = str(exc)
        try:
            pipeline_state.save(R, ps, f"hard stop: {exc}", status="error")
        except (OSError, UserError):
            pass  # a full disk: the stop is reported below; the saved state still resumes
        _render_report(R, progress)
        raise
    ps["status"] = "complete"
    pipeline_state.save(R, ps, "pipeline complete")
    report = _render_report(R, progress)
    return summarize(R, ps, report)


def _same_kpi_set(R: Results, ps: dict[str, Any], opts: Options) -> None:
    """The KPI set's digest, recorded until the DEFT loop starts; after that a changed set (edit_kpi_set.py)
    is refused: every evaluation and RCA so far is on the old set and steered the loop by it."""
    import hashlib

    from tao_aoi.analysis import pinning

    kpi = Workspace.at(opts.workspace).kpi_csv
    if not kpi.is_file():
        return
    digest = hashlib.sha256(kpi.read_bytes()).hexdigest()
    if ps.get("kpi_sha256") == digest:
        return
    if ps.get("kpi_sha256") and deft_state.started(R.root):
        new = str(R.root.with_name(R.root.name + "_kpi_edited"))
        raise UserError(f"the KPI set {kpi} changed since this run's DEFT loop started (an edit: see "
                        f"{kpi.with_name(kpi.stem + '.edits.jsonl')}); its evaluations are on the old set: rerun on "
                        f"the corrected set in a new folder: {pinning.rerun_command(ps['options'], new)}")
    ps["kpi_sha256"] = digest
    pipeline_state.save(R, ps, f"KPI set {kpi.name} sha256 {digest[:12]}")


def _refuse_fixed_changes(R: Results, ps: dict[str, Any], opts: Options) -> list[str]:
    """The options that differ from the recorded run; refuses any that may not change on a resume."""
    new = asdict(opts)
    diff = [k for k in new if ps["options"].get(k) != new[k]]
    fixed = [k for k in diff if k not in ADJUSTABLE]
    if fixed:
        raise UserError(f"{R.pipeline_state} was started with other options ({', '.join(fixed)}); rerun with the same "
                        f"arguments (only {', '.join('--' + k.replace('_', '-') for k in ADJUSTABLE)} may change) "
                        f"or use a new --results-dir")
    return diff


def resume_changes(R: Results, ps: dict[str, Any], opts: Options, progress: deft_loop.Progress) -> None:
    """Accept changed options of iterations not started yet (the documented fix for a pool that ran
    short: a lower --num-sdg); refuse any other change. Recorded in pipeline_state.json and, through
    the writer, in the DEFT state with the iteration each change applies from."""
    new = asdict(opts)
    diff = _refuse_fixed_changes(R, ps, opts)
    old_eff = asdict(effective(Options(**ps["options"]), ps.get("budget")))
    new_eff = asdict(effective(opts, ps.get("budget")))
    if "deft" in ps["done"] or (R.state.exists() and stages.expected_next(deft_state.load(R.root)) is None):
        raise UserError(f"the DEFT loop in {R.root} is finished; {', '.join(diff)} can no longer change: rerun "
                        f"with the options it was started with, or use a new --results-dir")
    changes = {k: new_eff[k] for k in diff if new_eff[k] != old_eff[k]}
    applies = {}
    if R.state.exists() and changes:
        st, event = deft_state.reconfigure(R.root, changes)
        if event is not None:
            applies = {k: c["applies_from"] for k, c in st["config_changes"][-1]["changes"].items()}
    entry = {"changes": {k: {"from": old_eff[k], "to": new_eff[k], "applies_from": applies.get(k, "iter1")}
                         for k in changes},
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ps.setdefault("option_changes", []).append(entry)
    ps["options"] = new
    what = ", ".join(f"{k} {c['from']} -> {c['to']} (from {c['applies_from']})" for k, c in entry["changes"].items())
    pipeline_state.save(R, ps, f"resuming with changed options: {what or 'none that change the run'}")
    progress.note(f"resuming with changed options: {what}")


def _after(R: Results, st: dict, step, progress: deft_loop.Progress) -> None:
    """Render the report after each evaluate (the reporter's cadence: every iteration and the end)."""
    if step.stage == "evaluate":
        _render_report(R, progress)


# ------------------------------------------------------------------ summary


def summarize(R: Results, ps: dict[str, Any], report: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"results_dir": str(R.root), "report": report, "phase1": ps.get("phase1"),
                           "phase3": ps.get("phase3"), "trajectory": [], "deliverable": None}
    if R.state.exists():
        st = deft_state.load(R.root)
        out["trajectory"] = deft_state.trajectory(st)
        out["kpi_target"] = st["kpi_target"]
        out["deft_status"] = st["status"]
        out["stop_reason"] = st.get("stop_reason")
    if R.best_model.exists():
        bm = json.loads(R.best_model.read_text())
        out["deliverable"] = {"iteration": bm["iteration"], "kpi_value": bm["metric_result"]["value"],
                              "passed": bm["passed"], "checkpoint": bm["checkpoint"], "threshold": bm["threshold"],
                              "note": bm.get("phase3_note")}
        out["shipping"] = {k: bm.get(k) for k in ("deployment", "calibrated", "holdout")}
        out["shipping"]["kpi"] = {k: bm["metric_result"].get(k) for k in ("far_pct", "recall_pct", "far_ci95_pct")}
        out.update(_held_by(R, ps, bm))
    return out


def shipping_lines(s: dict[str, Any]) -> list[str]:
    """The three figures of the deliverable and the threshold that ships (with a small-margin warning)."""
    sh = s.get("shipping")
    if not sh:
        return []
    k, cal, ho, dep = sh.get("kpi") or {}, sh.get("calibrated") or {}, sh.get("holdout"), sh.get("deployment") or {}
    lines = [f"  Contract FAR {fmt.num(k.get('far_pct'))}% at recall {fmt.num(k.get('recall_pct'))}% on the KPI set, "
             f"which also chose the deliverable (optimistic)"]
    if cal.get("kpi"):
        lines.append(f"  Calibrated (threshold from the validation set): FAR {fmt.num(cal['kpi'].get('far_pct'))}% at "
                     f"recall {fmt.num(cal['kpi'].get('recall_pct'))}% on the KPI set")
    if ho:
        lines.append(f"  Holdout ({ho['rows']} sealed rows, shipped threshold): FAR {fmt.num(ho['far_pct'])}% at recall "
                     f"{fmt.num(ho['recall_pct'])}%: what to expect on the line")
    else:
        lines.append("  No holdout: the KPI figure was measured on the set that chose the deliverable "
                     "(run_pipeline.py --holdout-csv CSV measures what to expect on the line)")
    if dep.get("threshold") is not None:
        m = dep.get("margin") or {}
        lines.append(f"  Ships threshold {fmt.exact(dep['threshold'])} (margin {fmt.num(m.get('to_defect'))} to the "
                     f"nearest defect, {fmt.num(m.get('to_pass'))} to the nearest PASS)")
    return lines


def margin_warning_line(s: dict[str, Any]) -> str | None:
    """The summary's last line when the shipped threshold has a small margin (None otherwise)."""
    from tao_aoi.analysis import deployment

    warning = deployment.margin_warning((s.get("shipping") or {}).get("deployment"))
    return f"warning: {warning}" if warning else None


def _held_by(R: Results, ps: dict[str, Any], bm: dict[str, Any]) -> dict[str, Any]:
    """best_model.json's holding samples and the rerun line for after an edit of the KPI set."""
    from tao_aoi.analysis import pinning

    held = bm.get("limiting")
    if not held:
        return {}
    return {"held_by": held, "rerun": pinning.rerun_command(ps["options"], str(R.root.with_name(R.root.name + "_kpi_edited")))}


def held_by_lines(s: dict[str, Any]) -> list[str]:
    """What leads the summary when a few samples hold the deliverable's KPI and it misses the target
    (when it is met there is nothing to relabel or drop)."""
    from tao_aoi.analysis import pinning

    held = s.get("held_by")
    if not held or (s.get("deliverable") or {}).get("passed"):
        return []
    lines = [f"{held['headline']} ({s['deliverable']['iteration']}, the deliverable):"]
    for smp in held["samples_holding"]:
        lines += ["  " + ln for ln in pinning.sample_lines(smp, held.get("kpi_csv"),
                                                          str(Path(s["results_dir"]) / smp["image"]))]
    lines.append("  " + pinning.rerun_note(s.get("rerun")))
    return lines


def render_summary(s: dict[str, Any]) -> str:
    lead = held_by_lines(s)
    lines = ["", *lead, *([""] if lead else []), "Trajectory"]
    if s.get("phase1"):
        p1, r = s["phase1"], s["phase1"].get("runner_up")
        # ranked by the objective (val FAR over recall 90-100%): show it, or a runner-up with a lower plain
        # FAR@100% reads as a mistake
        obj = "" if p1.get("objective") is None else f"val FAR@90-100%R {fmt.num(p1['objective'])}%, "
        runner = ""
        if r:
            r_obj = "" if r.get("objective") is None else f" {fmt.num(r['objective'])}% /"
            runner = f"; runner-up trial {r['trial']}{r_obj} {fmt.num(r['score'])}%"
        lines.append(f"  Phase 1 best           {obj}val FAR@100%R {fmt.num(p1['val_far_pct'])}%  (trial "
                     f"{p1['best_trial']}{runner})")
        if p1.get("tie"):
            lines.append(f"    {p1['tie']}")
    for t in s["trajectory"]:
        name = {"baseline": "DEFT baseline", "final_automl": "Phase 3 best"}.get(t["iteration"], f"DEFT {t['iteration']}")
        mark = "met" if t["passed"] else "not met"
        lines.append(f"  {name:<22} KPI {fmt.num(t['kpi_value'])}%  ({mark})")
    d = s.get("deliverable")
    if d:
        lines.append(f"  Deliverable: {d['iteration']}  KPI {fmt.num(d['kpi_value'])}%  "
                     f"({'meets' if d['passed'] else 'does not meet'} {s.get('kpi_target')})")
        if d.get("note"):
            lines.append(f"  {d['note']}")
        lines += shipping_lines(s)
    lines.append(f"Results: {s['results_dir']}")
    lines.append(f"Report:  {s['report'] or '(not rendered)'}")
    warning = margin_warning_line(s)
    if warning:
        lines.append(warning)
    return "\n".join(lines)
