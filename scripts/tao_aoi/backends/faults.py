"""Which job failures are the machine's (retried) and which are the job's own (never retried).

An infrastructure fault ends a job for a reason its inputs play no part in, so the same job can
succeed when run again: the container was killed (exit 137: the kernel's out-of-memory killer or a
kill from outside), the docker daemon did not answer or an image pull failed on the network, SLURM
lost the node (NODE_FAIL, BOOT_FAIL), preempted the job (PREEMPTED) or its memory limit killed it
(OUT_OF_MEMORY), or the scheduler stopped answering polls. Every other failure is deterministic and
would fail the same way again: a spec NVIDIA's schema refuses, a TAO assert or FAILURE, a missing
image, a bad CSV, an image absent with ``--pull=never``, a refused registry login, a TIMEOUT (the same
limit would cut it again), a cancel by a person. Those are never retried: the run stops naming them.

This module holds the classification, the policy (how many retries, the backoff) and the announcement
of every retry to whoever records the run: the headless runner writes each one to the run's log as a
``retry`` event (``observe``); a command run by hand prints it on stderr. The retry loop itself is
``ExternalBackend.run_job`` (external.py).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from tao_aoi import defaults
from tao_aoi.errors import UserError

BACKOFF_ENV = "TAO_AOI_RETRY_BACKOFF_SEC"  # the first retry's wait (tests set 0)
KILLED_CODE = 137  # 128 + SIGKILL: the OOM killer, or `kill -9` / `docker kill` from outside
SLURM_INFRASTRUCTURE = {
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "PREEMPTED": "a higher-priority job preempted it",
    "OUT_OF_MEMORY": "its memory limit killed it (out of memory)",
}
# Docker client output that means the daemon or the registry connection failed, not the job. Checked
# after DOCKER_MISTAKES, so "pull access denied" (a login or a name to fix) is never retried, and only
# when docker itself spoke (exit 125, or its "docker:" prefix): a job's own log may mention a refused
# connection without docker having failed.
DOCKER_INFRASTRUCTURE = (
    "cannot connect to the docker daemon", "is the docker daemon running", "error during connect",
    "error waiting for container", "unexpected eof", "connection reset by peer", "connection refused",
    "i/o timeout", "tls handshake timeout", "context deadline exceeded", "toomanyrequests",
    "503 service unavailable", "502 bad gateway", "504 gateway", "net/http: request canceled",
    "temporary failure in name resolution", "no space left on device while pulling",
)
DOCKER_MISTAKES = (
    "pull access denied", "unauthorized", "manifest unknown", "not found: manifest", "no such image",
    "invalid reference format", "bind source path does not exist", "invalid mount config", "unknown flag",
    "could not select device driver", "unknown device",
)


@dataclass(frozen=True)
class Fault:
    """Why a job ended: ``infrastructure`` faults are retried, the rest are not; ``what`` names it."""

    infrastructure: bool
    what: str

    def as_record(self) -> dict[str, object]:
        return {"infrastructure": self.infrastructure, "what": self.what}

    @classmethod
    def from_record(cls, data: object) -> "Fault | None":
        if isinstance(data, dict) and isinstance(data.get("what"), str):
            return cls(bool(data.get("infrastructure")), data["what"])
        return None


class PollLost(UserError):
    """The scheduler did not answer a status poll (timeout, controller or daemon unreachable); the job
    itself may be fine, so the poll is repeated, never the job."""


def classify_docker(exit_code: int | None, output: str, oom_killed: bool | None = None) -> Fault:
    """A container run that exited ``exit_code`` with ``output`` (the docker client's and the job's)."""
    text = output.lower()
    if oom_killed:
        return Fault(True, "container killed by the out-of-memory killer (OOMKilled)")
    if exit_code == KILLED_CODE:
        return Fault(True, "container killed (exit 137: out of memory, or killed from outside)")
    if exit_code in (125, None) or "docker:" in text or "error response from daemon" in text:
        if not any(p in text for p in DOCKER_MISTAKES) and any(p in text for p in DOCKER_INFRASTRUCTURE):
            pulling = "pull" in text or "registry" in text or "manifest" in text
            return Fault(True, "image pull failed on the network" if pulling else "docker daemon unreachable")
    if exit_code in (125, 126, 127):
        return Fault(False, f"docker could not start the container (exit {exit_code})")
    return Fault(False, f"the job failed (exit {exit_code})" if exit_code is not None else "the job failed")


def classify_slurm(job_state: str, exit_code: int | None, signal: int | None = None) -> Fault:
    """A batch job that left the queue in ``job_state`` (``ExitCode=<exit_code>:<signal>``)."""
    state = job_state.split()[0].rstrip("+").upper() if job_state.strip() else ""
    if state in SLURM_INFRASTRUCTURE:
        return Fault(True, f"slurm {state}: {SLURM_INFRASTRUCTURE[state]}")
    if exit_code == KILLED_CODE or signal == 9:
        return Fault(True, "job killed (exit 137: out of memory, or killed from outside)")
    if state == "TIMEOUT":
        return Fault(False, "slurm TIMEOUT: the job reached its time limit (raise TAO_AOI_SLURM_TIME)")
    if state in ("CANCELLED", "DEADLINE", "REVOKED"):
        return Fault(False, f"slurm {state}: stopped by a person or a policy, not a fault")
    return Fault(False, f"slurm {state or 'job'} failed" + (f" (exit {exit_code})" if exit_code is not None else ""))


# ------------------------------------------------------------------ the policy


@dataclass(frozen=True)
class Policy:
    """How often and when a job is tried again."""

    max_retries: int = defaults.MAX_RETRIES
    backoff_sec: float = defaults.RETRY_BACKOFF_SEC
    backoff_max_sec: float = defaults.RETRY_BACKOFF_MAX_SEC
    lost_poll_grace_sec: float = defaults.LOST_POLL_GRACE_SEC

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...): doubling, capped."""
        return min(self.backoff_max_sec, self.backoff_sec * 2 ** max(0, retry - 1))


_configured: list[int] = []  # run_pipeline.py's --max-retries for the backends its stages create


@contextlib.contextmanager
def configured(max_retries: int | None) -> Iterator[None]:
    """Within the block, backends created without an explicit ``max_retries`` use this one (the
    headless runner runs its stage commands in-process, without the flag on their command lines)."""
    if max_retries is None:
        yield
        return
    _configured.append(int(max_retries))
    try:
        yield
    finally:
        _configured.pop()


def policy(max_retries: int | None = None) -> Policy:
    """The policy for a backend: its own ``max_retries``, else the runner's, else the default; the
    backoff from TAO_AOI_RETRY_BACKOFF_SEC when set."""
    n = max_retries if max_retries is not None else (_configured[-1] if _configured else defaults.MAX_RETRIES)
    if n < 0:
        raise UserError(f"--max-retries must be >= 0, got {n}")
    raw = os.environ.get(BACKOFF_ENV, "").strip()
    try:
        backoff = float(raw) if raw else defaults.RETRY_BACKOFF_SEC
    except ValueError:
        raise UserError(f"{BACKOFF_ENV}={raw!r} is not a number of seconds") from None
    return Policy(max_retries=int(n), backoff_sec=max(0.0, backoff))


# ------------------------------------------------------------------ announcing retries

Listener = Callable[[str], None]
_listeners: list[Listener] = []
_scopes: list[str] = []


@contextlib.contextmanager
def observe(listener: Listener) -> Iterator[None]:
    """Every retry announced within the block is passed to ``listener`` as one line (instead of stderr)."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


@contextlib.contextmanager
def scope(label: str) -> Iterator[None]:
    """Name what the jobs of the block belong to (``automl phase1 trial 3``) in their announcements."""
    _scopes.append(label)
    try:
        yield
    finally:
        _scopes.pop()


def announce(text: str) -> None:
    """Tell the run's recorder (or stderr) about a retry, a requeue or a lost poll."""
    line = " ".join(f"{': '.join(_scopes)}: {text}".split()) if _scopes else " ".join(text.split())
    if not _listeners:
        print(f"retry: {line}", file=sys.stderr, flush=True)
        return
    for listener in list(_listeners):
        listener(line)
