"""AutoML on Optuna: spaces, determinism, resume after a kill, parallel workers, feasibility."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_script

from support.slurm_fixture import slurm_cluster  # noqa: F401  (session fixture)
from tao_aoi.automl import search_space, study
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import COMPLETE, Backend, JobHandle
from tao_aoi.errors import HardStop, UserError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "5", check=True)
    return ws


def config(ws: Path, out: Path, n: int = 3, algorithm: str = "bayesian", seed: int = 7) -> study.SearchConfig:
    space = search_space.default_for_backend("local")
    spec = ws / "specs/baseline_spec.yaml"
    return study.SearchConfig(spec=spec, train_csv=ws / "train/base/training_set.csv",
                               val_csv=ws / "train/base/validation_set.csv", images_root=ws / "images", out_dir=out,
                               space=space, algorithm=algorithm, n_trials=n, seed=seed,
                               start_params=study.start_point(space, spec))


def trial_view(rec: dict) -> list[tuple]:
    return [(t["number"], t["state"], t["value"], tuple(sorted(t["params"].items()))) for t in rec["trials"]]


# ------------------------------------------------------------------ spaces


@pytest.mark.parametrize("space, needle", [
    ({"params": {"train.optim.lr": {"type": "float", "min": 1e-4, "max": 1e-2}}}, "low <= high"),
    ({"params": {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "values": [1]}}}, "unknown range key"),
    ({"params": {"train.num_epochs": {"type": "int", "low": 1, "high": 9}}}, "budget key"),
    ({"params": {"train.optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log-scaled"),
    ({"params": {}}, "non-empty"),
])
def test_bad_search_spaces_are_refused_not_ignored(space, needle):
    with pytest.raises(UserError, match=needle):
        search_space.validate(space)


def test_warm_start_space_pins_architecture_and_narrows_the_learning_rate():
    space = search_space.default_for_backend("local")
    ws = search_space.for_warm_start(space, {"model.classify.embed_dec": 48, "train.optim.lr": 0.002})
    assert ws["params"]["model.classify.embed_dec"] == {"type": "categorical", "choices": [48]}
    lr = ws["params"]["train.optim.lr"]
    assert lr["high"] < 0.002 and lr["low"] >= space["params"]["train.optim.lr"]["low"]
    search_space.validate(ws)


def test_kpi_set_is_refused_as_the_validation_set(tiny, tmp_path, script):
    proc = script("automl.py", "--workspace", tiny, "--results-dir", tmp_path / "a", "--train-csv",
                  tiny / "train/base/training_set.csv", "--val-csv", tiny / "kpi/testing_set.csv", "--trials", "1")
    assert proc.returncode == 2 and "KPI set" in proc.stderr


# ------------------------------------------------------------------ search


def test_search_is_deterministic_and_trial0_is_the_starting_spec(tiny, tmp_path):
    backend = get_backend("local")
    recs = []
    for name in ("a", "b"):
        cfg = config(tiny, tmp_path / name)
        study.work(cfg, backend)
        recs.append(study.write_best(cfg))
    assert trial_view(recs[0]) == trial_view(recs[1])
    first = recs[0]["trials"][0]
    assert first["start_point"] and first["params"] == study.start_point(config(tiny, tmp_path).space,
                                                                          tiny / "specs/baseline_spec.yaml")
    assert recs[0]["direction"] == "minimize" and recs[0]["metric_set"] == "validation"
    best = recs[0]["best"]
    assert Path(best["checkpoint"]).is_file() and best["specs"]["train"]["optim"]["lr"] > 0
    assert all("." not in k for k in best["specs"])  # nested, merge-ready


def test_progress_and_final_line_number_trials_alike(tiny, tmp_path, script):
    proc = script("automl.py", "--workspace", tiny, "--results-dir", tmp_path / "a", "--train-csv",
                  tiny / "train/base/training_set.csv", "--val-csv", tiny / "train/base/validation_set.csv",
                  "--trials", "2", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "a" / "best_rec.json").read_text())
    shown = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.strip().startswith("trial ")]
    assert shown == [t["number"] for t in rec["trials"]] == [0, 1]
    assert f"best: trial {rec['best']['trial']} " in proc.stdout
    runner = rec["runner_up"]
    assert runner["trial"] != rec["best"]["trial"] and runner["objective"] >= rec["best"]["objective"]
    assert f"runner-up: trial {runner['trial']} " in proc.stdout
    assert all((tmp_path / "a" / "trials" / f"trial_{n:04d}").is_dir() for n in shown)


def _automl_argv(ws: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts/automl.py"), "--workspace", str(ws), "--results-dir", str(out),
            "--train-csv", str(ws / "train/base/training_set.csv"), "--val-csv",
            str(ws / "train/base/validation_set.csv"), "--trials", str(trials), "--seed", "7", "--quiet", *extra]


def _study_trials(out: Path) -> list:
    import optuna

    loaded = optuna.load_study(study_name=study.STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")
    return sorted(loaded.get_trials(), key=lambda t: t.number)


@pytest.mark.slow
def test_killed_inside_a_trial_resumes_with_the_same_result(tiny, tmp_path):
    env = dict(os.environ, TAO_AOI_NO_REEXEC="1")
    ref = subprocess.run(_automl_argv(tiny, tmp_path / "ref", 3), capture_output=True, text=True, env=env)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_automl_argv(tiny, out, 3), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "trials" / "trial_0001").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # inside trial 1's training
    assert proc.poll() is None, "the search finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(t.state.name == "RUNNING" for t in _study_trials(out))
    again = subprocess.run(_automl_argv(tiny, out, 3), capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    killed = json.loads((out / "best_rec.json").read_text())
    reference = json.loads((tmp_path / "ref" / "best_rec.json").read_text())
    assert trial_view(killed) == trial_view(reference)
    assert any(t["adopted"] for t in killed["trials"])
    assert killed["best"]["trial"] == reference["best"]["trial"]


@pytest.mark.slow
def test_two_worker_processes_share_one_study_without_losing_or_repeating_a_trial(tiny, tmp_path):
    out = tmp_path / "par"
    proc = subprocess.run(_automl_argv(tiny, out, 6, "--workers", "2"), capture_output=True, text=True,
                          env=dict(os.environ, TAO_AOI_NO_REEXEC="1"), timeout=900)
    assert proc.returncode == 0, proc.stderr
    trials = _study_trials(out)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    owners = {t.user_attrs["owner"]["pid"] for t in trials}
    assert len(owners) == 2, "both workers must have run trials"
    dirs = sorted(p.name for p in (out / "trials").iterdir())
    assert dirs == [f"trial_{i:04d}" for i in range(6)]
    for d in dirs:  # each trial trained exactly once
        lines = (out / "trials" / d / "train" / "status.json").read_text().splitlines()
        assert sum('"status": "STARTED"' in ln for ln in lines) <= 1


@pytest.mark.integration
def test_trials_run_as_jobs_on_a_real_slurm_cluster(tiny, tmp_path, slurm_cluster):
    out = tmp_path / "slurm"
    proc = subprocess.run(_automl_argv(tiny, out, 3, "--backend", "slurm", "--workers", "2"), capture_output=True,
                          text=True, env=dict(os.environ, TAO_AOI_NO_REEXEC="1"), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = _study_trials(out)
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert (out / "workers").is_dir() and json.loads((out / "best_rec.json").read_text())["best"]["checkpoint"]


# ------------------------------------------------------------------ feasibility


class OneClassBackend(Backend):
    """Trains nothing and scores every row the same: a collapsed model."""

    name = "one-class"

    def submit_train(self, job):
        job.output_dir.mkdir(parents=True, exist_ok=True)
        (job.output_dir / "best.ckpt").write_bytes(b"x")
        (job.output_dir / "experiment.yaml").write_text(job.spec.read_text())
        return JobHandle(self.name, "train", "t", job.output_dir, state=COMPLETE)

    def submit_infer(self, job):
        df = pd.read_csv(job.csv)
        df["siamese_score"] = 0.1
        job.output_dir.mkdir(parents=True, exist_ok=True)
        df.to_csv(job.output_dir / "inference.csv", index=False)
        return JobHandle(self.name, "infer", "i", job.output_dir, state=COMPLETE)

    def submit_embed(self, job):
        raise NotImplementedError

    def status(self, handle):
        return handle.state

    def cancel(self, handle):
        pass


def test_a_model_that_predicts_one_class_is_infeasible(tiny, tmp_path):
    cfg = config(tiny, tmp_path / "oc", n=2)
    study.work(cfg, OneClassBackend())
    with pytest.raises(HardStop, match="2 collapsed to one class"):
        study.write_best(cfg)


def test_journal_file_storage_works_for_shared_disks(tiny, tmp_path):
    cfg = config(tiny, tmp_path / "j", n=2)
    cfg.storage = f"journal:{tmp_path / 'study.log'}"
    study.work(cfg, get_backend("local"))
    rec = study.write_best(cfg)
    assert rec["storage"].startswith("journal:") and [t["number"] for t in rec["trials"]] == [0, 1]
    assert (tmp_path / "study.log").stat().st_size > 0 and not (tmp_path / "j" / "study.db").exists()


@pytest.mark.slow
def test_hyperband_prunes_on_the_per_epoch_validation_far(tiny, tmp_path):
    cfg = config(tiny, tmp_path / "hb", n=8, algorithm="hyperband", seed=1234)
    study.work(cfg, get_backend("local"))
    rec = study.write_best(cfg)
    pruned = [t for t in rec["trials"] if t["state"] == "PRUNED"]
    full = [t for t in rec["trials"] if t["state"] == "COMPLETE"]
    assert pruned and full, rec["counts"]
    epochs = study.train_spec.get(study.train_spec.load(cfg.spec), "train.num_epochs")
    first_rung = study._min_resource(epochs)
    for t in pruned:  # stopped at a rung, having trained fewer epochs than a full trial
        assert first_rung <= t["pruned_at_epoch"] < epochs and len(t["intermediate"]) == t["pruned_at_epoch"]
    assert all(len(t["intermediate"]) == epochs for t in full)
    assert rec["best"]["trial"] in {t["number"] for t in full}
