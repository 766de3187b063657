"""What the backends that start outside jobs (docker, slurm) share: a job record, output checks,
and a blocking wait that turns a failed job into a UserError.

The job record (``<dir>/backend_job.json``) holds everything needed to judge a job after it ends,
so a second process (the headless runner resumed after a kill) can track a job it did not submit,
and the first verdict is stored so it is reached once.
"""
from __future__ import annotations

import abc
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from tao_aoi import atomic, defaults
from tao_aoi.backends.base import CANCELED, COMPLETE, ERROR, TERMINAL, Backend, JobHandle, TrainJob
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

    from tao_aoi.data import changenet_csv

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} was not written; see the job log beside it")
    df = changenet_csv.read(path, (), what="inference output", allow_empty=True, canonicalize=False)
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
        expected = len(changenet_csv.read(input_csv, (), what="inference input", allow_empty=True, canonicalize=False))
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


class ExternalBackend(Backend):
    """Status from the job record + the scheduler, judged once; a failed blocking call is a UserError."""

    def __init__(self, *, poll_sec: float | None = None, timeout_sec: float | None = None) -> None:
        """``poll_sec``: how often a blocking call asks the scheduler (default: env TAO_AOI_JOB_POLL_SEC,
        else ``defaults.JOB_POLL_SEC``)."""
        env = os.environ.get(POLL_ENV, "").strip()
        try:
            self.poll_sec = float(poll_sec if poll_sec is not None else env or defaults.JOB_POLL_SEC)
        except ValueError:
            raise UserError(f"{POLL_ENV}={env!r} is not a number of seconds") from None
        self.timeout_sec = timeout_sec

    @abc.abstractmethod
    def _poll(self, handle: JobHandle, record: dict[str, Any]) -> tuple[str, int | None, str]:
        """(state, exit code when known, detail) straight from the scheduler."""

    @abc.abstractmethod
    def _conclude(self, record: dict[str, Any], exit_code: int | None) -> None:
        """Post-process and check a job the scheduler reports finished; raise UserError if it failed."""

    def status(self, handle: JobHandle) -> str:
        if handle.state in TERMINAL:
            return handle.state
        record = read_record(handle.output_dir)
        if record.get("state") in TERMINAL:
            handle.state, handle.detail = record["state"], record.get("detail", "")
            return handle.state
        state, code, detail = self._poll(handle, record)
        if record.get("canceled") and state in TERMINAL:
            state, detail = CANCELED, detail or "canceled on request"
        elif state == COMPLETE:
            try:
                self._conclude(record, code)
                detail = record.get("detail") or f"job {handle.job_id} completed; log {record.get('log')}"
            except UserError as exc:
                state, detail = ERROR, str(exc)
        handle.state, handle.detail = state, detail
        if state in TERMINAL:
            record.update(state=state, detail=detail)
            write_record(handle.output_dir, record)
        return state

    def train(self, job: TrainJob) -> JobHandle:
        """Blocking train; ``job.on_epoch`` gets each validated epoch's KPIs from the job's status.json
        while it runs (an AutoML pruner stops the job by raising: the job is canceled, the error re-raised)."""
        handle = self.submit_train(job)
        if job.on_epoch is not None:
            self._follow(handle, job.on_epoch)
        return self._finish(handle)

    def _follow(self, handle: JobHandle, on_epoch) -> None:
        seen = -1
        start = time.monotonic()
        while True:
            state = self.status(handle)
            for epoch, kpi in epoch_metrics(Path(handle.output_dir) / TAO_STATUS):
                if epoch > seen:
                    seen = epoch
                    try:
                        on_epoch(epoch, kpi)
                    except BaseException:
                        self.cancel(handle)
                        self.wait(handle, poll_sec=self.poll_sec, timeout_sec=60)
                        raise
            if state in TERMINAL or (self.timeout_sec is not None and time.monotonic() - start > self.timeout_sec):
                return
            time.sleep(self.poll_sec)

    def _finish(self, handle: JobHandle) -> JobHandle:
        handle.state = self.wait(handle, poll_sec=self.poll_sec, timeout_sec=self.timeout_sec)
        if handle.state != COMPLETE:
            raise UserError(f"{self.name} {handle.kind} job {handle.job_id} ended {handle.state}: "
                            f"{handle.detail or 'no detail'}")
        return handle

    def _mark_canceled(self, handle: JobHandle) -> None:
        record = read_record(handle.output_dir)
        if record.get("state") in TERMINAL:
            return
        record["canceled"] = True
        write_record(handle.output_dir, record)
