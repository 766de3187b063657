"""next_stage.py --run: run the stages an agent would, commit each, and stop where the run needs it.

The agent's path in a few calls: every stage runs the commands next_stage.py prints (stage_plan,
``agent=True``) in-process through the headless runner's run_step, and is committed by the same
single writer. It goes on until the run needs the agent and says why, with the exact next call:

- a review: an rca stage's report (``--agent-review``) has TODO(agent) items; the sheets to look at
  are listed (only samples no earlier review judged: spot_check.py). Called again with the report
  filled, it checks the report, records its verdicts in the run's ledger and commits the stage;
- a hard stop: the stage is committed as an error (as the headless runner does); fix the cause and
  call again to retry it;
- the end: the run is complete (the trajectory and the deliverable).

It holds the folder's run lock as a run (a second --run or run_pipeline.py is refused, naming it,
and it refuses a folder a run holds). It drives the DEFT loop only: Phase 1 and Phase 3 of a
three-phase run are run_pipeline.py's (it names the call that resumes them).
"""
from __future__ import annotations

import time
from typing import Any

from tao_aoi.analysis import spot_check
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.pipeline import deft_loop, run_progress
from tao_aoi.state import deft_state, event_log, pipeline_state, run_lock, stage_plan, stages


class _Recorder(deft_loop.Progress):
    """The runner's progress lines, also kept as the list of what this call did."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet=quiet)
        self.done: list[dict[str, Any]] = []

    def line(self, done: int, total: int, step: str, status: str, seconds: float, summary: str) -> None:
        self.done.append({"step": step, "status": status, "seconds": round(seconds, 3), "summary": summary,
                          "progress": f"{done}/{total}"})
        super().line(done, total, step, status, seconds, summary)


def again(results_dir: str) -> str:
    """The exact call that goes on from here."""
    return stage_plan.render(["next_stage.py", "--results-dir", str(results_dir), "--run"])


def _pipeline_count(R: Results, events: list[dict[str, Any]], st: dict[str, Any] | None) -> run_progress.RunCount | None:
    """The count of the run_pipeline.py run the folder holds, if any; refused in its AutoML phases
    (run_pipeline.py's, not DEFT stages)."""
    ps = pipeline_state.load(R, events)
    if ps is None:
        return None
    where = run_progress.pipeline_phase(str(R.root), ps, events, st)
    if where["name"] in run_progress.STUDY and (st is None or stages.expected_next(st) is None):
        raise UserError(f"{R.root} is in {where['title']} of a three-phase run; next_stage.py --run drives DEFT stages "
                        f"only: resume the run with {stage_plan.render(where['resume'])}")
    return run_progress.count_for(ps, st)


def run(results_dir: str, *, quiet: bool = False) -> dict[str, Any]:
    """Run and commit stages until a review, a hard stop or the end; returns what was done and why it stopped."""
    R = Results.at(results_dir)
    root = str(R.root)
    progress = _Recorder(quiet)
    out: dict[str, Any] = {"results_dir": root, "ran": progress.done, "stopped": None, "step": None,
                           "reason": None, "next_call": None, "review": None}
    t0 = time.monotonic()
    with run_lock.hold(R.root, kind="run") as took_over:
        if took_over:
            deft_state.log(R.root, label=stages.RUN, stage="note", status="ok", summary=took_over)
        events = event_log.read_events(R.log)
        st = deft_state.load(R.root, events) if any(e["kind"] == "commit" for e in events) else None
        progress.count = _pipeline_count(R, events, st)
        if st is None:
            deft_state.load(R.root, events)  # no DEFT run here: its own message says how to create one
        deft_state.repair(R.root)
        try:
            while True:
                st = deft_state.load(R.root)
                step = stages.expected_next(st)
                out["step"] = None if step is None else str(step)
                if step is None:
                    out.update(stopped="complete", trajectory=deft_state.trajectory(st), kpi_target=st["kpi_target"],
                               best_iteration=st.get("best_iteration"), stop_reason=st.get("stop_reason"))
                    break
                if st["status"] == "failed":
                    f = st["failure"]
                    progress.note(f"retrying {f['iter']}/{f['stage']} (it failed before: {f['summary']})")
                plan = stage_plan.plan(st, step, root, agent=True)
                review = plan.get("review")
                if review is None:
                    deft_loop.run_step(root, st, step, progress, plan=plan)
                    continue
                state = spot_check.review_state(review)
                if state is None:  # run the analysis; the agent reviews it before the commit
                    deft_loop.run_step(root, st, step, progress, plan={"run": plan["run"], "commit": None})
                    state = spot_check.review_state(review)
                if state is None or state["open"]:
                    out.update(stopped="review", review=state, next_call=again(root),
                               reason=f"{step} needs your review of {review['report']}")
                    break
                deft_loop.run_step(root, st, step, progress, plan={"run": [review["check"]], "commit": plan["commit"]})
        except deft_loop.StageFailed as exc:
            out.update(stopped="hard stop", reason=str(exc), next_call=again(root))
    out["wall_sec"] = round(time.monotonic() - t0, 1)
    return out


def render(out: dict[str, Any]) -> str:
    """Where it stopped and why, with the exact next call (the stage lines were printed as they ran)."""
    ok = sum(r["status"] == "ok" for r in out["ran"])
    lines = [f"{ok} stage(s) committed in {out['wall_sec']} s." if ok else "no stage committed."]
    if out["stopped"] == "complete":
        lines.append(f"run complete: best iteration {out.get('best_iteration')} (stop reason: {out.get('stop_reason')})")
        lines.append(f"trajectory ({out['kpi_target']}):")
        lines += [f"  {t['iteration']:<14} {'n/a' if t['kpi_value'] is None else format(t['kpi_value'], '.4g'):>10}  "
                  f"{'met' if t['passed'] else 'not met'}" for t in out["trajectory"]]
        return "\n".join(lines)
    if out["stopped"] == "review":
        r = out["review"]
        look = r["to_look_at"]
        reused = f"; {r['reused']} verdicts reused from earlier reviews" if r["reused"] else ""
        lines.append(f"stopped at {out['step']}: it needs your review ({len(look)} of {r['sheets']} sheets to look "
                     f"at{reused}; {len(r['open'])} open items)")
        lines += [f"  look at: {p}" for p in look]
        lines.append(f"  fill:    every TODO(agent) of {r['report']} (a verdict and why per sheet listed, the "
                     f"judgement, the actions; references: skill tao-analyze-gaps-visual-changenet)")
    else:
        lines.append(f"stopped at {out['step']}: hard stop - {out['reason']}")
        lines.append("  fix:     the cause named above (skill tao-run-deft-aoi, references/hard-stops.md)")
    lines.append(f"  then:    {out['next_call']}")
    return "\n".join(lines)
