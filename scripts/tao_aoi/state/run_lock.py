"""One run per results folder: an exclusive flock on ``<R>/.run.lock`` held for a writer's lifetime.

Two writers on one folder (an agent retrying, a second terminal) interleave phases and corrupt the
run, so every command that writes a run holds this lock: run_pipeline.py for the whole run, the
step scripts (init, commit, seed_baseline, warm_start, prepare_inference_spec, repair_state) for
their moment, automl.py for a study inside a run folder. The OS drops a flock when its holder dies,
so a crash can never leave the folder locked; ``<R>/.run_owner.json`` (host, pid, the process's
start time, since, command, kind) only names the holder in the refusal and tells a crash (file left
behind) from a clean exit (file removed).

- A holder of kind ``run`` refuses any second writer at once (exit 2, naming it). A ``step`` holder
  is waited for (RUN_LOCK_STEP_WAIT_SEC): two commits by hand simply queue.
- A left-behind owner file is taken over when its process is provably gone: same host and boot,
  and the pid is dead or now belongs to a process with another start time (pid reuse). An owner on
  another host cannot be checked from here: refused, saying so (never stolen blindly).
- Holds nest within one process (the runner calls the step scripts in-process).
- Readers (next_stage.py, render_report.py) and log_stage.py (a note; the log has its own lock)
  never take it, so a run can be watched while it goes.
Pure Python: the state scripts take it on every commit.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Iterator

from tao_aoi import atomic, defaults
from tao_aoi.errors import UserError
from tao_aoi.layout import Results, run_of_study

KINDS = ("run", "step")
_POLL_SEC = 0.05
_held: dict[str, int] = {}  # results folder -> nesting depth of holds by this process
_tokens: set[str] = set()   # owner tokens of the holds this process has now


# --------------------------------------------------------------------------- who is the holder


def _host() -> str:
    return os.uname().nodename


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[19].decode("ascii") if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _owner_info(kind: str) -> dict[str, Any]:
    pid = os.getpid()
    return {
        "host": _host(), "pid": pid, "start": process_start(pid), "boot_id": _boot_id(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python",
        "kind": kind, "token": os.urandom(8).hex(),
    }


def _read_owner(R: Results) -> dict[str, Any] | None:
    try:
        owner = json.loads(R.run_owner.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def verdict(owner: dict[str, Any]) -> str:
    """``alive``, ``dead`` (provably gone: pid dead, reused or from an earlier boot) or ``elsewhere``."""
    if owner.get("host") != _host():
        return "elsewhere"
    boot = _boot_id()
    if owner.get("boot_id") and boot and owner["boot_id"] != boot:
        return "dead"
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not _pid_alive(pid):
        return "dead"
    start = process_start(pid)
    if owner.get("start") and start and owner["start"] != start:
        return "dead"  # the pid now belongs to another process
    if pid == os.getpid() and owner.get("token") not in _tokens:
        return "dead"  # this process, but not a hold it has: left by an earlier hold that did not clean up
    return "alive"


def describe(owner: dict[str, Any]) -> str:
    return (f"{owner.get('command', '?')} (pid {owner.get('pid', '?')} on {owner.get('host', '?')}, "
            f"since {owner.get('since', '?')})")


# --------------------------------------------------------------------------- taking it


def _busy(R: Results, owner: dict[str, Any] | None, waited: float) -> UserError:
    if owner is None or verdict(owner) == "dead":
        return UserError(
            f"{R.run_lock} is held, but {R.run_owner} names no live holder: a process started by a run that "
            f"died may still hold it (find it with: fuser {R.run_lock}); stop that process, then rerun")
    who = describe(owner)
    if owner.get("kind") == "step":
        return UserError(
            f"{R.root} has been held by {who} for more than {waited:.0f} s; wait for it to finish, or stop it "
            f"(kill {owner.get('pid')} on {owner.get('host')}) and rerun")
    return UserError(
        f"{R.root} is in use by {who}: one run per results folder. Wait for it to finish (next_stage.py "
        f"--results-dir {R.root} shows where it is), or stop it (kill {owner.get('pid')} on {owner.get('host')}) "
        f"and rerun the same command to resume; for a separate run use a new --results-dir")


def _acquire(fd: int, R: Results) -> None:
    t0 = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        owner = _read_owner(R)
        waited = time.monotonic() - t0
        if owner is None or verdict(owner) == "dead":
            limit = defaults.RUN_LOCK_SETTLE_SEC  # being taken or released right now, or a reader's probe
        elif owner.get("kind") == "step":
            limit = defaults.RUN_LOCK_STEP_WAIT_SEC
        else:
            limit = 0.0
        if waited >= limit:
            raise _busy(R, owner, waited)
        time.sleep(_POLL_SEC)


def _claim(R: Results, kind: str) -> tuple[dict[str, Any], str | None]:
    """With the flock held: rule out a previous owner that might still run, then name ourselves."""
    previous = _read_owner(R)
    note = None
    if previous is not None:
        v = verdict(previous)
        who = describe(previous)
        if v == "alive":
            raise UserError(
                f"{R.run_owner} names {who}, which is still running, as the holder of {R.root}, yet its lock is "
                f"free (was {R.run_lock} deleted?); if pid {previous.get('pid')} is no tao-aoi command, delete "
                f"{R.run_owner} and rerun")
        if v == "elsewhere":
            raise UserError(
                f"{R.run_owner} says {who} holds {R.root}; from {_host()} it cannot be told whether that process "
                f"still runs (this file system does not share the lock across hosts). If it runs, wait for it or "
                f"stop it on {previous.get('host')}; if it is gone, delete {R.run_owner} and rerun")
        note = f"took over the run lock of {who}, which ended without releasing it"
    owner = _owner_info(kind)
    atomic.write_text(R.run_owner, json.dumps(owner) + "\n", fsync=False)  # advisory: the flock is the lock
    return owner, note


def _release(R: Results, owner: dict[str, Any]) -> None:
    current = _read_owner(R)
    if current is not None and current.get("token") == owner["token"]:
        with contextlib.suppress(FileNotFoundError):
            R.run_owner.unlink()


@contextlib.contextmanager
def hold(results_dir: str | os.PathLike[str], kind: str = "step") -> Iterator[str | None]:
    """Hold the folder's run lock for the block; yields a note if a dead holder's lock was taken over.

    Raises UserError (exit 2) naming the holder if another writer has the folder.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    R = Results.at(results_dir)
    key = str(R.root)
    if key in _held:
        _held[key] += 1
        try:
            yield None
        finally:
            _held[key] -= 1
        return
    R.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(R.run_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, R)
        try:
            owner, note = _claim(R, kind)
            _tokens.add(owner["token"])
            _held[key] = 1
            try:
                yield note
            finally:
                del _held[key]
                _release(R, owner)
                _tokens.discard(owner["token"])
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold_study(study_dir: str | os.PathLike[str]) -> Iterator[str | None]:
    """automl.py: hold the run lock of the results folder a study lives in (``<R>/automl/<phase>``), if any."""
    root = run_of_study(study_dir)
    if root is None:
        yield None
        return
    with hold(root, kind="run") as note:
        yield note


def holder(results_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds the folder now (for readers: never blocks, never takes the lock for more than a probe)."""
    R = Results.at(results_dir)
    owner = _read_owner(R)
    if owner is None:
        return None
    if str(R.root) in _held:
        return owner
    try:
        fd = os.open(R.run_lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return owner
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # left behind by a holder that died
    finally:
        os.close(fd)


def refuse_if_running(results_dir: str | os.PathLike[str]) -> None:
    """Exit 2 now if a run holds the folder: before pre-flight checks, a dry run or a prompt spend time on
    a start that will be refused. A probe only; the hold itself stays the real check."""
    R = Results.at(results_dir)
    owner = holder(R.root)
    if owner is not None and owner.get("kind") == "run" and str(R.root) not in _held:
        raise _busy(R, owner, 0.0)
