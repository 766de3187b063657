"""The slurm backend: every job is an sbatch script in its own output folder.

By default a job runs this plugin's own CLI with the local backend on a compute node
(``<plugin>/.venv/bin/python <plugin>/scripts/train.py --backend local ...``), so the plugin folder
must be on storage the nodes share. With ``container=True`` it runs TAO instead, through
``srun --container-image=<image from versions.yaml>`` (pyxis/enroot), with the same per-job spec,
same-path mounts and checkpoint publishing as the docker backend.

Tracking: ``squeue`` while the job is queued or running, ``scontrol show job`` for its final
JobState (clusters without accounting have no ``sacct``); each script also leaves
``slurm-<id>.rc`` so a job the controller has already forgotten can still be judged. Cancel is
``scancel``. A COMPLETED job is only COMPLETE once its output files are verified.

Faults (faults.py): scripts are submitted with ``--requeue`` and ``--open-mode=append``, so SLURM
itself requeues a job whose node fails or that is preempted (or that an admin requeues), where the
site allows it; the script moves what the interrupted attempt wrote to ``<dir>.attempt<N>`` before
running again, and the log keeps every attempt. Each requeue the poll sees is announced and counts
as an attempt against ``--max-retries`` (past it the job is canceled). A job that ends NODE_FAIL,
BOOT_FAIL, PREEMPTED or OUT_OF_MEMORY, or killed (exit 137), is resubmitted by the blocking calls in
a fresh folder; a scheduler that does not answer is polled again (a lost poll), never resubmitted.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from tao_aoi import atomic, defaults, interpreter
from tao_aoi.backends import faults, tao
from tao_aoi.backends.base import (CANCELED, COMPLETE, ERROR, PENDING, RUNNING, EmbedJob, InferJob, JobHandle,
                                   TrainJob)
from tao_aoi.backends.external import (ATTEMPT_SUFFIX, RECORD_NAME, ExternalBackend, check_expected,
                                       contract_outputs, embed_job_dir, fresh_job_dir, log_tail, read_record,
                                       remove_stale, request_of, require_inputs, write_record)
from tao_aoi.errors import UserError

# SLURM JobState -> base.py state. Anything unlisted counts as ERROR once the job has left the queue.
STATE_MAP = {
    "PENDING": PENDING, "CONFIGURING": PENDING, "REQUEUED": PENDING, "REQUEUE_HOLD": PENDING,
    "REQUEUE_FED": PENDING, "RESV_DEL_HOLD": PENDING,
    "RUNNING": RUNNING, "COMPLETING": RUNNING, "STAGE_OUT": RUNNING, "SIGNALING": RUNNING,
    "RESIZING": RUNNING, "SUSPENDED": RUNNING, "STOPPED": RUNNING,
    "COMPLETED": COMPLETE, "CANCELLED": CANCELED,
    "FAILED": ERROR, "TIMEOUT": ERROR, "NODE_FAIL": ERROR, "OUT_OF_MEMORY": ERROR, "BOOT_FAIL": ERROR,
    "DEADLINE": ERROR, "PREEMPTED": ERROR, "SPECIAL_EXIT": ERROR, "REVOKED": ERROR,
}
RESOURCE_KEYS = ("partition", "account", "cpus", "mem", "time", "gres")
REQUEUE_CAUSE = re.compile(r"\*\*\* JOB \d+ ON \S+ CANCELLED AT \S+ DUE TO ([A-Z][A-Z ]*[A-Z])")
# sbatch's words for a controller it could not reach: the submission is tried again, not refused.
SUBMIT_LOST = ("unable to contact slurm controller", "socket timed out", "connection refused",
               "slurm_persist_conn_open", "temporarily unavailable")
ENV_PREFIX = "TAO_AOI_SLURM_"  # e.g. TAO_AOI_SLURM_PARTITION=gpu, TAO_AOI_SLURM_CONTAINER=1


def map_state(job_state: str) -> str:
    return STATE_MAP.get(job_state.split()[0].rstrip("+").upper(), ERROR) if job_state.strip() else PENDING


def pyxis_image(image: str) -> str:
    """Docker-style ``nvcr.io/nvidia/x:tag`` -> pyxis ``nvcr.io#nvidia/x:tag`` (pyxis would otherwise look
    the name up on Docker Hub); squashfs paths and names already in pyxis form pass through."""
    if "#" in image or image.startswith(("/", "./")):
        return image
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


class SlurmBackend(ExternalBackend):
    name = "slurm"

    def __init__(self, *, partition: str | None = None, account: str | None = None, cpus: int | None = None,
                 mem: str | None = None, time: str | None = None, gres: str | None = None,
                 extra_sbatch: Sequence[str] = (), container: bool | None = None, extra_mounts: Sequence[str] = (),
                 python: str | None = None, offline: bool | None = None,
                 poll_sec: float | None = None, timeout_sec: float | None = None,
                 max_retries: int | None = None) -> None:
        """Resources go to ``#SBATCH`` lines (``mem``/``time`` in sbatch syntax, e.g. ``16G``, ``02:00:00``;
        ``gres`` e.g. ``gpu:1``; unset leaves the site default). Each unset resource and ``container`` is
        read from ``TAO_AOI_SLURM_<NAME>`` (e.g. TAO_AOI_SLURM_PARTITION), so ``--backend slurm`` in the
        stage commands needs no extra flags. ``extra_sbatch`` are further sbatch options (``--qos=high``).
        ``container=True`` runs TAO via pyxis instead of the local backend; ``extra_mounts`` are host
        paths the container also sees (read-only, same path). ``python`` is the interpreter on the nodes
        (default: the plugin's .venv)."""
        super().__init__(poll_sec=poll_sec, timeout_sec=timeout_sec, max_retries=max_retries)
        given = {"partition": partition, "account": account, "cpus": cpus, "mem": mem, "time": time, "gres": gres}
        self.resources = {k: v if v is not None else (os.environ.get(f"{ENV_PREFIX}{k.upper()}") or None)
                          for k, v in given.items()}
        if self.resources["cpus"] is None:
            self.resources["cpus"] = defaults.SLURM_CPUS
        try:
            self.resources["cpus"] = int(self.resources["cpus"])
        except ValueError:
            raise UserError(f"{ENV_PREFIX}CPUS={self.resources['cpus']!r} is not a whole number of CPUs") from None
        if container is None:
            container = os.environ.get(f"{ENV_PREFIX}CONTAINER", "").strip() == "1"
        self.extra_sbatch = tuple(extra_sbatch)
        self.container = bool(container)
        self.extra_mounts = tuple(extra_mounts)
        self.python = python
        self.offline = tao.air_gapped() if offline is None else bool(offline)

    # -- submit ---------------------------------------------------------------------------------
    def submit_train(self, job: TrainJob) -> JobHandle:
        require_inputs({"--spec": job.spec, "--train-csv": job.train_csv, "--val-csv": job.val_csv,
                        "--images-root": job.images_root, "--init-checkpoint": job.init_checkpoint})
        job_dir = fresh_job_dir(job.output_dir)
        if self.container:
            return self._submit_tao("train", job, job_dir)
        argv = [*self._cli("train.py"), "--spec", _a(job.spec), "--train-csv", _a(job.train_csv),
                "--val-csv", _a(job.val_csv), "--images-root", _a(job.images_root), "--output-dir", str(job_dir)]
        if job.init_checkpoint is not None:
            argv += ["--init-checkpoint", _a(job.init_checkpoint)]
        if job.row_weights is not None:  # the node runs the local model, which takes them
            argv += ["--row-weights", _a(job.row_weights)]
        for key, value in job.overrides.items():
            argv += ["--set", f"{key}={_yaml_scalar(key, value)}"]
        return self._submit("train", argv, job_dir, {"expect": _strs(contract_outputs("train", job_dir)),
                                                     "request": request_of("train", job)})

    def submit_infer(self, job: InferJob) -> JobHandle:
        require_inputs({"--spec": job.spec, "--checkpoint": job.checkpoint, "--csv": job.csv,
                        "--images-root": job.images_root})
        job_dir = fresh_job_dir(job.output_dir)
        if self.container:
            return self._submit_tao("infer", job, job_dir)
        argv = [*self._cli("infer.py"), "--spec", _a(job.spec), "--checkpoint", _a(job.checkpoint),
                "--csv", _a(job.csv), "--images-root", _a(job.images_root), "--output-dir", str(job_dir)]
        return self._submit("infer", argv, job_dir, {"expect": _strs(contract_outputs("infer", job_dir)),
                                                     "input_csv": _a(job.csv), "request": request_of("infer", job)})

    def submit_embed(self, job: EmbedJob) -> JobHandle:
        require_inputs({"embed csv": job.csv, "images root": job.images_root, "spec": job.spec})
        job_dir = fresh_job_dir(embed_job_dir(job))
        if self.container:
            return self._submit_tao("embed", job, job_dir)
        request = {"csv": _a(job.csv), "images_root": _a(job.images_root), "spec": _a(job.spec),
                   "output": _a(job.output), "settings": dict(job.settings)}
        atomic.write_json(job_dir / "embed_job.json", request)
        argv = [self._python(), "-m", "tao_aoi.backends.job_runner", "embed", str(job_dir / "embed_job.json")]
        expect = _strs(contract_outputs("embed", job_dir, Path(_a(job.output))))
        return self._submit("embed", argv, job_dir, {"expect": expect, "request": request_of("embed", job)},
                            env={"PYTHONPATH": str(Path(interpreter.PLUGIN_ROOT) / "scripts")})

    def submit_command(self, argv: Sequence[str], *, output_dir: str | os.PathLike[str], name: str = "command",
                       expect: Sequence[str | os.PathLike[str]] = (), env: Mapping[str, str] | None = None,
                       **resources: Any) -> JobHandle:
        """Run any argv as one sbatch job (AutoML trials, custom steps). ``expect``: files that must exist
        for COMPLETE; ``env``: non-secret variables to export (the submitting environment is passed on by
        sbatch anyway, so credentials need no mention); ``resources`` override partition/account/cpus/
        mem/time/gres for this job only."""
        unknown = set(resources) - set(RESOURCE_KEYS)
        if unknown:
            raise UserError(f"submit_command: unknown resource(s) {', '.join(sorted(unknown))}; "
                            f"use {', '.join(RESOURCE_KEYS)}")
        if not argv:
            raise UserError("submit_command: empty argv")
        job_dir = fresh_job_dir(Path(output_dir))
        request = command_request(argv, expect, env, resources)
        return self._submit(name, [str(a) for a in argv], job_dir,
                            {"expect": [_a(p) for p in expect], "request": request}, env=env, resources=resources)

    def run_command(self, argv: Sequence[str], **kwargs: Any) -> JobHandle:
        """``submit_command`` and wait (infrastructure faults retried); any other end is a UserError."""
        request = command_request(argv, kwargs.get("expect", ()), kwargs.get("env"),
                                  {k: v for k, v in kwargs.items() if k in RESOURCE_KEYS})
        return self.run_job(lambda: self.submit_command(argv, **kwargs), Path(kwargs["output_dir"]), request)

    def _submit_tao(self, kind: str, job: Any, job_dir: Path) -> JobHandle:
        tj = tao.prepare(kind, job, job_dir, offline=self.offline)
        mounts = tao.collapse_mounts([*tj.mounts, *((m, False) for m in self.extra_mounts)])
        bad = [p for p, _ in mounts if "," in p or ":" in p]
        if bad:
            raise UserError(f"{bad[0]}: pyxis --container-mounts cannot carry a path with ',' or ':'; "
                            f"rename the folder or use --backend docker")
        srun = ["srun", f"--container-image={pyxis_image(tj.image)}",
                "--container-mounts=" + ",".join(f"{p}:{p}" + ("" if rw else ":ro") for p, rw in mounts),
                f"--container-workdir={job_dir}", f"--output={_pattern_safe(tj.record['log'])}", *tj.command]
        return self._submit(kind, srun, job_dir, tj.record, env=tj.env)

    def _submit(self, kind: str, argv: list[str], job_dir: Path, record: dict[str, Any], *,
                env: Mapping[str, str] | None = None, resources: Mapping[str, Any] | None = None) -> JobHandle:
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            raise UserError("sbatch not found on PATH; run on a SLURM login node or use --backend local")
        script = job_dir / f"{_safe_name(kind)}.sbatch"
        keep = sorted({*os.listdir(job_dir), script.name, RECORD_NAME})  # what the submission prepared
        atomic.write_text(script, self.script_text(kind, argv, job_dir, env=env, resources=resources, keep=keep))
        record = dict(record, backend=self.name, kind=kind, job_dir=str(job_dir), job_id=None, script=str(script),
                      argv=argv, state=None)
        record.setdefault("tao", False)
        if not record["tao"]:  # (container jobs were cleared when their spec was prepared)
            remove_stale(Path(p) for p in record["expect"])
        write_record(job_dir, record)  # before sbatch: a crash after it still leaves the folder marked busy
        proc = self._sbatch(sbatch, script)
        job_id = proc.stdout.strip().split(";")[0]
        if proc.returncode != 0 or not job_id.isdigit():
            why = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
            record.update(state=ERROR, detail=f"sbatch refused the job: {why}")
            write_record(job_dir, record)
            raise UserError(f"sbatch refused {script}: {why}; check partition/account/resources")
        record["job_id"] = job_id
        record.setdefault("log", str(job_dir / f"slurm-{job_id}.log"))
        record["slurm_log"] = str(job_dir / f"slurm-{job_id}.log")
        write_record(job_dir, record)
        return JobHandle(self.name, kind, job_id, job_dir, PENDING)

    def _sbatch(self, sbatch: str, script: Path) -> subprocess.CompletedProcess:
        """sbatch, tried again (with the retry backoff) while the controller cannot be reached."""
        for retry in range(self.policy.max_retries + 1):
            try:
                proc = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True, timeout=120)
                why = " ".join((proc.stderr or proc.stdout).split())
            except subprocess.TimeoutExpired:
                proc, why = subprocess.CompletedProcess([sbatch], 1, "", "sbatch timed out"), "sbatch timed out"
            lost = proc.returncode != 0 and any(p in why.lower() for p in SUBMIT_LOST)
            if not lost or retry == self.policy.max_retries:
                return proc
            delay = self.policy.delay(retry + 1)
            faults.announce(f"sbatch could not reach the controller for {script} ({why}); submitting again after "
                            f"{delay:g} s")
            time.sleep(delay)
        return proc

    def script_text(self, kind: str, argv: Sequence[str], job_dir: Path, *, env: Mapping[str, str] | None = None,
                    resources: Mapping[str, Any] | None = None, keep: Sequence[str] = ()) -> str:
        """The batch script: ``#!``, ``#SBATCH`` resources, log path and requeue, the step that sets a
        requeued job's interrupted attempt aside (``keep``: the names the submission prepared, left in
        place), the command, its exit code."""
        res = {**self.resources, **(resources or {})}
        options = [f"--job-name=tao-aoi-{_safe_name(kind)}",
                   f"--output={_pattern_safe(str(job_dir / 'slurm-%j.log'), keep='%j')}",
                   "--open-mode=append", "--requeue", f"--chdir={job_dir}"]
        if res.get("cpus"):
            options.append(f"--cpus-per-task={int(res['cpus'])}")
        for key in ("mem", "time", "partition", "account", "gres"):
            if res.get(key):
                options.append(f"--{key}={res[key]}")
        options += self.extra_sbatch
        lines = ["#!/bin/bash", f"# tao-aoi {kind} job written by the slurm backend; resubmit with: sbatch <this file>"]
        lines += [f"#SBATCH {_directive(o)}" for o in options]
        lines.append("set -u")
        lines += _set_aside_on_requeue(job_dir, [*keep, RECORD_NAME])
        for key, value in sorted((env or {}).items()):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise UserError(f"environment name {key!r} is not a shell variable name")
            lines.append(f"export {key}={shlex.quote(str(value))}")
        rc = shlex.quote(str(job_dir)) + '/slurm-"$SLURM_JOB_ID".rc'
        lines += [shlex.join(argv), "rc=$?",
                  f"printf '%s\\n' \"$rc\" > {rc}.tmp && mv -f {rc}.tmp {rc}", 'exit "$rc"']
        return "\n".join(lines) + "\n"

    def _python(self) -> str:
        if self.python:
            return self.python
        venv = Path(interpreter.venv_python())
        return str(venv) if venv.exists() else sys.executable

    def _cli(self, script: str) -> list[str]:
        return [self._python(), str(Path(interpreter.PLUGIN_ROOT) / "scripts" / script), "--backend", "local"]

    # -- track ----------------------------------------------------------------------------------
    def _poll(self, handle: JobHandle, record: dict[str, Any]
              ) -> tuple[str, int | None, str, faults.Fault | None]:
        job_id = handle.job_id
        queued = _poll_run(["squeue", "-h", "-j", job_id, "-O", "State,RestartCnt"])
        if queued.returncode == 0 and queued.stdout.strip():
            tokens = queued.stdout.split()
            over = self._requeued(handle, record, int(tokens[1]) if len(tokens) > 1 and tokens[1].isdigit() else 0)
            if over is not None:
                return over
            state = map_state(tokens[0])
            if state in (PENDING, RUNNING):
                return state, None, "", None
        info = _poll_run(["scontrol", "-o", "show", "job", job_id])
        if info.returncode != 0:
            if "invalid job id" in (info.stderr + info.stdout).lower():
                return self._forgotten(record)
            raise faults.PollLost(f"scontrol show job {job_id} failed: {' '.join(info.stderr.split())} "
                                  f"(is the controller reachable? SLURM_CONF)")
        fields = dict(tok.split("=", 1) for tok in info.stdout.split() if "=" in tok)
        restarts = fields.get("Restarts", "0")
        job_state = fields.get("JobState", "")
        state = map_state(job_state)
        over = self._requeued(handle, record, int(restarts) if restarts.isdigit() else 0, finished=state == COMPLETE)
        if over is not None:
            return over
        if state != ERROR:
            return state, (0 if state == COMPLETE else None), "", None
        exit_code = fields.get("ExitCode", "?")
        reason = fields.get("Reason", "None")
        code_text, _, signal_text = exit_code.partition(":")
        code = int(code_text) if code_text.isdigit() else None
        fault = faults.classify_slurm(job_state, code, int(signal_text) if signal_text.isdigit() else None)
        return ERROR, code, (f"slurm job {job_id} {job_state} (ExitCode={exit_code}, Reason={reason}"
                             f"{', ' + fault.what if fault.infrastructure else ''}): "
                             f"{log_tail(Path(record['slurm_log']), 2) or 'no output'}; see {record['log']}"), fault

    def _requeued(self, handle: JobHandle, record: dict[str, Any], restarts: int, *, finished: bool = False
                  ) -> tuple[str, int | None, str, faults.Fault | None] | None:
        """Count SLURM's own requeues of the job as attempts: announce each one; past --max-retries
        cancel the job (unless it has already ``finished``) and return its ERROR (an infrastructure
        fault that is not retried again)."""
        if restarts <= handle.restarts:
            return None
        handle.restarts = restarts
        cause = _requeue_cause(Path(record.get("slurm_log") or record["log"]))
        attempt = int(record.get("attempt") or 1) + restarts
        record["restarts"] = restarts
        write_record(handle.output_dir, record)
        allowed = self.policy.max_retries + 1
        if attempt <= allowed or finished:
            faults.announce(f"slurm requeued {handle.kind} job {handle.job_id} ({cause}); attempt {attempt} of "
                            f"{allowed} runs under the same job id, the interrupted attempt's files set aside as "
                            f"{handle.output_dir}{ATTEMPT_SUFFIX}<N>")
            return None
        _run(["scancel", handle.job_id])
        fault = faults.Fault(True, f"slurm requeued it {restarts} time(s) ({cause})")
        return ERROR, None, (f"slurm job {handle.job_id} was requeued {restarts} time(s), the last after {cause}; "
                             f"canceled at attempt {attempt} (more than {allowed}); see {record['log']}"), fault

    def _forgotten(self, record: dict[str, Any]) -> tuple[str, int | None, str, faults.Fault | None]:
        """The controller purged the job (MinJobAge passed): judge it by the exit code its script left."""
        rc_file = Path(record["job_dir"]) / f"slurm-{record['job_id']}.rc"
        try:
            code = int(rc_file.read_text().strip())
        except (OSError, ValueError):
            return ERROR, None, (f"slurm no longer knows job {record['job_id']} and it left no {rc_file.name} "
                                 f"(killed, canceled or its node failed); see {record['log']}"), \
                faults.Fault(True, "the job vanished without an exit code (killed or its node failed)")
        if code == 0:
            return COMPLETE, 0, "", None
        return ERROR, code, (f"slurm job {record['job_id']} exited {code}: "
                             f"{log_tail(Path(record['slurm_log']), 2) or 'no output'}; see {record['log']}"), \
            faults.classify_slurm("FAILED", code)

    def _conclude(self, record: dict[str, Any], exit_code: int | None) -> None:
        if record.get("tao"):
            tao.conclude(record, exit_code)
        else:
            check_expected(record)

    def cancel(self, handle: JobHandle) -> None:
        self._mark_canceled(handle)
        proc = _run(["scancel", handle.job_id])
        if proc.returncode != 0 and "already completing or completed" not in proc.stderr.lower() \
                and "invalid job id" not in proc.stderr.lower():
            raise UserError(f"scancel {handle.job_id} failed: {' '.join(proc.stderr.split())}")

    def job_record(self, handle: JobHandle) -> dict[str, Any]:
        """The job's record (script, argv, log paths, verdict) for reports and debugging."""
        return read_record(handle.output_dir)


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    exe = shutil.which(argv[0])
    if exe is None:
        raise UserError(f"{argv[0]} not found on PATH; run on a SLURM login node or use --backend local")
    return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=60)


def _poll_run(argv: list[str]) -> subprocess.CompletedProcess:
    """A status query; no answer within its timeout is a lost poll."""
    try:
        return _run(argv)
    except subprocess.TimeoutExpired:
        raise faults.PollLost(f"{argv[0]} gave no answer within 60 s") from None


def _requeue_cause(log: Path) -> str:
    """Why SLURM requeued a job, from the line slurmstepd writes into its log (``DUE TO NODE FAILURE``)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")[-20000:]
    except OSError:
        text = ""
    found = REQUEUE_CAUSE.findall(text)
    return found[-1].lower() if found else "a node failure, a preemption or a requeue by an admin"


def _set_aside_on_requeue(job_dir: Path, keep: Sequence[str]) -> list[str]:
    """Script lines: on a restart (SLURM_RESTART_COUNT > 0) move what the interrupted attempt wrote to
    ``<dir>.attempt<N>`` (the first free N, as the backend's own retries name them), leaving what the
    submission prepared (``keep``) and the job's logs, so this attempt starts in a fresh folder."""
    d = shlex.quote(str(job_dir))
    aside = f'{d}{ATTEMPT_SUFFIX}"$n"'
    names = "|".join(shlex.quote(k) for k in sorted(set(keep)))
    return [
        'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then  # requeued by slurm: keep the interrupted attempt aside',
        f"  n=1; while [ -e {aside} ]; do n=$((n + 1)); done; mkdir -p {aside}",
        f"  for f in {d}/* {d}/.[!.]*; do",
        f'    case "${{f##*/}}" in {names}|slurm-*|.{RECORD_NAME}.*) ;; *) [ -e "$f" ] && mv -f "$f" {aside}/ ;; esac',
        "  done",
        "fi",
    ]


def command_request(argv: Sequence[Any], expect: Sequence[Any], env: Mapping[str, str] | None,
                    resources: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``submit_command`` job was asked to do (see external.request_of)."""
    return {"kind": "command", "argv": [str(a) for a in argv], "expect": [_a(p) for p in expect],
            "env": dict(env or {}), "resources": {k: str(v) for k, v in sorted(resources.items())}}


def _yaml_scalar(key: str, value: Any) -> str:
    """One-line YAML for ``train.py --set key=value`` that parses back to the same value."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    text = text[:-len("\n...\n")] if text.endswith("\n...\n") else text.rstrip("\n")
    if "\n" in text or yaml.safe_load(text) != value:
        raise UserError(f"override {key}={value!r} cannot be passed to train.py --set; use a plain YAML value")
    return text


def _strs(paths: Sequence[Path]) -> list[str]:
    return [str(p) for p in paths]


def _a(p: str | os.PathLike[str]) -> str:
    return os.path.abspath(p)


def _safe_name(kind: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", kind) or "job"


def _pattern_safe(path: str, keep: str = "") -> str:
    """Escape ``%`` (a SLURM filename pattern) except in ``keep``."""
    if keep:
        return keep.join(part.replace("%", "%%") for part in path.split(keep))
    return path.replace("%", "%%")


def _directive(option: str) -> str:
    """One ``#SBATCH`` option; sbatch reads double quotes there, so a value with spaces is quoted."""
    if "\n" in option or '"' in option:
        raise UserError(f"sbatch option {option!r} contains a newline or double quote; rename the path")
    key, eq, value = option.partition("=")
    if eq and any(c.isspace() for c in value):
        return f'{key}="{value}"'
    return option
