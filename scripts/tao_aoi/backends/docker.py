"""The docker backend: NVIDIA TAO containers from versions.yaml, one named container per job.

``visual_changenet train|inference|evaluate -e <spec>`` run in the pyt image and data-services
``embedding image_embeddings`` in the data_services image. Every host folder a job touches is
mounted at the same path (``-v P:P``), so the generated spec's paths are valid inside and out.
Inputs are mounted read-only, the job's output folder read-write. ``docker run`` is started in the
background with its output in ``<output_dir>/<kind>.log``; status and cancel go through
``docker inspect`` / ``docker kill`` on the container's name, so another process can track a job.
A container killed (exit 137, OOMKilled) or a daemon/registry connection failure is an infrastructure
fault the blocking calls retry in a fresh folder (faults.py); any other exit is the job's own.
Credentials are forwarded by name (``-e HF_TOKEN``), never by value. ``--gpus`` is ``all`` unless
``TAO_AOI_DOCKER_GPUS`` (or ``gpus=``) says otherwise; K workers on one host each get their own GPU
(``worker_gpus``: ``--gpus device=N``), since two TAO trainings on one GPU contend for its memory.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from tao_aoi import defaults
from tao_aoi.backends import faults, tao
from tao_aoi.backends.base import (COMPLETE, ERROR, PENDING, RUNNING, EmbedJob, InferJob, JobHandle,
                                   TrainJob)
from tao_aoi.backends.external import (ExternalBackend, TAO_STATUS, embed_job_dir, fresh_job_dir, log_tail,
                                       request_of, tao_final_status, write_record)
from tao_aoi.errors import UserError
from tao_aoi.state import run_lock

GPUS_ENV = "TAO_AOI_DOCKER_GPUS"
GPU_IDS_ENV = "TAO_AOI_GPU_IDS"


def worker_gpus(k: int) -> list[str]:
    """``--gpus`` values for K workers sharing this host, one GPU each: the ids in TAO_AOI_GPU_IDS
    (e.g. ``0,1,2,3``), else the GPUs ``nvidia-smi`` lists. Fewer GPUs than workers is an error."""
    raw = os.environ.get(GPU_IDS_ENV, "").strip()
    if raw:
        ids = [g.strip() for g in raw.split(",") if g.strip()]
        source = GPU_IDS_ENV
    else:
        smi = shutil.which("nvidia-smi")
        proc = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=60) if smi else None
        ids = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()] if proc and proc.returncode == 0 else []
        source = "nvidia-smi"
    if any(not g.isdigit() for g in ids):
        raise UserError(f"{GPU_IDS_ENV}={raw!r} must list GPU indices, e.g. 0,1,2,3")
    if len(ids) < k:
        raise UserError(f"--workers {k} on the docker backend needs {k} GPUs (one per worker) but {source} gives "
                        f"{len(ids)}; lower --workers or set {GPU_IDS_ENV}")
    return [f"device={g}" for g in ids[:k]]


def _client_alive(client: Any) -> bool:
    """Is the ``docker run`` client that started a job still running (same host, same process)?"""
    if not isinstance(client, dict) or client.get("host") != socket.gethostname():
        return False
    try:
        pid = int(client["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    if stat[stat.rindex(b")") + 2:][:1] == b"Z":  # exited, not yet reaped by its parent
        return False
    return client.get("start") is not None and run_lock.process_start(pid) == client.get("start")


_STATE = {"created": PENDING, "running": RUNNING, "restarting": RUNNING, "paused": RUNNING,
          "removing": RUNNING}


class DockerBackend(ExternalBackend):
    name = "docker"

    def __init__(self, *, docker: str = "docker", offline: bool | None = None,
                 gpus: str | None = "", shm_size: str = defaults.DOCKER_SHM_SIZE,
                 user: str | None = None, pass_env: Sequence[str] = defaults.PASS_ENV,
                 extra_mounts: Sequence[str] = (), extra_args: Sequence[str] = (),
                 poll_sec: float | None = None, timeout_sec: float | None = None,
                 max_retries: int | None = None) -> None:
        """``offline`` (default: env AIR_GAPPED=1) adds ``--pull=never`` and the Hugging Face offline
        switches; ``gpus`` (default: env TAO_AOI_DOCKER_GPUS, else ``all``) e.g. ``device=1``; ``gpus=None``
        drops ``--gpus``; ``user`` is ``uid:gid`` for ``--user`` (TAO fails
        when the uid has no passwd entry, so it is off by default); ``extra_mounts`` are host paths
        mounted read-only at the same path; ``extra_args`` go before the image."""
        super().__init__(poll_sec=poll_sec, timeout_sec=timeout_sec, max_retries=max_retries)
        self.docker = docker
        self.offline = tao.air_gapped() if offline is None else bool(offline)
        if gpus == "":
            gpus = os.environ.get(GPUS_ENV, "").strip() or defaults.DOCKER_GPUS
        self.gpus, self.shm_size, self.user = gpus, shm_size, user
        self.pass_env = tuple(pass_env)
        self.extra_mounts = tuple(extra_mounts)
        self.extra_args = tuple(extra_args)
        self._procs: dict[str, subprocess.Popen] = {}

    # -- submit ---------------------------------------------------------------------------------
    def submit_train(self, job: TrainJob) -> JobHandle:
        return self._submit("train", job, job.output_dir)

    def submit_infer(self, job: InferJob) -> JobHandle:
        return self._submit("infer", job, job.output_dir)

    def submit_evaluate(self, job: InferJob) -> JobHandle:
        """``visual_changenet evaluate`` (TAO's own test metrics in status.json); not in base.py
        because the stages evaluate through infer + analyze_kpi."""
        return self._submit("evaluate", job, job.output_dir)

    def submit_embed(self, job: EmbedJob) -> JobHandle:
        return self._submit("embed", job, embed_job_dir(job))

    def evaluate(self, job: InferJob) -> JobHandle:
        return self.run_job(lambda: self.submit_evaluate(job), job.output_dir, request_of("evaluate", job))

    def run_argv(self, name: str, tj: tao.TaoJob) -> list[str]:
        """The full ``docker run`` argv for one job (public so the tests and --dry-run can show it)."""
        argv = [self.docker, "run", "--rm", "--name", name, f"--shm-size={self.shm_size}"]
        if self.gpus:
            argv.append(f"--gpus={self.gpus}")
        if self.offline:
            argv.append("--pull=never")
        if self.user:
            argv += ["--user", self.user]
        mounts = tao.collapse_mounts([*tj.mounts, *((m, False) for m in self.extra_mounts)])
        for path, writable in mounts:
            argv += ["-v", f"{path}:{path}" + ("" if writable else ":ro")]
        for key in self.pass_env:
            if os.environ.get(key):
                argv += ["-e", key]  # docker copies the value from this process's environment
        for key, value in sorted(tj.env.items()):
            argv += ["-e", f"{key}={value}"]
        argv += [*self.extra_args, tj.image, *tj.command]
        return argv

    def _submit(self, kind: str, job: Any, job_dir: Path) -> JobHandle:
        exe = shutil.which(self.docker)
        if exe is None:
            raise UserError(f"'{self.docker}' not found on PATH; install Docker with the NVIDIA container toolkit, "
                            f"or use --backend local")
        job_dir = fresh_job_dir(job_dir)
        tj = tao.prepare(kind, job, job_dir, offline=self.offline)
        name = f"tao-aoi-{kind}-{uuid.uuid4().hex[:12]}"
        argv = self.run_argv(name, tj)
        record = dict(tj.record, backend=self.name, job_id=name, argv=argv, request=request_of(kind, job),
                      credentials_forwarded=[k for k in self.pass_env if os.environ.get(k)])
        write_record(job_dir, record)
        with open(record["log"], "ab") as log:
            proc = subprocess.Popen([exe, *argv[1:]], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._procs[name] = proc
        record["client"] = {"host": socket.gethostname(), "pid": proc.pid, "start": run_lock.process_start(proc.pid)}
        write_record(job_dir, record)  # a later process can tell "not created yet" from "gone"
        return JobHandle(self.name, kind, name, job_dir, RUNNING)

    # -- track ----------------------------------------------------------------------------------
    def _inspect(self, name: str) -> dict[str, Any] | None:
        """The container's State, or None once it is gone (``--rm`` removes it on exit); a daemon that
        does not answer is a lost poll (faults.PollLost), not a finished container."""
        try:
            proc = subprocess.run([self.docker, "inspect", "--type", "container", "--format", "{{json .State}}",
                                   name], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise faults.PollLost(f"docker inspect {name} timed out") from None
        if proc.returncode != 0:
            why = " ".join((proc.stderr or proc.stdout).split())
            if "no such container" in why.lower() or "no such object" in why.lower():
                return None
            raise faults.PollLost(f"docker inspect {name} failed: {why or f'exit {proc.returncode}'}")
        try:
            state = json.loads(proc.stdout.strip() or "null")
        except json.JSONDecodeError:
            return None
        return state if isinstance(state, dict) else None

    def _poll(self, handle: JobHandle, record: dict[str, Any]
              ) -> tuple[str, int | None, str, faults.Fault | None]:
        name = handle.job_id
        proc = self._procs.get(name)
        code: int | None = None
        oom: bool | None = None
        if proc is not None:
            code = proc.poll()
            if code is None:
                try:
                    info = self._inspect(name)
                except faults.PollLost:
                    info = None  # our own client is alive: the container is starting or running
                return (_STATE.get(str((info or {}).get("Status")), RUNNING) if info else PENDING), None, "", None
            self._procs.pop(name, None)
        else:  # submitted by another process: only docker knows
            info = self._inspect(name)
            if info is not None:
                status = str(info.get("Status"))
                if status in _STATE:
                    return _STATE[status], None, "", None
                code, oom = int(info.get("ExitCode", 1)), bool(info.get("OOMKilled"))
            elif _client_alive(record.get("client")):
                return PENDING, None, "", None  # its docker client still pulls or creates it
        if code not in (None, 0) or oom:
            fault = faults.classify_docker(code, log_tail(Path(record["log"]), 20), oom)
            return ERROR, code, self._failure_detail(record, code, fault), fault
        return COMPLETE, code, "", None

    def _failure_detail(self, record: dict[str, Any], code: int | None, fault: faults.Fault) -> str:
        log = Path(record["log"])
        status, message = tao_final_status(Path(record["job_dir"]) / TAO_STATUS)
        why = f"TAO reported {status}: {message}" if status == "FAILURE" and message else log_tail(log)
        if fault.infrastructure:
            hint = f" ({fault.what})"
        elif code in (125, 126, 127):
            hint = " (docker could not start it: image missing with --pull=never, bad mount or no GPU runtime)"
        else:
            hint = ""
        return f"container {record['job_id']} exited {code}{hint}: {why or 'no output'}; see {log}"

    def _conclude(self, record: dict[str, Any], exit_code: int | None) -> None:
        tao.conclude(record, exit_code)

    def cancel(self, handle: JobHandle) -> None:
        self._mark_canceled(handle)
        proc = self._procs.get(handle.job_id)
        deadline = time.monotonic() + 10
        while True:
            killed = subprocess.run([self.docker, "kill", handle.job_id], capture_output=True, text=True,
                                    timeout=60).returncode == 0
            # Our own client may still be creating the container (image loading): retry, then stop it.
            if killed or proc is None or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if proc is not None and proc.poll() is None and not killed:
            proc.terminate()
            proc.wait(timeout=10)
