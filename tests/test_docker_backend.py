"""The docker backend against a fake ``docker`` that checks argv/mounts and writes what TAO writes."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from support import tao_workspace
from support.tao_workspace import train_job
from support.docker_fixture import fake_docker  # noqa: F401
from tao_aoi import defaults
from tao_aoi.backends import get_backend, tao
from tao_aoi.backends.base import CANCELED, COMPLETE, RUNNING, EmbedJob, InferJob, TrainJob
from tao_aoi.backends.external import epoch_metrics, read_record
from tao_aoi.errors import UserError
from tao_aoi.tao import versions

LIGHTS = tao_workspace.LIGHTS


@pytest.fixture
def ws(tmp_path) -> Path:
    return tao_workspace.make(tmp_path / "ws")


def infer_job(ws: Path, ckpt: Path, out: Path) -> InferJob:
    return InferJob(spec=ws / "specs/baseline_spec.yaml", checkpoint=ckpt, csv=ws / "kpi/testing_set.csv",
                    images_root=ws / "images", output_dir=out)


def calls(state: Path, verb: str = "run") -> list[list[str]]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [c["argv"] for c in map(json.loads, lines) if c["argv"][0] == verb]


def backend(**kw):
    return get_backend("docker", poll_sec=0.05, **kw)


def test_train_then_infer_end_to_end(fake_docker, ws, tmp_path):
    b = backend(offline=True)
    out = tmp_path / "results" / "baseline" / "train"
    h = b.train(train_job(ws, out, overrides={"train.optim.lr": 3e-5}))
    assert h.state == COMPLETE

    # the exact argv: image from versions.yaml, same-path mounts (inputs read-only), offline switches
    argv = calls(fake_docker)[-1]
    spec_path = out.resolve() / tao.SPEC_NAME
    ws_r = ws.resolve()
    assert argv == [
        "run", "--rm", "--name", h.job_id, "--shm-size=8g", "--gpus=all", "--pull=never",
        "-v", f"{out.resolve()}:{out.resolve()}",
        "-v", f"{ws_r}/images:{ws_r}/images:ro",
        "-v", f"{ws_r}/train/base:{ws_r}/train/base:ro",
        "-e", "HF_TOKEN",
        "-e", "HF_HUB_OFFLINE=1", "-e", "TELEMETRY_OPT_OUT=1", "-e", "TRANSFORMERS_OFFLINE=1",
        versions.image("pyt"), "visual_changenet", "train", "-e", str(spec_path)]
    assert "hf_secret_value_123" not in json.dumps(calls(fake_docker))
    assert read_record(out)["credentials_forwarded"] == ["HF_TOKEN"]

    # the generated spec: user's spec + dataset paths + results folder + overrides
    spec = yaml.safe_load(spec_path.read_text())
    cls = spec["dataset"]["classify"]
    assert cls["train_dataset"] == {"csv_path": f"{ws_r}/train/base/training_set.csv", "images_dir": f"{ws_r}/images"}
    assert cls["validation_dataset"]["csv_path"] == f"{ws_r}/train/base/validation_set.csv"
    assert spec["train"]["results_dir"] == str(out.resolve()) and spec["results_dir"] == str(out.resolve())
    assert spec["train"]["optim"]["lr"] == 3e-5 and spec["train"]["num_epochs"] == 3
    assert "pretrained_model_path" not in spec["train"]

    # TAO's top-k checkpointer is enabled on val_loss, beside the epoch checkpoints
    assert spec["train"]["checkpointer"] == {"enable_topk": True, "monitor": "val_loss", "mode": "min",
                                             "save_top_k": 1, "dirpath": str(out.resolve())}
    # the backend contract: best.ckpt = TAO's model_best_* (the fake's epoch 1 has the lowest val_loss,
    # the last epoch is worse), experiment.yaml, status.json as TAO writes it (no SUCCESS)
    assert (out / "model_best_001.pth").is_file() and (out / "changenet_model_classify_latest.pth").is_symlink()
    assert (out / "best.ckpt").read_bytes() == (out / "model_best_001.pth").read_bytes() == b"PK-fake-epoch-1"
    assert read_record(out)["checkpoint_kind"] == "best (top-k checkpointer)"
    assert yaml.safe_load((out / "experiment.yaml").read_text()) == spec
    lines = [json.loads(x) for x in (out / "status.json").read_text().splitlines()]
    assert "SUCCESS" not in {ln["status"] for ln in lines}
    assert lines[-1]["status"] == "RUNNING" and lines[-1]["message"] == "Train finished successfully."
    assert [e for e, _ in epoch_metrics(out / "status.json")] == [0, 1, 2]
    assert {ln["max_epoch"] for ln in lines if "epoch" in ln} == {2}
    assert set(epoch_metrics(out / "status.json")[0][1]) == {"val_loss", "val_acc", "val_fpr"}
    assert "Epoch 2" in (out / "train.log").read_text()

    # warm start from that checkpoint: pretrained_model_path set and its folder mounted
    out2 = tmp_path / "results" / "iter1" / "train"
    h2 = b.train(train_job(ws, out2, init_checkpoint=out / "best.ckpt"))
    spec2 = yaml.safe_load((out2 / tao.SPEC_NAME).read_text())
    assert spec2["train"]["pretrained_model_path"] == str((out / "best.ckpt").resolve())
    assert h2.state == COMPLETE and (out2 / "best.ckpt").is_file()

    # infer with the published checkpoint
    inf = tmp_path / "results" / "baseline" / "inference"
    h3 = b.infer(infer_job(ws, out / "best.ckpt", inf))
    assert h3.state == COMPLETE
    argv = calls(fake_docker)[-1]
    assert argv[-4:] == ["visual_changenet", "inference", "-e", str(inf.resolve() / tao.SPEC_NAME)]
    assert f"{out.resolve()}:{out.resolve()}:ro" in argv  # the checkpoint's folder, read-only
    ispec = yaml.safe_load((inf / tao.SPEC_NAME).read_text())
    assert ispec["inference"]["checkpoint"] == str((out / "best.ckpt").resolve())
    assert ispec["dataset"]["classify"]["infer_dataset"]["csv_path"] == f"{ws_r}/kpi/testing_set.csv"
    df = pd.read_csv(inf / "inference.csv")
    assert list(df.columns[:5]) == ["input_path", "golden_path", "label", "object_name", "boardname"]
    assert len(df) == 6 and df["siamese_score"].between(0, 1).all()


def test_online_and_without_gpus(fake_docker, ws, tmp_path):
    b = backend(offline=False, gpus=None, shm_size="16g", user="1000:1000")
    h = b.submit_train(train_job(ws, tmp_path / "t"))
    assert b.wait(h, poll_sec=0.05) == COMPLETE
    argv = calls(fake_docker)[-1]
    assert "--pull=never" not in argv and not any(a.startswith("--gpus") for a in argv)
    assert "--shm-size=16g" in argv and argv[argv.index("--user") + 1] == "1000:1000"
    assert "HF_HUB_OFFLINE=1" not in argv


def test_air_gapped_env_means_offline(fake_docker, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("AIR_GAPPED", "1")
    backend().train(train_job(ws, tmp_path / "t"))
    assert "--pull=never" in calls(fake_docker)[-1]


def test_evaluate(fake_docker, ws, tmp_path):
    b = backend()
    t = b.train(train_job(ws, tmp_path / "t"))
    h = b.evaluate(infer_job(ws, t.output_dir / "best.ckpt", tmp_path / "eval"))
    assert h.state == COMPLETE
    spec = yaml.safe_load((tmp_path / "eval" / tao.SPEC_NAME).read_text())
    assert spec["evaluate"]["checkpoint"].endswith("/t/best.ckpt")
    assert spec["dataset"]["classify"]["test_dataset"]["csv_path"].endswith("kpi/testing_set.csv")
    assert calls(fake_docker)[-1][-4:-1] == ["visual_changenet", "evaluate", "-e"]


def test_embed_one_vector_per_row(fake_docker, ws, tmp_path):
    out = tmp_path / "emb" / "pool.parquet"
    h = backend().embed(EmbedJob(csv=ws / "kpi/testing_set.csv", images_root=ws / "images",
                                 spec=ws / "specs/baseline_spec.yaml", output=out))
    assert h.state == COMPLETE
    argv = calls(fake_docker)[-1]
    assert versions.image("data_services") in argv
    assert argv[-4:-1] == ["embedding", "image_embeddings", "-e"]
    df = pd.read_parquet(out)
    assert len(df) == 6 and list(df["object_name"]) == [f"C{i}" for i in range(6)]
    vec = df["embedding"].iloc[0]
    assert len(vec) == 64 * len(LIGHTS)
    assert abs(sum(v * v for v in vec[:64]) - 1) < 1e-5  # each light's part is unit length
    espec = yaml.safe_load((Path(f"{out}.job") / tao.SPEC_NAME).read_text())
    assert set(espec) == {"model", "model_path", "batch_size", "input_parquet", "output_parquet"}  # no results_dir
    settings = json.loads(Path(f"{out}.settings.json").read_text())
    assert settings["embedder"] == "tao-data-services" and settings["lights"] == list(LIGHTS)
    assert settings["model"] == defaults.TAO_EMBED_MODEL and "batch_size" not in settings


@pytest.mark.parametrize("mode, message", [
    ("exit3", "exited 3: .*NCCL init failed"),
    ("failure_status", "TAO reported FAILURE .*out of memory"),
    ("no_ckpt", "TAO finished but wrote no checkpoint"),
])
def test_train_failures_are_user_errors(fake_docker, ws, tmp_path, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_TAO_MODE", mode)
    out = tmp_path / "t"
    with pytest.raises(UserError, match=message):
        backend().train(train_job(ws, out))
    assert not (out / "best.ckpt").exists()  # (experiment.yaml may be there: TAO writes its own at start)
    assert read_record(out)["state"] == "ERROR"


def test_image_missing_offline(fake_docker, ws, tmp_path):
    (fake_docker / "images.txt").write_text("some/other:image\n")
    with pytest.raises(UserError, match=r"exited 125 \(docker could not start it.*Unable to find image"):
        backend(offline=True).train(train_job(ws, tmp_path / "t"))


def test_inference_csv_without_score(fake_docker, ws, tmp_path, monkeypatch):
    b = backend()
    t = b.train(train_job(ws, tmp_path / "t"))
    monkeypatch.setenv("FAKE_TAO_MODE", "no_score")
    with pytest.raises(UserError, match="lacks column.*siamese_score"):
        b.infer(infer_job(ws, t.output_dir / "best.ckpt", tmp_path / "inf"))


def test_cancel_and_track_from_another_process(fake_docker, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_MODE", "hang")
    a = backend()
    h = a.submit_train(train_job(ws, tmp_path / "t"))
    deadline = time.monotonic() + 20
    while a.status(h) != RUNNING or not (fake_docker / f"{h.job_id}.state").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    other = backend()  # knows only the handle: docker inspect answers
    h2 = type(h)(h.backend, h.kind, h.job_id, h.output_dir)
    assert other.status(h2) == RUNNING
    other.cancel(h2)
    assert a.wait(h, poll_sec=0.05, timeout_sec=20) == CANCELED
    assert other.status(h2) == CANCELED
    # a folder whose job is still running is refused; a finished (canceled) one can be reused
    h3 = a.submit_train(train_job(ws, tmp_path / "t"))
    with pytest.raises(UserError, match="may still be running"):
        a.submit_train(train_job(ws, tmp_path / "t"))
    a.cancel(h3)
    assert a.wait(h3, poll_sec=0.05, timeout_sec=20) == CANCELED


def test_bad_inputs_fail_before_any_container(fake_docker, ws, tmp_path):
    b = backend()
    with pytest.raises(UserError, match="--init-checkpoint .* does not exist"):
        b.submit_train(train_job(ws, tmp_path / "t", init_checkpoint=tmp_path / "nope.ckpt"))
    with pytest.raises(UserError, match="--checkpoint .* does not exist"):
        b.submit_infer(infer_job(ws, tmp_path / "nope.ckpt", tmp_path / "i"))
    bad = ws / "specs" / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": {"classify": {"image_ext": ".png"}}}))
    job = train_job(ws, tmp_path / "t3")
    with pytest.raises(UserError, match="input_map"):
        b.submit_train(TrainJob(**{**job.__dict__, "spec": bad}))
    spec = yaml.safe_load((ws / "specs/baseline_spec.yaml").read_text())
    spec["model"]["backbone"]["pretrained_backbone_path"] = "/data/pretrained_models/C-RADIOv2_B.safetensors"
    bb = ws / "specs" / "bb.yaml"
    bb.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="pretrained_backbone_path .* stage the backbone"):
        b.submit_train(TrainJob(**{**job.__dict__, "spec": bb}))
    assert not (fake_docker / "calls.jsonl").exists()


def test_docker_not_installed(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="'docker' not found on PATH.*--backend local"):
        get_backend("docker").submit_train(train_job(ws, tmp_path / "t"))


def test_collapse_mounts():
    got = tao.collapse_mounts([("/ws/images", False), ("/ws", False), ("/ws/results/run/t", True),
                               ("/ws/results/run/t/sub", True), ("/other", False), ("/other", True),
                               ("/ws/images/x", False)])
    assert got == [("/other", True), ("/ws", False), ("/ws/results/run/t", True)]


def test_checkpoint_choice(tmp_path):
    d = tmp_path
    assert tao.find_checkpoint(d) is None
    for e, s in ((0, 10), (2, 30), (1, 20)):
        (d / f"model_epoch_{e:03d}_step_{s:05d}.pth").write_bytes(b"x")
    assert tao.find_checkpoint(d).name == "model_epoch_002_step_00030.pth"
    (d / "train").mkdir()
    (d / "train" / tao.LATEST_CKPT).write_bytes(b"x")
    assert tao.find_checkpoint(d).name == tao.LATEST_CKPT
    (d / "model_best_001.pth").write_bytes(b"x")
    assert tao.find_checkpoint(d).name == "model_best_001.pth"


def test_failed_rerun_never_passes_with_the_previous_outputs(fake_docker, ws, tmp_path, monkeypatch):
    out = tmp_path / "t"
    backend().train(train_job(ws, out))
    assert (out / "best.ckpt").is_file()
    monkeypatch.setenv("FAKE_TAO_MODE", "no_ckpt")
    with pytest.raises(UserError, match="wrote no checkpoint"):
        backend().train(train_job(ws, out))
    assert not (out / "best.ckpt").exists() and not list(out.glob("*.pth"))


def test_labels_tao_would_misread_go_to_tao_as_a_canonical_copy(fake_docker, ws, tmp_path):
    csv = ws / "train/base/training_set.csv"
    df = pd.read_csv(csv)
    df["label"] = df["label"].map({"PASS": " pass", "MISSING": "missing"})
    df.to_csv(csv, index=False)
    out = tmp_path / "t"
    backend().train(train_job(ws, out))  # the fake fails on 'pass' like TAO would misread it
    spec = yaml.safe_load((out / tao.SPEC_NAME).read_text())
    handed = Path(spec["dataset"]["classify"]["train_dataset"]["csv_path"])
    assert handed == out.resolve() / "inputs" / "training-training_set.csv"
    assert set(pd.read_csv(handed)["label"]) == {"PASS", "MISSING"}
    assert pd.read_csv(csv)["label"].tolist() == df["label"].tolist()  # the user's file is untouched
    assert read_record(out)["canonical_label_copies"] == [{"source": str(csv.resolve()), "handed_to_tao": str(handed)}]
    assert spec["dataset"]["classify"]["validation_dataset"]["csv_path"].endswith("train/base/validation_set.csv")


def test_job_paths_with_spaces_and_missing_images_fail_before_any_container(fake_docker, ws, tmp_path):
    with pytest.raises(UserError, match="splits the spec path on spaces"):
        backend().train(train_job(ws, tmp_path / "my results" / "t"))
    (ws / "images/boards/b1/golden/C3_UniformLight.png").unlink()
    with pytest.raises(UserError, match=r"training_set\.csv line 5: image .*C3_UniformLight\.png does not exist"):
        backend().train(train_job(ws, tmp_path / "t"))
    assert not (fake_docker / "calls.jsonl").exists()


def test_a_finished_job_is_complete_when_judged_from_another_process(fake_docker, ws, tmp_path):
    """TAO never writes SUCCESS; a job whose container is gone (exit code lost) is judged by its last
    status line, RUNNING 'Train finished successfully.'."""
    out = tmp_path / "t"
    h = backend().submit_train(train_job(ws, out))
    while (fake_docker / f"{h.job_id}.state").exists() or not (out / "status.json").exists():
        time.sleep(0.05)
    other = backend()  # has no Popen for it; docker inspect says the container is gone
    h2 = type(h)(h.backend, h.kind, h.job_id, h.output_dir)
    # PENDING while its `docker run` client still runs (the record names it: pulling, or removing the
    # container), then judged by TAO's last status line
    assert other.wait(h2, poll_sec=0.05, timeout_sec=60) == COMPLETE and (out / "best.ckpt").is_file()
    record = read_record(out)
    record.pop("state")
    lines = (out / "status.json").read_text().splitlines()
    (out / "status.json").write_text("\n".join(lines[:-1]) + "\n")  # killed before its last line
    with pytest.raises(UserError, match="does not end with TAO's 'finished successfully.' line"):
        tao.conclude(record, None)


def test_epoch_metrics_read_taos_status_lines(tmp_path):
    from tao_aoi.backends.external import epoch_metrics

    def line(**kw):
        return json.dumps({"date": "1/2/2026", "time": "10:00:00", "status": "RUNNING", "verbosity": "INFO", **kw})

    tao_lines = [
        line(status="STARTED", message="Starting Visual ChangeNet train."),
        line(message="Eval metrics generated.", kpi={"val_loss": 0.9, "val_acc": 0.5, "val_fpr": 0.4}),
        line(message="Training loop in progress", epoch=0, max_epoch=3, kpi={"val_loss": 0.9, "val_acc": 0.5,
                                                                             "val_fpr": 0.4}),
        line(message="Train metrics generated.", kpi={"train_loss": 1.0, "train_acc": 0.5, "train_fpr": 0.5}),
        line(message="Training loop in progress", epoch=1, max_epoch=3, kpi={"train_loss": 1.0}),  # no validation
        line(message="Train metrics generated.", kpi={"train_loss": 0.8, "train_acc": 0.6, "train_fpr": 0.4}),
        line(message="Eval metrics generated.", kpi={"val_loss": 0.7, "val_acc": 0.7, "val_fpr": 0.2}),
        line(message="Training loop in progress", epoch=2, max_epoch=3, kpi={"val_loss": 0.7}),
        "{torn",
        line(message="Train finished successfully."),
    ]
    path = tmp_path / "status.json"
    path.write_text("\n".join(tao_lines) + "\n")
    assert epoch_metrics(path) == [(0, {"val_loss": 0.9, "val_acc": 0.5, "val_fpr": 0.4}),
                                   (2, {"val_loss": 0.7, "val_acc": 0.7, "val_fpr": 0.2})]
    assert tao.finished(path)
    path.write_text("\n".join(tao_lines[:-1] + [line(status="FAILURE", message="CUDA error")]) + "\n")
    assert not tao.finished(path)
    local = [line(message="Epoch 0 finished", epoch=0, kpi={"train_loss": 1, "val_loss": 0.5, "val_far": 20.0}),
             line(message="Epoch 1 finished", epoch=1, kpi={"train_loss": 1, "val_loss": 0.4, "val_far": 10.0})]
    path.write_text("\n".join(local) + "\n")  # the local backend: one line per epoch holding both
    assert [e for e, _ in epoch_metrics(path)] == [0, 1] and epoch_metrics(path)[1][1]["val_far"] == 10.0


def test_air_gapped_embedding_needs_a_local_model_snapshot(fake_docker, ws, tmp_path, monkeypatch):
    job = EmbedJob(csv=ws / "kpi/testing_set.csv", images_root=ws / "images", spec=ws / "specs/baseline_spec.yaml",
                   output=tmp_path / "emb.parquet")
    with pytest.raises(UserError, match="air-gapped: the embedder's model_path google/siglip.* set TAO_AOI_EMBED_MODEL_PATH"):
        backend(offline=True).embed(job)
    snapshot = tmp_path / "models" / "siglip"
    snapshot.mkdir(parents=True)
    monkeypatch.setenv("TAO_AOI_EMBED_MODEL_PATH", str(snapshot))
    assert backend(offline=True).embed(job).state == COMPLETE
    argv = calls(fake_docker)[-1]
    assert f"{snapshot}:{snapshot}:ro" in argv and "TELEMETRY_OPT_OUT=1" in argv
    spec = yaml.safe_load((tmp_path / "emb.parquet.job" / tao.SPEC_NAME).read_text())
    assert spec["model_path"] == str(snapshot)
