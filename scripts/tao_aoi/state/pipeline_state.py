"""pipeline_state.json: the three-phase runner's state, a view of its events in loop_log.jsonl.

run_pipeline.py records here the options a run was started with, the phases done and a hard stop.
It gets the same protection as deft_state.json by the same design: every save appends a
``pipeline`` event carrying the whole new state to the log (the write-ahead record, chained like
every line) and then replaces the file atomically. Readers check that the file equals the log's
event at the seq it names: a file one save behind (killed between the two writes) rolls forward,
anything else was edited by hand and is refused, naming the file and ``repair_state.py``.
Pure Python (the report and the state scripts read it).
"""
from __future__ import annotations

import copy
import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any

from tao_aoi import atomic
from tao_aoi.errors import UserError
from tao_aoi.file_lock import exclusive_lock
from tao_aoi.layout import Results
from tao_aoi.state import event_log, run_lock, schema_check, stages

SCHEMA_VERSION = 1
KIND = "pipeline"


def _absorb(view: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    return {**event["patch"]["set"], "last_seq": event["seq"]}  # each event carries the whole state


def _read(R: Results) -> dict[str, Any] | None:
    try:
        doc = json.loads(R.pipeline_state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise UserError(f"{R.pipeline_state} is not valid JSON ({exc.msg}); it is written only by run_pipeline.py - "
                        f"{event_log.rebuild_hint(R.root)}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{R.pipeline_state} does not hold a JSON object; {event_log.rebuild_hint(R.root)}")
    return doc


def load(R: Results, events: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The runner's state as the log records it (None before the first save), checked against the file."""
    if events is None:
        events = event_log.read_events(R.log)
    view, lags = event_log.replay(events, KIND, _absorb, _read(R), file=R.pipeline_state)
    if lags:
        schema_check.validate("pipeline_state", view, where=f"{R.pipeline_state} (rolled forward from the log)")
    return view


def save(R: Results, ps: dict[str, Any], summary: str, *, status: str = "ok") -> None:
    """Record ``ps`` (updated in place with ``updated_at`` and ``last_seq``): log event first, then the file."""
    ps["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {k: copy.deepcopy(v) for k, v in ps.items() if k != "last_seq"}
    R.root.mkdir(parents=True, exist_ok=True)
    with run_lock.hold(R.root), exclusive_lock(R.lock):
        seq = event_log.next_seq(R.log)
        event = event_log.make_event(seq, iter=stages.RUN, stage=KIND, status=status, summary=summary[:1000],
                                     duration_sec=0.0, kind=KIND, patch={"set": body})
        view = _absorb(None, event)
        schema_check.validate("pipeline_state", view, where=str(R.pipeline_state))
        event_log.append(R.log, event)
        atomic.write_json(R.pipeline_state, view)
    ps["last_seq"] = seq


def new(options: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "options": options, "status": "in_progress", "done": [],
            "phase1": None, "phase3": None}


def rebuild(R: Results) -> str:
    """repair_state.py: rewrite pipeline_state.json as the log replayed (the edited file kept beside it)."""
    with run_lock.hold(R.root), exclusive_lock(R.lock):
        events = event_log.read_events(R.log)
        view, _ = event_log.replay(events, KIND, _absorb, None, file=R.pipeline_state)
        return event_log.rewrite_view(R.pipeline_state, view, "pipeline events")
