"""loop_log.jsonl: the append-only event log; ``seq`` is 1, 2, 3, ... with no gap or repeat.

Appends happen only under the results folder's exclusive lock (``locking.exclusive_lock``), read
the last seq from disk, and write the whole line with one ``write()`` + fsync, so a SIGKILL can
never leave half a line. A corrupt last line (someone edited the log by hand) is refused, naming it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Iterator

from tao_aoi import schema_check
from tao_aoi.errors import UserError

_TAIL = 65536


def utc_now() -> str:
    """UTC ISO-8601 with microseconds (time, not datetime: one less import on the hot path)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _line_count(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def _parse(line: bytes, path: Path, lineno: int | None) -> dict[str, Any]:
    where = f"{path} line {lineno}" if lineno is not None else f"{path} last line"
    try:
        event = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(
            f"{where} is not valid JSON ({line[:60]!r}); the log is written only by log_stage.py/commit_stage.py "
            f"- restore that line or remove it, then rerun"
        ) from None
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int) or isinstance(event.get("seq"), bool):
        raise UserError(f"{where} has no integer 'seq'; restore or remove that line, then rerun")
    return event


def last_event(path: Path) -> dict[str, Any] | None:
    """The last event, reading only the file's tail."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _TAIL))
        tail = fh.read()
    if not tail.endswith(b"\n"):
        raise UserError(
            f"{path} line {_line_count(path) + 1} is incomplete (no newline); it was not written by "
            f"log_stage.py - remove that partial line, then rerun"
        )
    body = tail[:-1]
    cut = body.rfind(b"\n")
    if cut < 0 and size > len(tail):  # one huge line: fall back to a full read
        body = path.read_bytes()[:-1]
        cut = body.rfind(b"\n")
    line = body[cut + 1:]
    if not line.strip():
        raise UserError(f"{path} line {_line_count(path)} is blank; remove it, then rerun")
    try:
        return _parse(line, path, None)
    except UserError:
        raise UserError(
            f"{path} line {_line_count(path)} is corrupt ({line[:60]!r}); the log is written only by "
            f"log_stage.py/commit_stage.py - restore or remove that line, then rerun"
        ) from None


def next_seq(path: Path) -> int:
    """Next sequence number; call only while holding the results folder's lock."""
    last = last_event(path)
    return 1 if last is None else int(last["seq"]) + 1


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event, checked for JSON, schema and seq continuity (1..n)."""
    if not path.exists():
        return []
    events: list[dict[str, Any]] = []
    with open(path, "rb") as fh:
        data = fh.read()
    if data and not data.endswith(b"\n"):
        lineno = data.count(b"\n") + 1
        raise UserError(f"{path} line {lineno} is incomplete (no newline); remove it, then rerun")
    for i, line in enumerate(data.split(b"\n")[:-1] if data else [], start=1):
        event = _parse(line, path, i)
        schema_check.validate("loop_event", event, where=f"{path} line {i}")
        if event["seq"] != i:
            raise UserError(f"{path} line {i} has seq {event['seq']}, expected {i}; the log was edited by hand")
        events.append(event)
    return events


def iter_tail(path: Path, n: int) -> Iterator[dict[str, Any]]:
    events = read_events(path)
    yield from events[-n:]


def make_event(seq: int, *, iter: str, stage: str, status: str, summary: str, duration_sec: float,
               kind: str, patch: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "seq": seq,
        "ts": utc_now(),
        "iter": iter,
        "stage": stage,
        "status": status,
        "summary": summary,
        "duration_sec": round(float(duration_sec), 3),
        "kind": kind,
    }
    if patch is not None:
        event["patch"] = patch
    return event


def append(path: Path, event: dict[str, Any]) -> None:
    """Append one validated event as a single write; caller holds the lock."""
    schema_check.validate("loop_event", event, where=f"{path} new event seq={event.get('seq')}")
    data = (json.dumps(event, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # pragma: no cover - regular files do not short-write
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)
