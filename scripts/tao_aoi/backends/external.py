"""What the backends that start outside jobs (docker, slurm) share: a job record, output checks,
and a blocking run that retries infrastructure faults and turns any other failure into a UserError.

The job record (``<dir>/backend_job.json``) holds everything needed to judge a job after it ends,
so a second process (the headless runner resumed after a kill) can track a job it did not submit,
and the first verdict is stored so it is reached once, with the fault that ended it (faults.py).

Retries (``run_job``): a job ended by an infrastructure fault is submitted again, at most
``max_retries`` times, after a doubling backoff; the failed attempt's folder is kept beside the job's
as ``<dir>.attempt<N>`` and the new attempt starts in a fresh ``<dir>``, so the outputs always come
from one clean attempt and nothing of a failed one is lost. Each retry is announced (faults.announce)
and listed in the final record under ``earlier_attempts``. A deterministic failure is never retried.
"""
from __future__ import annotations

import abc
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tao_aoi import atomic, defaults
from tao_aoi.backends import faults
from tao_aoi.backends.base import (CANCELED, COMPLETE, ERROR, RUNNING, TERMINAL, Backend, EmbedJob, InferJob,
                                   JobHandle, TrainJob)
from tao_aoi.errors import UserError

RECORD_NAME = "backend_job.json"
POLL_ENV = "TAO_AOI_JOB_POLL_SEC"
INFERENCE_COLUMNS = ("input_path", "golden_path", "object_name", "label", "siamese_score")
TAO_STATUS = "status.json"
LOG_NAMES = {"train": "train.log", "infer": "infer.log", "evaluate": "evaluate.log", "embed": "embed.log"}


def record_path(job_dir: Path) -> Path:
    return Path(job_dir) / RECORD_NAME


def write_record(job_dir: Path, record: dict[str, Any]) -> None:
    atomic.write_json(record_path(job_dir), record)


def read_record(job_dir: Path) -> dict[str, Any]:
    path = record_path(job_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; this folder holds no job started by a backend") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); resubmit the job") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object; resubmit the job")
    return data


def embed_job_dir(job: EmbedJob) -> Path:
    """An embedding job's own folder, beside the parquet it writes."""
    return Path(f"{os.path.abspath(job.output)}.job")


ATTEMPT_SUFFIX = ".attempt"


def set_aside(job_dir: Path) -> Path:
    """Move a failed attempt's folder to ``<dir>.attempt<N>`` (the first free N), keeping all it holds."""
    job_dir = Path(job_dir)
    n = 1
    while job_dir.with_name(f"{job_dir.name}{ATTEMPT_SUFFIX}{n}").exists():
        n += 1
    kept = job_dir.with_name(f"{job_dir.name}{ATTEMPT_SUFFIX}{n}")
    os.rename(job_dir, kept)
    return kept


def fresh_job_dir(job_dir: Path) -> Path:
    """Create the job's folder; refuse one whose earlier job is still running or whose outputs
    would be mixed with the new job's."""
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    rec = record_path(job_dir)
    if rec.exists():
        try:
            old = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("state") not in TERMINAL:
            raise UserError(f"{job_dir}: job {old.get('job_id', '?')} ({old.get('backend', '?')}) may still be "
                            f"running there; cancel it or use another output folder")
    return job_dir


def require_inputs(paths: dict[str, Any]) -> None:
    """Fail at submission, not after a queue wait, when an input is missing (flag -> path; None skipped)."""
    for flag, path in paths.items():
        if path is not None and not Path(path).exists():
            raise UserError(f"{flag} {path} does not exist; fix the path before submitting")


def contract_outputs(kind: str, job_dir: Path, embed_output: Path | None = None) -> list[Path]:
    """The files base.py promises for a finished job of ``kind`` (logs aside)."""
    job_dir = Path(job_dir)
    if kind == "train":
        return [job_dir / defaults.CHECKPOINT_NAME, job_dir / "experiment.yaml", job_dir / TAO_STATUS]
    if kind == "infer":
        return [job_dir / "inference.csv", job_dir / TAO_STATUS]
    if kind == "evaluate":
        return [job_dir / TAO_STATUS]
    if kind == "embed" and embed_output is not None:
        return [Path(embed_output), Path(f"{embed_output}.settings.json")]
    return []


def remove_stale(paths: Iterable[Path]) -> None:
    """Delete a previous job's outputs before a rerun in the same folder, so a failed rerun can never
    pass its checks with them."""
    for p in paths:
        Path(p).unlink(missing_ok=True)


def tao_status_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a TAO-shaped status file; unparsable lines (a torn last write) are skipped."""
    out: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def tao_final_status(path: Path) -> tuple[str | None, str]:
    """(last ``status`` value, its message) of a status file; (None, "") when there is none."""
    for obj in reversed(tao_status_lines(path)):
        status = obj.get("status")
        if isinstance(status, str) and status:
            return status.upper(), str(obj.get("message") or "")
    return None, ""


VAL_PREFIX = "val_"


def epoch_metrics(path: Path) -> list[tuple[int, dict[str, float]]]:
    """(epoch, validation KPIs) per validated epoch, in order, from a TAO-shaped status file.

    TAO logs "Eval metrics generated." with ``kpi`` {val_loss, val_acc, val_fpr[, val_far]}, then the
    epoch line (``epoch``, ``max_epoch`` = epochs - 1, and the last kpi repeated), then the train
    KPIs; the local backend writes one epoch line holding both. A kpi is only repeated, never new,
    on later lines, so an epoch takes the validation KPIs logged since the previous epoch line."""
    out: list[tuple[int, dict[str, float]]] = []
    pending: dict[str, float] | None = None
    separate = False  # TAO's layout: validation KPIs on their own lines
    for obj in tao_status_lines(path):
        kpi = obj.get("kpi") if isinstance(obj.get("kpi"), dict) else {}
        val = {k: float(v) for k, v in kpi.items() if k.startswith(VAL_PREFIX) and isinstance(v, (int, float))
               and not isinstance(v, bool)}
        if "epoch" not in obj:
            if val:
                pending, separate = val, True
            continue
        if pending is None and val and not separate:
            pending = val  # the local backend: the epoch line carries its own validation
        if pending is not None and isinstance(obj.get("epoch"), int):
            out.append((int(obj["epoch"]), pending))
        pending = None
    return out


def log_tail(path: Path, lines: int = 3) -> str:
    """The last non-blank lines of a log, joined, for one-line error messages."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(tail)[-400:]


def check_inference_csv(path: Path, input_csv: Path | None) -> None:
    """inference.csv must have the columns every later stage reads, a numeric score, and one row per
    input row (a silently dropped row would hide a defect from the KPI)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} was not written; see the job log beside it")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be parsed as CSV ({' '.join(str(exc).split())})") from None
    missing = [c for c in INFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(df.columns)}); "
                        f"the inference job must keep the input columns and add siamese_score")
    scores = pd.to_numeric(df["siamese_score"], errors="coerce")
    bad = scores.isna().to_numpy().nonzero()[0]
    if bad.size:
        raise UserError(f"{path} line {int(bad[0]) + 2}: siamese_score {df['siamese_score'].iloc[bad[0]]!r} "
                        f"is not a number")
    if input_csv is not None and Path(input_csv).is_file():
        expected = len(pd.read_csv(input_csv, dtype=str, keep_default_na=False, encoding="utf-8-sig"))
        if expected != len(df):
            raise UserError(f"{path} has {len(df)} rows but its input {input_csv} has {expected}; "
                            f"every input row needs a score")


def check_expected(record: dict[str, Any]) -> None:
    """The files a finished job must have left (``expect``), and inference.csv's shape."""
    for p in record.get("expect", []):
        path = Path(p)
        if not path.is_file() or path.stat().st_size == 0:
            raise UserError(f"{path} was not written by {record.get('backend')} job {record.get('job_id')}; "
                            f"see {record.get('log') or 'the job log'}")
    if record.get("kind") == "infer":
        check_inference_csv(Path(record["job_dir"]) / "inference.csv", _opt_path(record.get("input_csv")))


def _opt_path(value: Any) -> Path | None:
    return Path(value) if value else None


def request_of(kind: str, job: Any) -> dict[str, Any]:
    """What a job was asked to do, stored in its record: a later process picks up a job still running
    in the folder only when it was asked the same (same inputs, same spec content)."""
    import hashlib

    if isinstance(job, (TrainJob, InferJob, EmbedJob)):
        fields = {k: v for k, v in vars(job).items() if k != "on_epoch"}
    else:
        fields = dict(job)
    out: dict[str, Any] = {"kind": kind}
    for key, value in sorted(fields.items()):
        out[key] = str(value) if isinstance(value, os.PathLike) else json.loads(json.dumps(value, default=str))
    spec = fields.get("spec")
    if spec is not None and Path(spec).is_file():
        out["spec_sha256"] = hashlib.sha256(Path(spec).read_bytes()).hexdigest()
    return out


class ExternalBackend(Backend):
    """Status from the job record + the scheduler, judged once. The blocking calls (train, infer,
    embed, ...) go through ``run_job``: infrastructure faults are retried, anything else is a UserError."""

    def __init__(self, *, poll_sec: float | None = None, timeout_sec: float | None = None,
                 max_retries: int | None = None) -> None:
        """``poll_sec``: how often a blocking call asks the scheduler (default: env TAO_AOI_JOB_POLL_SEC,
        else ``defaults.JOB_POLL_SEC``); ``max_retries``: retries of a job after an infrastructure fault
        (default: the runner's --max-retries, else ``defaults.MAX_RETRIES``)."""
        env = os.environ.get(POLL_ENV, "").strip()
        try:
            self.poll_sec = float(poll_sec if poll_sec is not None else env or defaults.JOB_POLL_SEC)
        except ValueError:
            raise UserError(f"{POLL_ENV}={env!r} is not a number of seconds") from None
        self.timeout_sec = timeout_sec
        self.policy = faults.policy(max_retries)
        self._lost: dict[str, float] = {}  # job id -> when its polls started failing

    @abc.abstractmethod
    def _poll(self, handle: JobHandle, record: dict[str, Any]) -> tuple[str, int | None, str, faults.Fault | None]:
        """(state, exit code when known, detail, the fault when ERROR) straight from the scheduler;
        raises faults.PollLost when the scheduler does not answer."""

    @abc.abstractmethod
    def _conclude(self, record: dict[str, Any], exit_code: int | None) -> None:
        """Post-process and check a job the scheduler reports finished; raise UserError if it failed."""

    def status(self, handle: JobHandle) -> str:
        if handle.state in TERMINAL:
            return handle.state
        record = read_record(handle.output_dir)
        if record.get("state") in TERMINAL:
            handle.state, handle.detail = record["state"], record.get("detail", "")
            handle.fault = faults.Fault.from_record(record.get("fault"))
            return handle.state
        try:
            state, code, detail, fault = self._poll(handle, record)
        except faults.PollLost as exc:
            return self._poll_lost(handle, exc)
        if self._lost.pop(handle.job_id, None) is not None:
            faults.announce(f"{self.name} answers again about {handle.kind} job {handle.job_id}: {state}")
        if record.get("canceled") and state in TERMINAL:
            state, detail, fault = CANCELED, detail or "canceled on request", None
        elif state == COMPLETE:
            try:
                self._conclude(record, code)
                detail = record.get("detail") or f"job {handle.job_id} completed; log {record.get('log')}"
            except UserError as exc:
                state, detail, fault = ERROR, str(exc), faults.Fault(False, "its outputs failed the checks")
        handle.state, handle.detail, handle.fault = state, detail, fault
        if state in TERMINAL:
            record.update(state=state, detail=detail)
            if fault is not None:
                record["fault"] = fault.as_record()
            write_record(handle.output_dir, record)
        return state

    def _poll_lost(self, handle: JobHandle, exc: faults.PollLost) -> str:
        """A poll that got no answer: the job is left alone and polled again, up to the grace period."""
        now = time.monotonic()
        since = self._lost.setdefault(handle.job_id, now)
        grace = self.policy.lost_poll_grace_sec
        if since == now:
            faults.announce(f"lost a poll of {self.name} {handle.kind} job {handle.job_id} ({exc}); the job is left "
                            f"running and polled again for up to {grace:g} s")
        if now - since > grace:
            raise UserError(f"{self.name} gave no answer about {handle.kind} job {handle.job_id} for {grace:g} s "
                            f"(infrastructure fault: lost contact with the scheduler): {exc}; the job may still be "
                            f"running: once {self.name} answers again, rerun the same command (it picks the job up "
                            f"in {handle.output_dir})")
        return handle.state

    # -- blocking calls: one job, retried after infrastructure faults ---------------------------
    def train(self, job: TrainJob) -> JobHandle:
        """Blocking train; ``job.on_epoch`` gets each validated epoch's KPIs from the job's status.json
        while it runs (an AutoML pruner stops the job by raising: the job is canceled, the error re-raised)."""
        return self.run_job(lambda: self.submit_train(job), job.output_dir, request_of("train", job),
                            on_epoch=job.on_epoch)

    def infer(self, job: InferJob) -> JobHandle:
        return self.run_job(lambda: self.submit_infer(job), job.output_dir, request_of("infer", job))

    def embed(self, job: EmbedJob) -> JobHandle:
        return self.run_job(lambda: self.submit_embed(job), embed_job_dir(job), request_of("embed", job))

    def run_job(self, submit: Callable[[], JobHandle], job_dir: Path, request: dict[str, Any], *,
                on_epoch: Callable[[int, Any], None] | None = None) -> JobHandle:
        """Run one job to COMPLETE: pick up the same job an earlier process left running in ``job_dir``,
        else submit it; after an infrastructure fault set the failed attempt aside and submit again
        (at most ``policy.max_retries`` times, doubling backoff); any other end is a UserError."""
        job_dir = Path(job_dir).resolve()
        earlier: list[dict[str, Any]] = []
        handle = self._pick_up(job_dir, request)
        attempt, seen = 1, [-1]
        while True:
            if handle is None:
                handle = submit()
                self._note_attempt(handle, attempt, earlier)
            if on_epoch is not None:
                self._follow(handle, on_epoch, seen)
            handle.state = self.wait(handle, poll_sec=self.poll_sec, timeout_sec=self.timeout_sec)
            if handle.state == COMPLETE:
                return handle
            used = attempt + handle.restarts
            fault = handle.fault
            if handle.state != ERROR or fault is None or not fault.infrastructure or used > self.policy.max_retries:
                raise UserError(self._failure(handle, used, earlier))
            kept = set_aside(job_dir)
            delay = self.policy.delay(used)
            earlier.append({"attempt": used, "job_id": handle.job_id, "fault": fault.what,
                            "detail": handle.detail[:1000], "kept": str(kept)})
            faults.announce(f"{self.name} {handle.kind} job {handle.job_id}, attempt {used} of "
                            f"{self.policy.max_retries + 1}: {fault.what}; retried in a fresh job folder after "
                            f"{delay:g} s (the failed attempt is kept in {kept}): {handle.detail[:300]}")
            time.sleep(delay)
            attempt, handle = used + 1, None

    def _pick_up(self, job_dir: Path, request: dict[str, Any]) -> JobHandle | None:
        """The job an earlier process started in ``job_dir`` for the same request and did not see end
        (it was killed, or lost contact), to wait for instead of starting it twice; a failed attempt
        left there is set aside first, so the next one starts in a fresh folder."""
        if not record_path(job_dir).is_file():
            return None
        try:
            record = read_record(job_dir)
        except UserError:
            return None
        state = record.get("state")
        if state == ERROR and record.get("job_id"):
            set_aside(job_dir)
            return None
        if state in TERMINAL or record.get("backend") != self.name or not record.get("job_id") \
                or record.get("request") != request or record.get("canceled"):
            return None  # finished, or another job: the submission decides (fresh_job_dir)
        handle = JobHandle(self.name, str(record.get("kind")), str(record["job_id"]), job_dir, RUNNING)
        faults.announce(f"picked up {self.name} {handle.kind} job {handle.job_id} left running in {job_dir} by an "
                        f"earlier process")
        return handle

    def _note_attempt(self, handle: JobHandle, attempt: int, earlier: list[dict[str, Any]]) -> None:
        if attempt == 1 and not earlier:
            return
        record = read_record(handle.output_dir)
        if record.get("state") not in TERMINAL:
            record.update(attempt=attempt, earlier_attempts=earlier)
            write_record(handle.output_dir, record)

    def _failure(self, handle: JobHandle, used: int, earlier: list[dict[str, Any]]) -> str:
        head = f"{self.name} {handle.kind} job {handle.job_id} ended {handle.state}"
        fault, detail = handle.fault, handle.detail or "no detail"
        if fault is None or not fault.infrastructure or handle.state != ERROR:
            return f"{head}: {detail}"
        kept = "; earlier attempts kept in " + ", ".join(e["kept"] for e in earlier) if earlier else ""
        return (f"{head} after {used} attempt(s): infrastructure fault, {fault.what}, still there after "
                f"{self.policy.max_retries} retries (--max-retries): {detail}{kept}; fix the machine (memory, "
                f"docker daemon, node) or wait for it, then rerun the same command: it resumes at this job")

    def _follow(self, handle: JobHandle, on_epoch, seen: list[int]) -> None:
        """Feed ``on_epoch`` each new validated epoch while the job runs (``seen[0]``: the last epoch
        already fed, kept across attempts so a retried job reports only epochs not reported before)."""
        start = time.monotonic()
        while True:
            state = self.status(handle)
            for epoch, kpi in epoch_metrics(Path(handle.output_dir) / TAO_STATUS):
                if epoch > seen[0]:
                    seen[0] = epoch
                    try:
                        on_epoch(epoch, kpi)
                    except BaseException:
                        self.cancel(handle)
                        self.wait(handle, poll_sec=self.poll_sec, timeout_sec=60)
                        raise
            if state in TERMINAL or (self.timeout_sec is not None and time.monotonic() - start > self.timeout_sec):
                return
            time.sleep(self.poll_sec)

    def _mark_canceled(self, handle: JobHandle) -> None:
        record = read_record(handle.output_dir)
        if record.get("state") in TERMINAL:
            return
        record["canceled"] = True
        write_record(handle.output_dir, record)
