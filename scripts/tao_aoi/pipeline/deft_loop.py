"""The headless runner: "next stage -> run -> commit" over the same commands the skills show.

Each stage's commands come from stage_plan (what next_stage.py prints) and run in-process through
the very same ``commands.<script>.main`` the CLIs wrap, so features cached by the local backend
survive from stage to stage. Every result goes through the single writer (commit_stage). A stage
that exits 2 is committed as an error and stops the run with its reason; rerunning with the same
arguments retries exactly that stage (after the cause is fixed) and continues. Killed at any
moment, a rerun continues from disk and ends in the same state as an uninterrupted run. A job the
backend retried after an infrastructure fault (backends/faults.py) is logged as a ``retry`` event of
the stage's iteration; the stage goes on.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tao_aoi.backends import faults
from tao_aoi.errors import HardStop, UserError
from tao_aoi.pipeline import run_progress
from tao_aoi.state import deft_state, stage_plan, stages


class StageFailed(HardStop):
    """A stage failed and was committed as an error; the run is stopped (hard stop)."""


def run_command(argv: Sequence[str]) -> str:
    """Run scripts/<argv[0]> in-process; returns its last stdout line. UserError propagates."""
    module = importlib.import_module(f"tao_aoi.commands.{Path(argv[0]).stem}")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        module.main(list(argv[1:]))
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class Progress:
    """One status line per stage or trial with a bar and the run's step count; quiet mode prints nothing.

    ``count`` (run_progress.RunCount) is the whole run's, set by the three-phase runner; without one a
    DEFT run counts its own stages. On a terminal a line is cut to its width (one screen row per
    stage); anywhere else (a log file, CI, an agent reading the output) every line is written whole:
    that is where it is read later.
    """

    def __init__(self, stream=None, quiet: bool = False, width: int = 24,
                 count: run_progress.RunCount | None = None) -> None:
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.width = width
        self.count = count

    def _columns(self) -> int | None:
        isatty = getattr(self.stream, "isatty", None)
        if isatty is None or not isatty():
            return None
        import shutil

        return shutil.get_terminal_size().columns

    def line(self, done: int, total: int, step: str, status: str, seconds: float, summary: str) -> None:
        if self.quiet:
            return
        total = max(total, done, 1)
        filled = int(self.width * done / total)
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] step {done:3d}/{total:<3d} {step:<18} {status:<8} {seconds:6.1f}s  {summary}"
        columns = self._columns()
        if columns is not None and len(text) > columns:
            text = text[:max(columns - 3, 40)] + "..."
        print(text, file=self.stream, flush=True)

    def stage(self, st: dict, step: stages.Step, status: str, seconds: float, summary: str) -> None:
        """The line of a DEFT stage, counted at state ``st`` (after its commit, or before a failed one)."""
        count = self.count or run_progress.RunCount.for_state(st)
        self.line(count.at_state(st), count.total, str(step), status, seconds, summary)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def record_retries(results_dir: str, label: str, progress: Progress) -> Callable[[str], None]:
    """A faults.observe listener: each retry (or lost poll) becomes a ``retry`` event of ``label`` in
    the run's log (kind log: no state change) and a progress note."""
    def record(line: str) -> None:
        progress.note(f"retry: {line}")
        try:
            deft_state.log(results_dir, label=label, stage=stages.RETRY, status="error", summary=line[:4000])
        except (OSError, UserError) as exc:  # e.g. a full disk: the job's own retry goes on regardless
            progress.note(f"warning: the retry was not logged: {exc}")
    return record


def run_step(results_dir: str, st: dict, step: stages.Step, progress: Progress,
             runner: Callable[[Sequence[str]], str] = run_command, *, plan: dict | None = None) -> dict:
    """Run one stage's commands and commit the outcome; returns the new state or raises StageFailed.

    ``plan`` replaces stage_plan's headless plan (next_stage.py --run: an agent's); one whose
    ``commit`` is None only runs its commands (an agent reviews the outputs before the commit).
    """
    plan = plan or stage_plan.plan(st, step, results_dir)
    t0 = time.monotonic()
    summary = ""
    try:
        with faults.observe(record_retries(results_dir, step.iter, progress)):
            for argv in plan["run"]:
                summary = runner(argv) or summary
    except UserError as exc:
        reason = " ".join(str(exc).split())
        dt = time.monotonic() - t0
        try:
            deft_state.commit(results_dir, label=step.iter, stage=step.stage, status="error",
                              summary=f"{Path(argv[0]).name}: {reason}"[:1000], duration_sec=dt)
        except (OSError, UserError) as not_recorded:  # a full disk: the state stays where it was (resumable)
            reason += f" (the error could not be committed: {' '.join(str(not_recorded).split())})"
        progress.stage(st, step, "ERROR", dt, reason)
        raise StageFailed(f"{step} failed in {Path(argv[0]).name}: {reason} (fix the cause, then rerun the same command to retry it; "
                          f"{', '.join('--' + k.replace('_', '-') for k in stages.ADJUSTABLE_CONFIG)} may change "
                          f"on that rerun)") from None
    dt = time.monotonic() - t0
    if plan["commit"] is None:
        progress.stage(st, step, "review", dt, summary)
        return st
    runner([*plan["commit"], "--summary", summary or f"{step} done", "--duration-sec", f"{dt:.3f}"])
    new = deft_state.load(results_dir)
    progress.stage(new, step, "ok", dt, summary)
    return new


def run_deft(results_dir: str, progress: Progress, *, after_step: Callable[[dict, stages.Step], Any] | None = None,
             runner: Callable[[Sequence[str]], str] = run_command) -> dict:
    """Drive the DEFT loop to completion (finalize included) from whatever state is on disk."""
    deft_state.repair(results_dir)  # a kill between log append and state write: persist the roll-forward
    while True:
        st = deft_state.load(results_dir)
        step = stages.expected_next(st)
        if step is None:
            return st
        if st["status"] == "failed":
            f = st["failure"]
            progress.note(f"retrying {f['iter']}/{f['stage']} (it failed before: {f['summary']})")
        new = run_step(results_dir, st, step, progress, runner)
        if after_step is not None:
            after_step(new, step)
