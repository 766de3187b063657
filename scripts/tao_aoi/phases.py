"""The three-phase job: Phase 1 AutoML -> Phase 2 DEFT -> Phase 3 AutoML, resumable as a whole.

pipeline_state.json (the bridge's own state, written atomically) records the options and which
phase is done; each phase is itself resumable (the Optuna study, the DEFT state), so a rerun after
a kill at any moment continues in the right phase and ends where an uninterrupted run would.
Nothing here asks questions after the single approval; only hard stops end the run early.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tao_aoi import atomic, automl, cli, handoff, metric_contract, pipeline, search_space, state
from tao_aoi.backends import get_backend
from tao_aoi.commands import init_deft_state
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import Results, Workspace
from tao_aoi.report import fmt

PHASE_SETS = ("all", "automl", "deft")
ALGORITHMS = automl.ALGORITHMS
PHASES = {"all": ("automl1", "deft", "automl3"), "automl": ("automl1",), "deft": ("deft",)}


@dataclass(frozen=True)
class Options:
    workspace: str
    backend: str
    phases: str
    max_iterations: int
    kpi_target: str
    trials: int
    algorithm: str
    num_sdg: int
    top_k_per_target: int
    min_similarity: float
    seed: int

    @classmethod
    def from_args(cls, args, ws: Path) -> "Options":
        # The contract's canonical text: "FAR below 1% at 100% recall" resumes a "FAR < 1% at Recall=100%" run.
        kpi = metric_contract.render(metric_contract.parse_kpi_target(args.kpi_target))
        return cls(str(ws), args.backend, args.phases, args.max_iterations, kpi, args.trials,
                   args.algorithm, args.num_sdg, args.top_k_per_target, args.min_similarity, args.seed)


# ------------------------------------------------------------------ pipeline_state.json


def load_pipeline_state(R: Results) -> dict[str, Any] | None:
    try:
        return json.loads(R.pipeline_state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise UserError(f"{R.pipeline_state} is not valid JSON ({exc.msg}); it is written only by run_pipeline.py") from None


def save_pipeline_state(R: Results, ps: dict[str, Any]) -> None:
    ps["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic.write_json(R.pipeline_state, ps)


def results_dir_for(opts: Options, given: str | None) -> Results:
    if given:
        return Results.at(given)
    runs = sorted(Workspace.at(opts.workspace).results.glob("run_*/pipeline_state.json"), reverse=True)
    for p in runs:
        try:
            ps = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if ps.get("options") == asdict(opts) and ps.get("status") != "complete":  # failed: rerun = retry
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
        lines.append(f"  Phase 2  DEFT up to {opts.max_iterations} iterations until {opts.kpi_target!r} on the KPI set "
                     f"(num_sdg {opts.num_sdg}, top-k {opts.top_k_per_target}, min similarity {opts.min_similarity:g})")
    if "automl3" in ph:
        lines.append(f"  Phase 3  AutoML {opts.trials} trials on DEFT's best training set, warm-started from its "
                     f"checkpoint; the deliverable is the best candidate by the contract")
    lines.append(f"  backend {opts.backend}; cost ~ {2 * opts.trials if 'automl3' in ph else opts.trials} AutoML "
                 f"trainings + {opts.max_iterations} DEFT iterations")
    return "\n".join(lines)


def confirm(opts: Options, R: Results) -> bool:
    print(plan_text(opts, R))
    if not sys.stdin.isatty():
        print("(no terminal to confirm on: pass --yes to approve)")
        return False
    return input("Proceed? [yes/no] ").strip().lower() in ("y", "yes", "go")


# ------------------------------------------------------------------ phases


def _init_config(opts: Options, R: Results) -> dict[str, Any]:
    args = cli.parse(init_deft_state.command, [
        "--results-dir", str(R.root), "--workspace", opts.workspace, "--max-iterations", str(opts.max_iterations),
        "--kpi-target", opts.kpi_target, "--backend", opts.backend, "--num-sdg", str(opts.num_sdg),
        "--top-k-per-target", str(opts.top_k_per_target), "--min-similarity", str(opts.min_similarity)])
    return init_deft_state.config_from_args(args)


def _search(opts: Options, out: Path, spec: Path, train_csv: str, val_csv: str, *, space: dict,
            warm: str | None, progress: pipeline.Progress) -> dict[str, Any]:
    ws = Workspace.at(opts.workspace)
    cfg = automl.SearchConfig(spec=spec, train_csv=Path(train_csv), val_csv=Path(val_csv), images_root=ws.images,
                              out_dir=out, space=space, algorithm=opts.algorithm, n_trials=opts.trials,
                              seed=opts.seed, warm_start=Path(warm) if warm else None, start_params=automl.start_point(space, spec))
    backend = get_backend("local" if opts.backend == "slurm" else opts.backend)
    t0 = time.monotonic()

    def show(t: dict) -> None:
        done = t["number"] + 1
        value = "" if t["value"] is None else f"val FAR {fmt.num(t['value'])}%"
        progress.line(done, opts.trials, f"trial {t['number']}", t["state"][:5], time.monotonic() - t0, value)

    automl.work(cfg, backend, on_trial=show)
    return automl.write_best(cfg)


def _render_report(R: Results, progress: pipeline.Progress) -> str | None:
    try:
        pipeline.run_command(["render_report.py", "--results-dir", str(R.root)])
        return str(R.report)
    except ModuleNotFoundError:
        return None
    except UserError as exc:
        progress.note(f"warning: report not rendered: {exc}")
        return None


def run(opts: Options, R: Results, *, quiet: bool = False) -> dict[str, Any]:
    progress = pipeline.Progress(quiet=quiet)
    R.root.mkdir(parents=True, exist_ok=True)
    ps = load_pipeline_state(R)
    if ps is None:
        ps = {"schema_version": 1, "options": asdict(opts), "status": "in_progress", "done": [], "phase1": None,
              "phase3": None}
        save_pipeline_state(R, ps)
    elif ps["options"] != asdict(opts):
        diff = [k for k in ps["options"] if ps["options"][k] != asdict(opts).get(k)]
        raise UserError(f"{R.pipeline_state} was started with other options ({', '.join(diff)}); rerun with the same "
                        f"arguments or use a new --results-dir")
    elif ps["status"] == "failed":  # the cause was fixed and the same command rerun: retry where it stopped
        progress.note(f"resuming after a hard stop: {ps.get('failure')}")
        ps["status"] = "in_progress"
        save_pipeline_state(R, ps)
    ws = Workspace.at(opts.workspace)
    phases = PHASES[opts.phases]

    def mark(phase: str, **info: Any) -> None:
        if phase not in ps["done"]:
            ps["done"].append(phase)
        ps.update(info)
        save_pipeline_state(R, ps)

    try:
        if "automl1" in phases and "automl1" not in ps["done"]:
            progress.note(f"== Phase 1: AutoML ({opts.algorithm}, {opts.trials} trials)")
            rec = _search(opts, R.automl("phase1"), ws.baseline_spec, str(ws.training_csv), str(ws.validation_csv),
                          space=search_space.default_for_backend("local" if opts.backend == "slurm" else opts.backend),
                          warm=None, progress=progress)
            mark("automl1", phase1={"best_trial": rec["best"]["trial"], "val_far_pct": rec["best"]["score"]})
        if "deft" in phases and "deft" not in ps["done"]:
            progress.note(f"== Phase 2: DEFT loop (max {opts.max_iterations} iterations, {opts.kpi_target})")
            if "automl1" in phases:
                handoff.seed_baseline(R.automl("phase1") / "best_rec.json", R.root, ws.root,
                                      None if R.state.exists() else _init_config(opts, R), opts.kpi_target)
            else:
                state.init(R.root, kpi_target=opts.kpi_target, config=_init_config(opts, R))
            pipeline.run_deft(str(R.root), progress, after_step=lambda st, step: _after(R, st, step, progress))
            mark("deft")
        if "automl3" in phases and "automl3" not in ps["done"]:
            inputs = handoff.warm_start_inputs(R.root)
            progress.note(f"== Phase 3: AutoML warm-started from {inputs['best_iteration']} "
                          f"({opts.trials} trials, architecture pinned, narrowed learning rate)")
            rec = _search(opts, R.automl("phase3"), Path(inputs["spec"]), inputs["train_csv"], inputs["val_csv"],
                          space=search_space.load(inputs["search_space"]), warm=inputs["checkpoint"],
                          progress=progress)
            handoff.register_phase3(R.root, R.automl("phase3") / "best_rec.json")
            pipeline.run_deft(str(R.root), progress)  # final_automl evaluate, then finalize again
            mark("automl3", phase3={"best_trial": rec["best"]["trial"], "val_far_pct": rec["best"]["score"],
                                    "warm_start_from": inputs["best_iteration"]})
    except HardStop as exc:
        ps["status"] = "failed"
        ps["failure"] = str(exc)
        save_pipeline_state(R, ps)
        _render_report(R, progress)
        raise
    ps["status"] = "complete"
    save_pipeline_state(R, ps)
    report = _render_report(R, progress)
    return summarize(R, ps, report)


def _after(R: Results, st: dict, step, progress: pipeline.Progress) -> None:
    """Render the report after each evaluate (the reporter's cadence: every iteration and the end)."""
    if step.stage == "evaluate":
        _render_report(R, progress)


# ------------------------------------------------------------------ summary


def summarize(R: Results, ps: dict[str, Any], report: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"results_dir": str(R.root), "report": report, "phase1": ps.get("phase1"),
                           "phase3": ps.get("phase3"), "trajectory": [], "deliverable": None}
    if R.state.exists():
        st = state.load(R.root)
        for label, res in state.candidates(st):
            out["trajectory"].append({"iteration": label, "kpi_value": (res or {}).get("value"),
                                      "passed": (res or {}).get("passed"),
                                      "source": st["iterations"][label].get("source")})
        out["kpi_target"] = st["kpi_target"]
        out["deft_status"] = st["status"]
        out["stop_reason"] = st.get("stop_reason")
    if R.best_model.exists():
        bm = json.loads(R.best_model.read_text())
        out["deliverable"] = {"iteration": bm["iteration"], "kpi_value": bm["metric_result"]["value"],
                              "passed": bm["passed"], "checkpoint": bm["checkpoint"], "threshold": bm["threshold"],
                              "note": bm.get("phase3_note")}
    return out


def render_summary(s: dict[str, Any]) -> str:
    lines = ["", "Trajectory"]
    if s.get("phase1"):
        lines.append(f"  Phase 1 best           val FAR@100%R {fmt.num(s['phase1']['val_far_pct'])}%  (trial "
                     f"{s['phase1']['best_trial']})")
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
    lines.append(f"Results: {s['results_dir']}")
    lines.append(f"Report:  {s['report'] or '(not rendered)'}")
    return "\n".join(lines)
