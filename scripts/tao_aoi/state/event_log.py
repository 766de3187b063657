"""loop_log.jsonl: the append-only event log; ``seq`` is 1, 2, 3, ... with no gap or repeat.

Appends happen only under the results folder's exclusive lock (``locking.exclusive_lock``), read
the last seq from disk, and write the whole line with one ``write()`` + fsync, so a SIGKILL can
never leave half a line. A corrupt last line (someone edited the log by hand) is refused, naming it.

Tamper evidence: every line carries ``chain`` = sha256(previous line's chain + this event without
its chain), so an edited, inserted or hand-appended line no longer follows its predecessor and
every reader names it. An append needs only the last two lines (the tail), never the whole log.
The state files are views of the log (``replay``): deft_state.json and pipeline_state.json must
equal the log replayed up to the seq they say they reflect. Evidence against hand edits and
mistakes, not a security boundary: a tool that recomputes the chain could forge it.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Callable, Iterator, Mapping

from tao_aoi import atomic
from tao_aoi.errors import UserError
from tao_aoi.state import schema_check

try:  # the bare C module: hashlib's import (OpenSSL) costs ~5-10 ms of the state scripts' start-up
    from _sha2 import sha256  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:  # pragma: no cover - builds without the builtin module
        from hashlib import sha256

_TAIL = 65536
GENESIS = "tao-aoi loop_log v1"  # the "previous chain" of line 1
EDIT_RECOVERY = ("the log is the run's record and only the plugin's scripts write it: undo that edit (restore "
                 "the line as it was written, or remove a line that was added), or start a new run in a new "
                 "--results-dir")


def _canonical(event: Mapping[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, allow_nan=False, separators=(",", ":"))


def chain_hash(previous: str, event: Mapping[str, Any]) -> str:
    """The chain value of ``event`` after a line whose chain is ``previous`` (its own chain excluded)."""
    return _hash(previous, _canonical({k: v for k, v in event.items() if k != "chain"}).encode("utf-8"))


def _hash(previous: str, body: bytes) -> str:
    return sha256(previous.encode("ascii") + b"\n" + body).hexdigest()


_CHAIN_PREFIX = b'{"chain":"'  # "chain" sorts first, so a written line is this + 64 hex + '",' + the body


def _check_chain(event: dict[str, Any], previous: str, path: Path, lineno: int, line: bytes | None = None) -> None:
    if line is not None and line.startswith(_CHAIN_PREFIX) and line[74:76] == b'",':
        actual = _hash(previous, b"{" + line[76:])  # the bytes as written: no re-serialisation needed
    else:
        actual = chain_hash(previous, event)
    if event.get("chain") != actual:
        where = f", {event['iter']}/{event['stage']}" if "iter" in event and "stage" in event else ""
        what = f"seq {event.get('seq')}{where}"
        raise UserError(f"{path} line {lineno} ({what}) was edited or added by hand: its chain hash does not follow "
                        f"{'line ' + str(lineno - 1) if lineno > 1 else 'the start of the log'}; {EDIT_RECOVERY}")


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
    lines = tail[:-1].split(b"\n")
    if size > len(tail) and len(lines) < 3:  # huge lines: the last two may not be in the tail
        lines = path.read_bytes()[:-1].split(b"\n")
    last = _tail_line(lines[-1], path, 0)
    if last["seq"] == 1:
        previous = GENESIS
    elif len(lines) >= 2:
        before = _tail_line(lines[-2], path, 1)
        if before["seq"] != last["seq"] - 1:
            raise UserError(f"{path} line {_line_count(path)} has seq {last['seq']} after seq {before['seq']}; "
                            f"the log was edited by hand - {EDIT_RECOVERY}")
        previous = before.get("chain", "")
    else:
        raise UserError(f"{path} starts at seq {last['seq']}, expected 1; {EDIT_RECOVERY}")
    _check_chain(last, previous, path, _line_count(path), lines[-1])
    return last


def _tail_line(line: bytes, path: Path, from_end: int) -> dict[str, Any]:
    """One of the last lines (from_end 0 = the last), parsed; errors name its line number."""
    if not line.strip():
        raise UserError(f"{path} line {_line_count(path) - from_end} is blank; remove it, then rerun")
    try:
        return _parse(line, path, None)
    except UserError:
        raise UserError(
            f"{path} line {_line_count(path) - from_end} is corrupt ({line[:60]!r}); the log is written only by "
            f"log_stage.py/commit_stage.py - restore or remove that line, then rerun"
        ) from None


def next_seq(path: Path) -> int:
    """Next sequence number; call only while holding the results folder's lock."""
    last = last_event(path)
    return 1 if last is None else int(last["seq"]) + 1


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event, checked for JSON, schema, seq continuity (1..n) and the hash chain."""
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
        if event["seq"] != i:
            raise UserError(f"{path} line {i} has seq {event['seq']}, expected {i}; the log was edited by hand")
        _check_chain(event, events[-1]["chain"] if events else GENESIS, path, i, line)
        schema_check.validate("loop_event", event, where=f"{path} line {i}")
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
    """Chain and append one validated event as a single write; caller holds the lock.

    The event must continue the log (seq = last seq + 1); its ``chain`` is set here.
    """
    last = last_event(path)
    expected = 1 if last is None else last["seq"] + 1
    if event.get("seq") != expected:
        raise UserError(f"{path}: new event has seq {event.get('seq')}, but the log continues at {expected}")
    event["chain"] = chain_hash(GENESIS if last is None else last["chain"], event)
    schema_check.validate("loop_event", event, where=f"{path} new event seq={event.get('seq')}")
    data = (_canonical(event) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise atomic.disk_full(exc, path.parent) or exc
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):  # a full file system takes part of the line
                raise OSError(errno.ENOSPC, f"short write to {path}")
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # never leave part of a line: the log stays as it was
            raise atomic.disk_full(exc, path.parent) or exc
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- views of the log


def rebuild_hint(root: Path) -> str:
    """The recovery named when a view file (deft_state.json, pipeline_state.json) disagrees with the log."""
    return (f"the log is the run's record: rebuild the file from it with repair_state.py --results-dir {root} "
            f"(the edited file is kept beside it)")


def first_difference(a: Any, b: Any) -> tuple[str, ...]:
    """Key path of the first place two JSON values differ (() if they differ at the root)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return (key,)
            if not same_json(a[key], b[key]):
                return (key, *first_difference(a[key], b[key]))
    return ()


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON documents: ``true`` is not ``1.0`` and ``1`` is not ``1.0`` (Python's == says they are)."""
    return _canonical(a) == _canonical(b)


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return "<absent>"
        doc = doc[key]
    return doc


def replay(events: list[dict[str, Any]], kind: str, absorb: Callable[[Any, dict[str, Any]], Any],
           on_disk: dict[str, Any] | None, *, file: Path) -> tuple[Any, bool]:
    """The view of ``kind`` events (``absorb`` folds one in), checked against the file on disk.

    The file must equal the view at the seq it names (``last_seq``): the view at the last event, or an
    earlier one when a writer was killed between its log append and its file rename (the file then
    lags and the view rolls it forward). Anything else was edited by hand: UserError naming the file,
    the first differing key and the rebuild command. Returns (view or None, whether the file lags the log).
    """
    recovery = rebuild_hint(file.parent)
    view = None
    pending = on_disk is not None
    want = on_disk.get("last_seq") if on_disk is not None else None
    for event in events:
        if event["kind"] != kind:
            continue
        view = absorb(view, event)
        if pending and event["seq"] == want:
            if not same_json(view, on_disk):
                key = first_difference(on_disk, view)
                shown = (f"{'.'.join(map(str, key))!r} is {_at(on_disk, key)!r} in the file but {_at(view, key)!r} "
                         f"per the log") if key else "its content differs"
                raise UserError(f"{file} does not match loop_log.jsonl at seq {want} ({shown}): it was edited by "
                                f"hand; {recovery}")
            pending = False
    if pending:
        last = events[-1]["seq"] if events else 0
        if isinstance(want, int) and not isinstance(want, bool) and want > last:
            raise UserError(f"{file} is at seq {want} but loop_log.jsonl ends at seq {last}: if the log was cut, "
                            f"restore it; if the file does not belong to this run, {recovery}")
        raise UserError(f"{file} names last_seq {want!r}, which is no {kind} event of loop_log.jsonl: it was written "
                        f"by hand; {recovery}")
    lags = view is not None and (on_disk is None or on_disk.get("last_seq") != view.get("last_seq"))
    return view, lags


def rewrite_view(path: Path, view: dict[str, Any] | None, what: str) -> str:
    """Make the view file ``path`` what the log says (repair_state.py); returns one line saying what changed.

    A file that disagrees is kept as ``<name>.edited`` for the user to inspect; one the log does not
    back at all (it holds no ``what``) is moved there.
    """
    from tao_aoi import atomic

    try:
        raw: bytes | None = path.read_bytes()
    except FileNotFoundError:
        raw = None
    kept = path.with_name(path.name + ".edited")
    if view is None:
        if raw is None:
            return f"{path.name}: nothing to rebuild (the log holds no {what})"
        os.replace(path, kept)
        return f"{path.name}: the log holds no {what}, so no script wrote this file; moved it to {kept.name}"
    try:
        current = json.loads(raw) if raw is not None else None
    except ValueError:
        current = None
    if same_json(current, view):
        return f"{path.name}: agrees with the log (seq {view['last_seq']}); nothing to do"
    if raw is None:
        why = "it was missing"
    else:
        key = first_difference(current, view) if isinstance(current, dict) else ()
        why = (f"{'.'.join(map(str, key))!r} was {_at(current, key)!r}, the log says {_at(view, key)!r}" if key
               else "it was unreadable")
    if raw is not None:
        atomic.write_bytes(kept, raw)
    atomic.write_json(path, view)
    kept_note = f"; the previous file is kept as {kept.name}" if raw is not None else ""
    return f"{path.name}: rebuilt from the log at seq {view['last_seq']} ({why}){kept_note}"
