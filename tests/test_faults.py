"""Infrastructure faults are retried, mistakes never (backends/faults.py, ExternalBackend.run_job).

Classification tables, the policy, then real processes: the fake TAO ``docker`` (support/fake_docker.py)
kills the k-th container (exit 137) or answers as a stopped daemon (exit 125), and shell stand-ins
for the slurm clients lose polls. The real-cluster cases (a requeue, a killed job) are in
test_slurm_backend.py; the whole pipeline with a fault in test_docker_pipeline.py and test_disk_full.py.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_script
from hypothesis import given
from hypothesis import strategies as st

from support import tao_workspace
from support.tao_workspace import train_job
from support.docker_fixture import fake_docker  # noqa: F401
from tao_aoi import defaults
from tao_aoi.backends import faults, get_backend
from tao_aoi.backends.base import COMPLETE
from tao_aoi.backends.external import read_record
from tao_aoi.errors import UserError


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setenv(faults.BACKOFF_ENV, "0")


@pytest.fixture
def ws(tmp_path) -> Path:
    return tao_workspace.make(tmp_path / "ws")


def docker_runs(state: Path) -> int:
    return sum(json.loads(x)["argv"][0] == "run" for x in (state / "calls.jsonl").read_text().splitlines())


class Heard(list):
    """The announcements of a block (faults.observe)."""

    def __call__(self, line: str) -> None:
        self.append(line)


# -- classification and policy ---------------------------------------------------------------------

@pytest.mark.parametrize("code, output, oom, infrastructure", [
    (137, "", None, True),                                    # OOM killer or kill -9: no output at all
    (0, "", True, True),                                      # docker inspect says OOMKilled
    (125, "docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon "
          "running?", None, True),
    (125, "Unable to find image 'nvcr.io/x:1' locally\ndocker: Error response from daemon: Get "
          "\"https://nvcr.io/v2/\": net/http: TLS handshake timeout.", None, True),
    (125, "docker: error waiting for container: unexpected EOF", None, True),
    (125, "docker: Error response from daemon: pull access denied for nvcr.io/x, repository does not exist or "
          "may require 'docker login'", None, False),
    (125, "docker: Unable to find image 'nvcr.io/x:1' locally", None, False),   # --pull=never: stage the image
    (125, "docker: Error response from daemon: invalid mount config for type \"bind\": bind source path does not "
          "exist: /data", None, False),
    (125, "docker: Error response from daemon: could not select device driver \"\" with capabilities: [[gpu]]",
     None, False),
    (127, "visual_changenet: command not found", None, False),
    (1, "Error merging 'tao_spec.yaml' with schema\nKey 'bogus' not in 'TrainConfig'", None, False),
    (1, "requests.exceptions.ConnectionError: connection refused (telemetry)\nAssertionError: Input image size",
     None, False),                                            # the job's own log, not docker speaking
    (3, "RuntimeError: NCCL init failed", None, False),
])
def test_docker_failures_are_classified(code, output, oom, infrastructure):
    fault = faults.classify_docker(code, output, oom)
    assert fault.infrastructure is infrastructure, fault


@pytest.mark.parametrize("state, code, signal, infrastructure", [
    ("NODE_FAIL", 0, 15, True), ("BOOT_FAIL", None, None, True), ("PREEMPTED", 0, 0, True),
    ("OUT_OF_MEMORY", 0, 9, True), ("FAILED", 137, 0, True), ("FAILED", 0, 9, True),
    ("FAILED", 1, 0, False), ("FAILED", 2, 0, False), ("TIMEOUT", 0, 1, False), ("CANCELLED by 0", 0, 15, False),
    ("DEADLINE", 0, 0, False),
])
def test_slurm_states_are_classified(state, code, signal, infrastructure):
    assert faults.classify_slurm(state, code, signal).infrastructure is infrastructure


def test_policy_backoff_doubles_up_to_its_cap(monkeypatch):
    monkeypatch.delenv(faults.BACKOFF_ENV)
    p = faults.policy()
    assert p.max_retries == defaults.MAX_RETRIES == 2
    assert [p.delay(k) for k in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert p.delay(20) == defaults.RETRY_BACKOFF_MAX_SEC
    monkeypatch.setenv(faults.BACKOFF_ENV, "0.5")
    assert faults.policy(5).delay(2) == 1.0 and faults.policy(5).max_retries == 5
    with faults.configured(0):  # run_pipeline.py --max-retries 0, for the backends its stages create
        assert faults.policy().max_retries == 0 and faults.policy(3).max_retries == 3
    assert faults.policy().max_retries == 2
    monkeypatch.setenv(faults.BACKOFF_ENV, "soon")
    with pytest.raises(UserError, match="TAO_AOI_RETRY_BACKOFF_SEC='soon' is not a number"):
        faults.policy()


@given(code=st.integers(min_value=1, max_value=255).filter(lambda c: c not in (125, faults.KILLED_CODE)),
       words=st.lists(st.sampled_from([*faults.DOCKER_INFRASTRUCTURE, *faults.DOCKER_MISTAKES, "Traceback", "CUDA",
                                       "out of memory", "Killed", "\n", " "]), max_size=12),
       noise=st.text(max_size=80))
def test_a_jobs_own_log_never_makes_its_failure_a_fault_of_the_machine(code, words, noise):
    """Only docker speaking (exit 125, "docker:", "Error response from daemon") or a kill (137) is the
    machine's; whatever the job printed, its own non-zero exit is never retried."""
    text = (" ".join(words) + noise).replace("docker:", "").replace("Docker:", "")
    text = text.lower().replace("error response from daemon", "")
    assert faults.classify_docker(code, text).infrastructure is False


@given(retry=st.integers(min_value=1, max_value=60), base=st.floats(min_value=0, max_value=1e4),
       cap=st.floats(min_value=0, max_value=1e5))
def test_backoff_never_shrinks_and_never_passes_its_cap(retry, base, cap):
    p = faults.Policy(backoff_sec=base, backoff_max_sec=cap)
    assert 0 <= p.delay(retry) <= p.delay(retry + 1) <= cap


@given(st.integers(min_value=1, max_value=10_000))
def test_the_failed_trial_allowance_is_the_stated_share_at_least_one(n):
    from tao_aoi.automl.study import failure_allowance

    a = failure_allowance(n)
    assert 1 <= a <= max(1, n) and a == max(1, int(defaults.AUTOML_MAX_FAILED_SHARE * n + 1e-9))
    assert failure_allowance(n + 1) >= a


def test_announcements_go_to_the_observer_else_stderr(capsys):
    heard = Heard()
    with faults.observe(heard), faults.scope("automl phase1 trial 3"):
        faults.announce("docker train job x, attempt 1 of 3:\n container killed")
    assert heard == ["automl phase1 trial 3: docker train job x, attempt 1 of 3: container killed"]
    faults.announce("lost a poll")
    assert capsys.readouterr().err == "retry: lost a poll\n"


# -- docker: the fake TAO kills a container / the daemon is down -------------------------------------

def test_a_killed_container_is_retried_in_a_fresh_folder_and_delivers_the_same(fake_docker, ws, tmp_path,
                                                                                 monkeypatch):
    clean = get_backend("docker", poll_sec=0.05).train(train_job(ws, tmp_path / "clean"))
    monkeypatch.setenv("FAKE_TAO_KILL_RUNS", "2")  # this job's first container (the clean one was run 1)
    heard = Heard()
    out = tmp_path / "t"
    with faults.observe(heard):
        h = get_backend("docker", poll_sec=0.05).train(train_job(ws, out))
    assert h.state == COMPLETE and docker_runs(fake_docker) == 3
    assert (out / "best.ckpt").read_bytes() == (clean.output_dir / "best.ckpt").read_bytes()
    # the failed attempt is kept whole beside the job's folder; the new one started clean
    kept = tmp_path / "t.attempt1"
    assert (kept / "model_epoch_000_step_00001.pth").read_bytes() == b"partial"
    assert read_record(kept)["state"] == "ERROR" and read_record(kept)["fault"]["infrastructure"] is True
    assert not (out / "model_epoch_000_step_00001.pth").exists() or \
        (out / "model_epoch_000_step_00001.pth").read_bytes() != b"partial"
    rec = read_record(out)
    assert rec["attempt"] == 2 and [e["kept"] for e in rec["earlier_attempts"]] == [str(kept)]
    assert "container killed (exit 137" in rec["earlier_attempts"][0]["fault"]
    assert len(heard) == 1 and "attempt 1 of 3: container killed (exit 137" in heard[0] and str(kept) in heard[0]


def test_a_stopped_daemon_is_retried(fake_docker, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_DAEMON_DOWN_RUNS", "1")
    heard = Heard()
    with faults.observe(heard):
        h = get_backend("docker", poll_sec=0.05).train(train_job(ws, tmp_path / "t"))
    assert h.state == COMPLETE and "docker daemon unreachable" in heard[0]


def test_the_jobs_own_errors_are_never_retried(fake_docker, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_MODE", "exit3")
    heard = Heard()
    with faults.observe(heard), pytest.raises(UserError, match="exited 3: .*NCCL init failed") as err:
        get_backend("docker", poll_sec=0.05).train(train_job(ws, tmp_path / "t"))
    assert docker_runs(fake_docker) == 1 and not heard and "attempt" not in str(err.value)
    assert read_record(tmp_path / "t")["fault"] == {"infrastructure": False, "what": "the job failed (exit 3)"}


def test_past_the_bound_a_hard_stop_names_the_fault_and_a_rerun_resumes(fake_docker, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_KILL_RUNS", "1,2,3")
    out = tmp_path / "t"
    with pytest.raises(UserError) as err:
        get_backend("docker", poll_sec=0.05).train(train_job(ws, out))
    text = str(err.value)
    assert "after 3 attempt(s): infrastructure fault, container killed (exit 137" in text
    assert "still there after 2 retries (--max-retries)" in text and "rerun the same command" in text
    assert "\n" not in text and docker_runs(fake_docker) == 3
    assert sorted(p.name for p in tmp_path.glob("t.attempt*")) == ["t.attempt1", "t.attempt2"]
    # rerun (the machine is fine again): the third failed attempt is set aside, a fourth runs clean
    h = get_backend("docker", poll_sec=0.05).train(train_job(ws, out))
    assert h.state == COMPLETE and (tmp_path / "t.attempt3").is_dir() and (out / "best.ckpt").is_file()
    with pytest.raises(UserError, match="after 1 attempt"):  # --max-retries 0: one attempt only
        monkeypatch.setenv("FAKE_TAO_KILL_RUNS", "5")
        get_backend("docker", poll_sec=0.05, max_retries=0).train(train_job(ws, tmp_path / "u"))


def test_a_job_left_running_by_a_dead_process_is_picked_up_not_run_twice(fake_docker, ws, tmp_path, monkeypatch):
    """The runner killed mid-job (or out of contact past the grace period): rerunning the same command
    waits for that job instead of refusing the folder or starting the job a second time."""
    monkeypatch.setenv("FAKE_TAO_EPOCH_SEC", "0.4")
    out = tmp_path / "t"
    first = get_backend("docker", poll_sec=0.05).submit_train(train_job(ws, out))  # its submitter "dies" here
    heard = Heard()
    with faults.observe(heard):
        h = get_backend("docker", poll_sec=0.05).train(train_job(ws, out))
    assert h.state == COMPLETE and h.job_id == first.job_id and docker_runs(fake_docker) == 1
    assert heard and heard[0].startswith(f"picked up docker train job {first.job_id}")
    # another request in a folder whose job still runs: refused as before (never mixed)
    other = get_backend("docker", poll_sec=0.05).submit_train(train_job(ws, tmp_path / "v"))
    with pytest.raises(UserError, match="may still be running"):
        get_backend("docker", poll_sec=0.05).train(train_job(ws, tmp_path / "v", overrides={"train.optim.lr": 1e-3}))
    get_backend("docker").cancel(other)


def test_train_py_takes_max_retries(fake_docker, ws, tmp_path):
    proc = run_script("train.py", "--backend", "docker", "--spec", ws / "specs/baseline_spec.yaml", "--train-csv",
                      ws / "train/base/training_set.csv", "--val-csv", ws / "train/base/validation_set.csv",
                      "--images-root", ws / "images", "--output-dir", tmp_path / "t", "--max-retries", "1",
                      env={"FAKE_TAO_KILL_RUNS": "1,2", "TAO_AOI_JOB_POLL_SEC": "0.05"})
    assert proc.returncode == 2 and "after 2 attempt(s)" in proc.stderr and proc.stderr.count("\n") == 2
    assert proc.stderr.startswith("retry: docker train job")  # the retry, announced on stderr by hand
    assert run_script("train.py", "--max-retries", "-1", "--spec", "x", "--train-csv", "x", "--val-csv", "x",
                      "--images-root", "x", "--output-dir", "x").returncode == 2


# -- AutoML: a trial that still fails is a failed trial ---------------------------------------------

def automl(ws: Path, out: Path, trials: int, kills: str, *extra: str) -> subprocess.CompletedProcess:
    return run_script("automl.py", "--workspace", ws, "--backend", "docker", "--trials", str(trials),
                      "--spec", ws / "specs/baseline_spec.yaml", "--train-csv", ws / "train/base/training_set.csv",
                      "--val-csv", ws / "train/base/validation_set.csv", "--images-root", ws / "images",
                      "--results-dir", out, "--max-retries", "0", "--json", *extra,
                      env={"FAKE_TAO_KILL_RUNS": kills, "TAO_AOI_JOB_POLL_SEC": "0.05"}, timeout=600)


def test_a_failed_trial_does_not_stop_the_study(fake_docker, ws, tmp_path):
    # docker runs: trial 0 train 1 + validation 2; trial 1's train (3) is killed, no retry: a failed trial
    proc = automl(ws, tmp_path / "a", 3, "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(proc.stdout)
    assert rec["counts"] == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}  # another asked in its place
    failed = [t for t in rec["trials"] if t["state"] == "FAIL"]
    assert [t["number"] for t in failed] == [1] and "container killed (exit 137" in failed[0]["error"]


def test_past_the_failure_share_the_study_stops_and_a_rerun_resumes(fake_docker, ws, tmp_path):
    out = tmp_path / "a"
    # 2 trials allow 1 failure (25%, at least 1); trials 1 and 2 are killed (runs 3 and 4)
    first = automl(ws, out, 2, "3,4")
    assert first.returncode == 2 and first.stderr.count("\n") == 1
    assert "2 AutoML trials failed, more than the 1 a 2-trial study allows (25% of its trials, at least 1)" \
        in first.stderr and "trial 2: docker train job" in first.stderr and "rerun the same command" in first.stderr
    again = automl(ws, out, 2, "3,4")  # the fault is gone (runs 5 and 6 are not killed)
    assert again.returncode == 0, again.stderr[-2000:]
    rec = json.loads(again.stdout)
    assert rec["counts"]["COMPLETE"] == 2 and rec["counts"]["FAIL"] == 2


# -- slurm: lost polls (shell stand-ins for the clients) ---------------------------------------------

def fake_slurm(tmp_path: Path, monkeypatch, lost_polls: int) -> Path:
    """sbatch answers job 7 (and writes the job's j/result.txt); squeue and scontrol fail as an
    unreachable controller for ``lost_polls`` calls, then report the job COMPLETED."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    counter = tmp_path / "polls"
    down = (f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}; '
            f'if [ $n -le {lost_polls} ]; then echo "slurm_load_jobs error: Unable to contact slurm controller '
            f'(connect failure)" >&2; exit 1; fi')
    tools = {"sbatch": f"echo ok > {tmp_path / 'j' / 'result.txt'}; echo 7",
             "squeue": f"{down}\nexit 0",
             "scontrol": f"{down}\necho 'JobId=7 JobState=COMPLETED Reason=None ExitCode=0:0 Restarts=0'",
             "scancel": "exit 0"}
    for name, body in tools.items():
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\n" + body + "\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return counter


def test_a_lost_poll_is_polled_again_never_resubmitted(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch, lost_polls=4)  # squeue + scontrol fail twice each
    out = tmp_path / "j"
    heard = Heard()
    with faults.observe(heard):
        h = get_backend("slurm", poll_sec=0.05).run_command(["true"], output_dir=out, expect=[out / "result.txt"])
    assert h.state == COMPLETE and h.job_id == "7"
    assert heard[0].startswith("lost a poll of slurm command job 7 (scontrol show job 7 failed: slurm_load_jobs "
                               "error: Unable to contact slurm controller")
    assert heard[-1] == "slurm answers again about command job 7: COMPLETE" and len(heard) == 2


def test_a_scheduler_silent_past_the_grace_period_is_a_hard_stop(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch, lost_polls=10**6)
    b = get_backend("slurm", poll_sec=0.05)
    b.policy = faults.Policy(max_retries=2, backoff_sec=0, lost_poll_grace_sec=0.3)
    t0 = time.monotonic()
    with faults.observe(Heard()), pytest.raises(UserError) as err:
        b.run_command(["true"], output_dir=tmp_path / "j")
    assert time.monotonic() - t0 < 30
    assert "slurm gave no answer about command job 7 for 0.3 s (infrastructure fault: lost contact with the " \
           "scheduler)" in str(err.value) and "rerun the same command (it picks the job up" in str(err.value)
    assert read_record(tmp_path / "j")["state"] is None  # the job is not judged: it may still be running


def test_faults_module_stays_out_of_the_state_scripts():
    """log_stage.py and friends must not pay for the backends: faults is imported by them only lazily."""
    code = ("import sys; sys.argv=['x']; import tao_aoi.state.deft_state, tao_aoi.state.event_log; "
            "print('tao_aoi.backends.faults' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "scripts")))
    assert proc.stdout.strip() == "False", proc.stderr
