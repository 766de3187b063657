"""The one small interface every backend implements: train, infer, embed; job status; cancel.

A backend turns a job description into files on disk with the same contract everywhere, so the
stages above never care where a job ran:

- train  -> ``<output_dir>/best.ckpt`` (deliverable checkpoint), ``experiment.yaml`` (effective spec),
            ``status.json`` (TAO-shaped JSON lines, one per epoch with ``kpi.val_far``), ``train.log``
- infer  -> ``<output_dir>/inference.csv`` (input_path, golden_path, object_name, label, siamese_score;
            extra input columns kept), ``status.json``, ``infer.log``
- embed  -> ``<output>`` parquet (one row per input row, column ``embedding``) and
            ``<output>.settings.json`` (the embedder and its settings; mining refuses a mismatch)

``local`` runs in-process and returns a finished handle; ``docker`` and ``slurm`` start external jobs
that ``status``/``wait``/``cancel`` track.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from tao_aoi.backends.faults import Fault
from tao_aoi.errors import UserError

# TAO's job-state vocabulary.
PENDING, RUNNING, COMPLETE, ERROR, CANCELED = "PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED"
TERMINAL = (COMPLETE, ERROR, CANCELED)

EpochCallback = Callable[[int, Mapping[str, float]], None]
"""Called after each epoch with (epoch, {"val_far": ..., ...}); may raise to stop (e.g. optuna.TrialPruned)."""


@dataclass(frozen=True)
class TrainJob:
    spec: Path
    train_csv: Path
    val_csv: Path
    images_root: Path
    output_dir: Path
    init_checkpoint: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted spec key -> value
    on_epoch: EpochCallback | None = None  # honoured in-process (local); others report via status.json
    row_weights: Path | None = None  # CSV with a ``weight`` per training row (local model; TAO has none)


@dataclass(frozen=True)
class InferJob:
    spec: Path
    checkpoint: Path
    csv: Path
    images_root: Path
    output_dir: Path


@dataclass(frozen=True)
class EmbedJob:
    csv: Path           # ChangeNet-shaped rows (input_path, object_name, ...) to embed
    images_root: Path
    spec: Path          # lights and image extension
    output: Path        # parquet to write
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class JobHandle:
    backend: str
    kind: str           # train | infer | embed
    job_id: str
    output_dir: Path
    state: str = PENDING
    detail: str = ""
    fault: Fault | None = None  # why an ERROR job failed: an infrastructure fault is retried (faults.py)
    restarts: int = 0   # times the scheduler itself requeued the job (SLURM), each one an attempt


class Backend(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    def submit_train(self, job: TrainJob) -> JobHandle: ...

    @abc.abstractmethod
    def submit_infer(self, job: InferJob) -> JobHandle: ...

    @abc.abstractmethod
    def submit_embed(self, job: EmbedJob) -> JobHandle: ...

    @abc.abstractmethod
    def status(self, handle: JobHandle) -> str: ...

    @abc.abstractmethod
    def cancel(self, handle: JobHandle) -> None: ...

    def wait(self, handle: JobHandle, *, poll_sec: float = 2.0, timeout_sec: float | None = None) -> str:
        start = time.monotonic()
        while True:
            state = self.status(handle)
            if state in TERMINAL:
                return state
            if timeout_sec is not None and time.monotonic() - start > timeout_sec:
                self.cancel(handle)
                return self.status(handle)
            time.sleep(poll_sec)

    # Blocking conveniences used by the CLIs.
    def train(self, job: TrainJob) -> JobHandle:
        return self._finish(self.submit_train(job))

    def infer(self, job: InferJob) -> JobHandle:
        return self._finish(self.submit_infer(job))

    def embed(self, job: EmbedJob) -> JobHandle:
        return self._finish(self.submit_embed(job))

    def _finish(self, handle: JobHandle) -> JobHandle:
        handle.state = self.wait(handle)
        return handle


def completed(handle: JobHandle) -> JobHandle:
    """The handle of a job that completed; any other end is a UserError naming the job, its state and why
    (train.py and infer.py: one error line, exit 2)."""
    if handle.state != COMPLETE:
        raise UserError(f"{handle.backend} {handle.kind} job {handle.job_id} ended {handle.state}: "
                        f"{handle.detail or 'no detail'} (its logs are in {handle.output_dir})")
    return handle
