"""One progress count for the whole run, and where a run is while it goes.

A step is one AutoML trial or one committed DEFT stage; the headless runner's progress lines and
next_stage.py count the same steps, so "step 12/36" means one thing everywhere. The count is an
upper bound fixed at the start: Phase 1's trials, DEFT's stages (baseline train, evaluate, rca, 7
per iteration with no rca after the last one, finalize: 3 + 7 x max_iterations; a loop that meets
the KPI early jumps to the end of its part), Phase 3's trials and its three commits
(final_automl train as registered, its evaluate, the finalize again). Trials are counted from the
runner's one ``automl`` note per finished trial in the log. Pure Python: next_stage.py reads it.
"""
from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Iterable, Mapping

from tao_aoi import defaults
from tao_aoi.layout import iteration_number
from tao_aoi.state import stages

PHASES = {"all": ("automl1", "deft", "automl3"), "automl": ("automl1",), "deft": ("deft",)}
STUDY = {"automl1": "phase1", "automl3": "phase3"}  # the phase's study folder under <R>/automl/
NAMES = {"automl1": "Phase 1 AutoML", "deft": "Phase 2 DEFT", "automl3": "Phase 3 AutoML"}
UNITS = {"automl1": "Phase 1 trials", "deft": "DEFT stages", "automl3": "Phase 3 trials",
         "phase3_stages": "Phase 3 stages"}
PHASE3_STAGES = ("final_automl/train", "final_automl/evaluate", "run/finalize")
_TRIAL_NOTE = re.compile(r"^(phase[13]) trial (\d+) ([A-Z]+)")


def trial_note(study: str, number: int, state: str, detail: str = "") -> str:
    """The runner's log note for one finished trial (``trials_finished`` reads it back)."""
    return f"{study} trial {number} {state}" + (f": {detail}" if detail else "")


def trials_finished(events: Iterable[Mapping[str, Any]], study: str) -> dict[int, str]:
    """Trial number -> final state of every trial of ``study`` (phase1/phase3) the log has a note of."""
    out: dict[int, str] = {}
    for e in events:
        if e.get("kind") == "log" and e.get("stage") == "automl":
            m = _TRIAL_NOTE.match(e.get("summary", ""))
            if m and m.group(1) == study:
                out[int(m.group(2))] = m.group(3)
    return out


def deft_total(max_iterations: int) -> int:
    return 3 + 7 * int(max_iterations)


def deft_done(st: Mapping[str, Any]) -> int:
    """DEFT stages committed, up to the finalize (which completes the part, whatever was skipped)."""
    last = st.get("last_commit") or {}
    total = deft_total(st["config"]["max_iterations"])
    if not last or last.get("stage") == "init":
        return 0
    if last.get("stage") == "finalize" or last["iter"] == "final_automl" or "final_automl" in st.get("iterations", {}):
        return total
    n = iteration_number(last["iter"])
    if n == 0:
        return ("train", "evaluate", "rca").index(last["stage"]) + 1
    return min(total, 3 + 7 * (n - 1) + stages.ITER_STAGES.index(last["stage"]) + 1)


def phase3_done(st: Mapping[str, Any]) -> int:
    """Phase 3's commits in the DEFT state: final_automl train, its evaluate, the finalize after them."""
    rec = st.get("iterations", {}).get("final_automl")
    if not rec:
        return 0
    last = st.get("last_commit") or {}
    if last.get("stage") == "finalize":
        return 3
    return 2 if rec.get("metric_result") else 1


class RunCount:
    """The steps of one run and how many are done; ``phases`` as run_pipeline.py --phases."""

    def __init__(self, *, max_iterations: int, phases: str = "deft", trials: int = 0) -> None:
        self.phases = PHASES[phases]
        self.max_iterations = int(max_iterations or 1)
        self.trials = int(trials or 0)
        self.phase3_by_hand = False  # a DEFT-only count whose run got a final_automl (references/handoffs.md)

    @classmethod
    def for_state(cls, st: Mapping[str, Any]) -> "RunCount":
        """A DEFT run driven on its own (init_deft_state.py, next_stage.py)."""
        count = cls(max_iterations=st["config"]["max_iterations"])
        count.at_state(st)
        return count

    def parts(self) -> list[tuple[str, int]]:
        """(part, steps) in run order; UNITS names each part's unit."""
        out = []
        for ph in self.phases:
            out.append((ph, deft_total(self.max_iterations) if ph == "deft" else self.trials))
            if ph == "automl3":
                out.append(("phase3_stages", len(PHASE3_STAGES)))
        if self.phase3_by_hand:
            out.append(("phase3_stages", len(PHASE3_STAGES)))
        return out

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts())

    def units(self) -> str:
        """What the count is made of, e.g. '8 Phase 1 trials + 17 DEFT stages + ... = 36 steps'."""
        return " + ".join(f"{n} {UNITS[part]}" for part, n in self.parts()) + f" = {self.total} steps"

    def before(self, part: str) -> int:
        """Steps of the parts that come before ``part``."""
        done = 0
        for ph, n in self.parts():
            if ph == part:
                return done
            done += n
        return done

    def at_trial(self, phase: str, finished: int) -> int:
        """Steps done once ``finished`` trials of ``phase`` (automl1/automl3) have finished."""
        return self.before(phase) + min(int(finished), self.trials)

    def at_state(self, st: Mapping[str, Any]) -> int:
        """Steps done at this DEFT state (its max_iterations may have changed on a resume)."""
        self.max_iterations = int(st["config"]["max_iterations"])
        if "final_automl" in st.get("iterations", {}) and "automl3" not in self.phases:
            self.phase3_by_hand = True
        done = self.before("deft") + deft_done(st)
        if phase3_done(st):
            done = self.before("phase3_stages") + phase3_done(st)
        return done


def resume_argv(results_dir: str, options: Mapping[str, Any]) -> list[str]:
    """The run_pipeline.py call that resumes a run with the options pipeline_state.json recorded."""
    argv = ["run_pipeline.py", "--results-dir", str(results_dir)]
    for k, v in options.items():
        if v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv + ["--yes"]


def count_for(ps: Mapping[str, Any], st: Mapping[str, Any] | None) -> RunCount:
    """The count of a run_pipeline.py run, from the options pipeline_state.json recorded (a time
    budget's values where the user gave none) and the DEFT state's max_iterations once it exists."""
    opts, budget = ps["options"], ps.get("budget") or {}
    trials = opts.get("trials") or budget.get("trials") or defaults.AUTOML_TRIALS
    max_iterations = (st["config"]["max_iterations"] if st else None) or opts.get("max_iterations") \
        or budget.get("max_iterations") or 1
    return RunCount(max_iterations=max_iterations, phases=opts["phases"], trials=trials)


def pipeline_phase(results_dir: str, ps: Mapping[str, Any], events: Iterable[Mapping[str, Any]],
                   st: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a run_pipeline.py run is: the phase it is in (None when all are done), the trials of an
    AutoML phase finished so far, and the whole run's step count."""
    opts = ps["options"]
    count = count_for(ps, st)
    trials = count.trials
    current = next((ph for ph in count.phases if ph not in ps["done"]), None)
    out: dict[str, Any] = {"name": current, "title": NAMES.get(current, "all phases done"), "status": ps["status"],
                           "failure": ps.get("failure"), "trials": None, "phases": opts["phases"]}
    if st is not None:
        step = count.at_state(st)
    else:
        step = count.total if current is None else count.before(current)
    if current in STUDY:
        finished = trials_finished(events, STUDY[current])
        by_state: dict[str, int] = {}
        for state in finished.values():
            by_state[state] = by_state.get(state, 0) + 1
        out["trials"] = {"finished": len(finished), "of": trials, "by_state": dict(sorted(by_state.items()))}
        if st is None or not phase3_done(st):
            step = count.at_trial(current, len(finished))
    out.update(step=step, steps=count.total, units=count.units(),
               resume=resume_argv(results_dir, opts))
    return out
