"""Committed results are read-only: a command told to write where a committed stage's output lives refuses.

The stage scripts are generic tools that write where they are told, and their outputs count once
committed. Told to write into a folder a commit already recorded (an RCA-only question answered
into ``<R>/baseline/inference``), they would silently replace the evidence the state points at:
another target's ``metric_result.json`` under a committed evaluate, with ``next_stage.py`` and the
report none the wiser. So every writing command first asks ``refuse_committed``: if the folder (or
one it sits in) is a committed stage's folder, or holds a file a commit recorded, it exits 2 naming
the stage and a fresh folder to use instead. Folders of stages not committed yet (a stage running, a
failed stage being retried) stay writable, so the loop itself is never refused.
Pure Python: reads the run's log like every state reader.
"""
from __future__ import annotations

import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Any, Mapping

from tao_aoi.errors import UserError
from tao_aoi.layout import Results

ADHOC = "adhoc"  # <R>/adhoc/<script>_<time>: where a one-off analysis of a run's outputs goes


def results_folder_of(path: Path) -> Results | None:
    """The run folder holding ``path`` (the nearest ancestor, itself included, with a run log), else None."""
    for d in (path, *path.parents):
        if (d / "loop_log.jsonl").is_file():
            return Results.at(d)
    return None


def committed_folders(R: Results, state: Mapping[str, Any]) -> dict[Path, str]:
    """{folder: what committed it}: each stage committed ok, and the folder of each file a commit recorded."""
    out: dict[Path, str] = {}
    for label, rec in (state.get("iterations") or {}).items():
        for stage, info in (rec.get("stages") or {}).items():
            if (info or {}).get("status") == "ok":
                out.setdefault(R.stage_dir(label, stage), f"{label}/{stage}")
        for key, path in (rec.get("artifacts") or {}).items():
            p = Path(path)
            if p.is_relative_to(R.root):
                out.setdefault(p.parent, f"{label}/{rec.get('stage_completed') or 'stage'} ({key})")
    for key, path in (state.get("final_artifacts") or {}).items():
        p = Path(path)
        if p.is_relative_to(R.root):
            out.setdefault(p.parent, f"run/finalize ({key})")
    return out


def fresh_folder(R: Results, script: str) -> Path:
    return R.root / ADHOC / f"{Path(script).stem}_{time.strftime('%Y%m%d_%H%M%S')}"


def refuse_committed(target: str | Path | None, flag: str, script: str) -> None:
    """Exit 2 (UserError) if ``target`` is, or lies in, a committed stage's folder of a run, or holds a
    committed file; the run folder itself is refused only as such (its stage folders are checked one by one)."""
    if not target:
        return
    d = Path(target).expanduser().resolve()
    R = results_folder_of(d)
    if R is None:
        return
    from tao_aoi.state import deft_state

    if not deft_state.started(R.root):
        return
    state = deft_state.load(R.root)
    for folder, what in committed_folders(R, state).items():
        if d == folder or (folder != R.root and d.is_relative_to(folder)):
            raise UserError(f"{flag} {d} holds committed results of {what} in the run {R.root}; committed results "
                            f"are read-only: write to a fresh folder instead, e.g. {flag} {fresh_folder(R, script)}")
