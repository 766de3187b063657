"""Print the next DEFT stage and the exact commands for it, from the run's state alone; --run runs them.

Output: the iteration, the stage, the commands to run (in order), and the commit that records
them; an rca stage adds the review (fill RCA_Report.md's TODO(agent) items, then the check that
records its verdicts). A failed run prints the failed stage again as a retry, with the reason; a
folder a run holds says so (that run runs the stages itself). Once the run is complete it prints
the trajectory (every evaluated candidate's KPI value) and the deliverable. In a three-phase run
(run_pipeline.py) it also says which phase the run is in, with the trials finished in an AutoML
phase and one step count for the whole run (exit 0 during Phase 1 and 3 too).

--run runs the stage it would print, commits it, and goes on until the run needs you: a review
(it lists the sheets to look at; call it again once the report is filled), a hard stop (the
reason; fix it and call again to retry) or the end. It prints a line per stage and where it
stopped, with the exact next call; it holds the folder's run lock (a folder another run holds is
refused, naming it).

--json gives {iteration, stage, status, retry, commands: [...], review, commit: "...", argv: {...},
trajectory: [{iteration, kpi_value, passed, source}], kpi_target, held_by, phase, progress} (the
trajectory so far while it runs); with --run {ran: [...], stopped, step, reason, review,
next_call, ...}. Exit 2 if deft_state.json or pipeline_state.json disagrees with the log (edited
by hand: repair_state.py rebuilds them), and after --run on a hard stop.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.layout import Results
from tao_aoi.pipeline import run_progress
from tao_aoi.state import deft_state, event_log, pipeline_state, run_lock, stage_plan, stages


def _phase(results_dir: str, events: list, st: dict | None) -> dict | None:
    ps = pipeline_state.load(Results.at(results_dir), events)
    return None if ps is None else run_progress.pipeline_phase(results_dir, ps, events, st)


def next_step(results_dir: str) -> dict:
    R = Results.at(results_dir)
    events = event_log.read_events(R.log)
    started = any(e["kind"] == "commit" for e in events)
    st = deft_state.load(R.root, events) if started else None
    phase = _phase(str(R.root), events, st)
    if st is None and phase is None:
        deft_state.load(R.root, events)  # neither a DEFT run nor a three-phase run: its message says what to do
    owner = run_lock.holder(results_dir)
    out: dict = {"status": st["status"] if st else phase["status"], "iteration": None, "stage": None, "retry": False,
                 "commands": [], "review": None, "commit": None, "argv": None,
                 "trajectory": deft_state.trajectory(st) if st else [],
                 "kpi_target": st["kpi_target"] if st else None, "phase": phase,
                 "held_by": {k: v for k, v in owner.items() if k != "token"} if owner else None}
    count = run_progress.RunCount.for_state(st) if st and phase is None else None
    out["progress"] = ({"step": phase["step"], "steps": phase["steps"], "units": phase["units"]} if phase else
                       {"step": count.at_state(st), "steps": count.total, "units": count.units()})
    step = stages.expected_next(st) if st else None
    if step is None:
        if st:
            out["best_iteration"] = st.get("best_iteration")
            out["stop_reason"] = st.get("stop_reason")
        return out
    p = stage_plan.plan(st, step, results_dir, agent=True)
    failure = st.get("failure")
    review = p.get("review")
    if review is not None:
        from tao_aoi.analysis import spot_check

        review = {"report": review["report"], "check": stage_plan.render(review["check"]),
                  "state": spot_check.review_state(review)}
    out.update(
        iteration=step.iter,
        stage=step.stage,
        retry=st["status"] == "failed",
        failure=failure,
        commands=[stage_plan.render(a) for a in p["run"]],
        review=review,
        commit=stage_plan.render(p["commit"]),
        argv=p,
    )
    return out


def _print_phase(out: dict) -> None:
    ph, pr = out["phase"], out["progress"]
    if ph is None:
        print(f"progress: step {pr['step']}/{pr['steps']} ({pr['units']})")
        return
    trials = ""
    if ph["trials"]:
        t = ph["trials"]
        states = ", ".join(f"{n} {s}" for s, n in t["by_state"].items())
        trials = f": {t['finished']} of {t['of']} trials finished" + (f" ({states})" if states else "")
    kind = "three-phase run" if ph["phases"] == "all" else f"run_pipeline.py run (--phases {ph['phases']})"
    print(f"{kind}, {ph['title']}{trials}; step {pr['step']}/{pr['steps']} of the run ({pr['units']})")
    held = out["held_by"]
    if held and held.get("kind") == "run":
        print(f"  {run_lock.describe(held)} is running it and runs every phase and stage itself: watch it (this "
              f"command, the report); do not run stages by hand")
    elif ph["status"] == "failed":
        print(f"  it stopped: {ph['failure']}")
        print(f"  after fixing the cause, resume it: {stage_plan.render(ph['resume'])}")
    elif ph["name"] is not None:
        print(f"  no process runs it now (killed?): resume it with {stage_plan.render(ph['resume'])}")


@cli.command("next_stage.py", __doc__, next_step="run the printed commands in order, then the printed "
             "commit_stage.py line (with --status error --summary '<what failed>' if one fails); or let "
             "next_stage.py --run run and commit them until the run needs you")
@cli.option("--results-dir")
@click.option("--run", "run_stages", is_flag=True,
              help="run the stage and commit it, and go on until the run needs you (a review, a hard stop) or is "
                   "complete")
@cli.option("--json", help="print the step as JSON")
def command(args) -> int:
    if args.run_stages:
        from tao_aoi.pipeline import agent_run

        done = agent_run.run(args.results_dir, quiet=args.json)
        if args.json:
            cli.emit_json(done)
        else:
            print(agent_run.render(done))
        if done["stopped"] == "hard stop":
            print(f"error: {' '.join(done['reason'].split())}", file=sys.stderr)
            return 2
        return 0
    out = next_step(args.results_dir)
    if args.json:
        cli.emit_json(out)
        return 0
    if out["phase"] is not None or out["stage"] is not None:
        _print_phase(out)
    if out["stage"] is None:
        if not out["trajectory"]:
            return 0
        if out["status"] == "complete":
            print(f"run complete: best iteration {out.get('best_iteration')} (stop reason: {out.get('stop_reason')})")
        print(f"trajectory ({out['kpi_target']}):")
        for t in out["trajectory"]:
            value = "n/a" if t["kpi_value"] is None else f"{t['kpi_value']:.4g}"
            print(f"  {t['iteration']:<14} {value:>10}  {'met' if t['passed'] else 'not met'}"
                  + (f"  ({t['source']})" if t["source"] else ""))
        return 0
    if out["held_by"] and out["held_by"].get("kind") == "run" and out["phase"] is None:
        print(f"note: {run_lock.describe(out['held_by'])} is running this folder and runs the stages itself; "
              f"watch it (this command, the report) rather than running them by hand")
    head = f"next: {out['iteration']}/{out['stage']}"
    if out["retry"]:
        f = out["failure"]
        head += f"  (RETRY - the run failed here: {f['summary']}; fix the cause first)"
    print(head)
    for c in out["commands"]:
        print(f"  run:    {c}")
    review = out["review"]
    if review is not None:
        state = review["state"]
        if state is None:
            print(f"  review: look at the sheets RCA_Report.md lists as TODO(agent) and fill every TODO(agent) of "
                  f"{review['report']} (skill tao-analyze-gaps-visual-changenet)")
        else:
            print(f"  review: {len(state['open'])} open items in {review['report']}; sheets to look at: "
                  + (", ".join(state["to_look_at"]) or "none"))
        print(f"  run:    {review['check']}")
    print(f"  commit: {out['commit']}")
    print("  (on failure: rerun the commit with --status error --summary '<what failed>'; or let "
          "next_stage.py --run run and commit this stage and those after it)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
