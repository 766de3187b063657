"""Print the next DEFT stage and the exact commands for it, from deft_state.json alone.

Output: the iteration, the stage, the commands to run (in order), and the commit that records
them. A failed run prints the failed stage again as a retry, with the reason; a folder a run holds
says so (that run runs the stages itself). Once the run is complete it prints the trajectory
(every evaluated candidate's KPI value) and the deliverable. --json gives {iteration, stage, status,
retry, commands: [...], commit: "...", argv: {...}, trajectory: [{iteration, kpi_value, passed,
source}], kpi_target, held_by} (the trajectory so far while it runs). Exit 2 if deft_state.json or
pipeline_state.json disagrees with the log (edited by hand: repair_state.py rebuilds them).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

from tao_aoi import cli
from tao_aoi.state import deft_state, run_lock, stage_plan, stages


def next_step(results_dir: str) -> dict:
    st = deft_state.load(results_dir)
    step = stages.expected_next(st)
    owner = run_lock.holder(results_dir)
    out: dict = {"status": st["status"], "iteration": None, "stage": None, "retry": False,
                 "commands": [], "commit": None, "argv": None, "trajectory": deft_state.trajectory(st),
                 "kpi_target": st["kpi_target"],
                 "held_by": {k: v for k, v in owner.items() if k != "token"} if owner else None}
    if step is None:
        out["best_iteration"] = st.get("best_iteration")
        out["stop_reason"] = st.get("stop_reason")
        return out
    p = stage_plan.plan(st, step, results_dir, agent=True)
    failure = st.get("failure")
    out.update(
        iteration=step.iter,
        stage=step.stage,
        retry=st["status"] == "failed",
        failure=failure,
        commands=[stage_plan.render(a) for a in p["run"]],
        commit=stage_plan.render(p["commit"]),
        argv=p,
    )
    return out


@cli.command("next_stage.py", __doc__, next_step="run the printed commands in order, then the printed "
             "commit_stage.py line (with --status error --summary '<what failed>' if one fails)")
@cli.option("--results-dir")
@cli.option("--json", help="print the step as JSON")
def command(args) -> int:
    out = next_step(args.results_dir)
    if args.json:
        cli.emit_json(out)
        return 0
    if out["stage"] is None:
        print(f"run complete: best iteration {out.get('best_iteration')} (stop reason: {out.get('stop_reason')})")
        print(f"trajectory ({out['kpi_target']}):")
        for t in out["trajectory"]:
            value = "n/a" if t["kpi_value"] is None else f"{t['kpi_value']:.4g}"
            print(f"  {t['iteration']:<14} {value:>10}  {'met' if t['passed'] else 'not met'}"
                  + (f"  ({t['source']})" if t["source"] else ""))
        return 0
    if out["held_by"] and out["held_by"].get("kind") == "run":
        print(f"note: {run_lock.describe(out['held_by'])} is running this folder and runs the stages itself; "
              f"watch it (this command, the report) rather than running them by hand")
    head = f"next: {out['iteration']}/{out['stage']}"
    if out["retry"]:
        f = out["failure"]
        head += f"  (RETRY - the run failed here: {f['summary']}; fix the cause first)"
    print(head)
    for c in out["commands"]:
        print(f"  run:    {c}")
    print(f"  commit: {out['commit']}")
    print("  (on failure: rerun the commit with --status error --summary '<what failed>')")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
