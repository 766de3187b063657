"""Specs against NVIDIA's own TAO 7.1.0 schema (the nvidia-tao-core / nvidia-tao-ds wheels, no copied key
list): the pins, the demo spec of every preset, every spec the docker/slurm backends write, TAO's
run-time rules, and the Visual ChangeNet search space walked key by key."""
from __future__ import annotations

import copy
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from support import tao_workspace
from support.docker_fixture import require_tao_wheels
from tao_aoi.automl import search_space
from tao_aoi.backends import tao
from tao_aoi.backends.base import EmbedJob, InferJob, TrainJob
from tao_aoi.errors import UserError
from tao_aoi.tao import schema as tao_schema
from tao_aoi.tao import train_spec, versions
from tao_aoi.workspace import demo, field, field_render, presets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def wheels():
    require_tao_wheels()


def schema():
    from omegaconf import OmegaConf

    return OmegaConf.structured(tao_schema.schema_class())


def job_spec(tmp_path: Path, spec: dict, kind: str = "train") -> Path:
    """A spec as a backend writes it: dataset paths, results folder, checkpoint for evaluate/inference."""
    spec = copy.deepcopy(spec)
    action = tao_schema.ACTIONS[kind]
    spec["results_dir"] = str(tmp_path)
    if kind != "train":
        train_spec.set_dotted(spec, f"{action}.checkpoint", str(tmp_path / "best.ckpt"))
    path = tmp_path / f"{kind}.yaml"
    path.write_text(train_spec.dump(spec))
    return path


def test_wheels_are_pinned_to_the_image_tag():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["tao-aoi"]["no-deps"]
    tag = tao_schema.tao_version()
    assert versions.image("pyt").endswith(f":{tag}-pyt") and versions.image("data_services").endswith(f":{tag}-data-services")
    assert sorted(pins) == [f"nvidia-tao-core=={tag}", f"nvidia-tao-ds=={tag}"]
    for dist in ("nvidia-tao-core", "nvidia-tao-ds"):
        assert metadata.version(dist) == tag, f"{dist}: rerun scripts/setup_env.py"


@pytest.mark.parametrize("preset", list(demo.PRESETS))
def test_the_demo_spec_of_every_preset_is_a_tao_spec_for_its_workspace(tmp_path, preset):
    spec = presets.spec_dict(preset)
    rows = {f"{split} set": n for split, n in demo.PRESETS[preset].rows.items()}
    for kind in ("train", "evaluate", "infer"):
        cfg = tao_schema.check(job_spec(tmp_path, spec, kind), kind, rows)
        assert list(cfg.train.classify.cls_weight) == [1.0, 3.0]
    assert tao_schema.model_input(cfg) == (demo.IMAGE_SIZE, 2 * demo.IMAGE_SIZE)
    assert cfg.train.checkpointer.enable_topk and cfg.train.checkpointer.monitor == "val_loss"


@pytest.mark.parametrize("preset", list(field.PRESETS))
def test_the_field_spec_is_a_tao_spec_for_its_workspace(tmp_path, preset):
    # three lights of 72 px crops: TAO reads them at 80 px (a multiple of 16), side by side
    spec = presets.spec_dict(preset, lights=field_render.LIGHTS, image_size=field_render.SIZE,
                                    image_ext=field.IMAGE_EXT)
    rows = {f"{split} set": n for split, n in field.PRESETS[preset].rows.items()}
    for kind in ("train", "evaluate", "infer"):
        cfg = tao_schema.check(job_spec(tmp_path, spec, kind), kind, rows)
    assert tao_schema.model_input(cfg) == (80, 3 * 80)
    assert list(train_spec.lights(spec)) == list(field_render.LIGHTS)


@pytest.mark.parametrize("edit, key, hint", [
    (lambda s: train_spec.set_dotted(s, "dataset.classify.augmentation.random_rotate.rotate_probability", 0.3),
     "dataset.classify.augmentation", "augmentation_config"),
    (lambda s: train_spec.set_dotted(s, "model.hidden_width", 64), "model.hidden_width", "remove it"),
    (lambda s: train_spec.set_dotted(s, "train.classify.cls_weight", 3.0), "train.classify.cls_weight", "list"),
    (lambda s: train_spec.set_dotted(s, "train.num_epochs", 2.5), "train.num_epochs", "type"),
])
def test_a_key_or_type_the_schema_refuses_names_the_file_key_and_fix(tmp_path, edit, key, hint):
    spec = presets.spec_dict("tiny")
    edit(spec)
    path = job_spec(tmp_path, spec)
    with pytest.raises(UserError) as err:
        tao_schema.check(path, "train")
    assert str(path) in str(err.value) and f"{key}:" in str(err.value) and hint in str(err.value)


@pytest.mark.parametrize("edit, kind, key", [
    ({"train.classify.loss": "contrastive"}, "train", "train.classify.loss"),
    ({"model.classify.difference_module": "euclidean"}, "train", "train.classify.loss"),
    ({"train.classify.cls_weight": [1.0, 2.0, 3.0]}, "infer", "train.classify.cls_weight"),
    ({"model.backbone.type": "c_radio_v2_vit_base_patch16_224"}, "train", "dataset.classify.concat_type"),
    ({"model.backbone.type": "resnet_18"}, "infer", "model.backbone.type"),
    ({"dataset.classify.image_width": 44}, "train", "dataset.classify.image_width"),
    ({"train.validation_interval": 99}, "train", "train.validation_interval"),
    ({"train.checkpointer.mode": "max"}, "train", "train.checkpointer.mode"),
    ({"dataset.classify.num_input": 3}, "evaluate", "dataset.classify.num_input"),
    ({"dataset.classify.concat_type": "grid", "dataset.classify.grid_map": {"x": 2, "y": 2}}, "train",
     "dataset.classify.grid_map"),
    ({"dataset.classify.batch_size": 1}, "train", "dataset.classify.batch_size"),
    ({"results_dir": ""}, "train", "results_dir"),
])
def test_run_time_rules_the_schema_cannot_express(tmp_path, edit, kind, key):
    spec = job_spec(tmp_path, presets.spec_dict("tiny"), kind)
    data = yaml.safe_load(spec.read_text())
    data = train_spec.with_values(data, edit)
    spec.write_text(train_spec.dump(data))
    cfg = tao_schema.merged(spec)
    problems = tao_schema.runtime_problems(cfg, kind) + tao_schema.batch_problems(cfg, {}, kind)
    assert key in [k for k, _ in problems], problems
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        tao_schema.check(spec, kind)


def test_a_set_smaller_than_the_batch_names_the_key(tmp_path):
    spec = job_spec(tmp_path, presets.spec_dict("demo"))
    with pytest.raises(UserError, match=r"dataset\.classify\.batch_size: is 64 x 1 GPU\(s\) but validation set has 60 rows"):
        tao_schema.check(spec, "train", {"training set": 1500, "validation set": 60})


def test_radio_with_three_lights_runs_only_as_a_one_by_three_grid(tmp_path):
    ws = tao_workspace.make(tmp_path / "ws", lights=("A", "B", "C"))
    spec = yaml.safe_load((ws / "specs/baseline_spec.yaml").read_text())
    cfg = tao_schema.check(job_spec(tmp_path, spec), "train", {"train": 6})
    assert tao_schema.model_input(cfg) == (672, 672)
    linear = train_spec.with_values(spec, {"dataset.classify.concat_type": "linear"})
    with pytest.raises(UserError, match=r"concat_type: .*ViT and needs a square input.*224 x 2016"):
        tao_schema.check(job_spec(tmp_path, linear), "train")
    tiled = train_spec.with_values(spec, {"dataset.classify.grid_map": {"x": 3, "y": 1},
                                          "dataset.classify.image_height": 672, "dataset.classify.image_width": 224})
    with pytest.raises(UserError, match=r"grid_map: TAO 7 tiles a grid only for an even number"):
        tao_schema.check(job_spec(tmp_path, tiled), "train")


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "ws"
    presets.build(out, "tiny")
    return out


@pytest.mark.parametrize("which", ["demo", "radio3"])
def test_every_spec_the_backends_write_loads_in_the_schema(tmp_path, which, request):
    """tao.prepare (docker, and slurm's container mode) writes one spec per job and checks it; each is
    loaded again here through NVIDIA's package."""
    if which == "demo":
        ws = request.getfixturevalue("demo_ws")
    else:
        ws = tao_workspace.make(tmp_path / "ws", lights=("A", "B", "C"))
    spec = ws / "specs" / "baseline_spec.yaml"
    kw = dict(spec=spec, train_csv=ws / "train/base/training_set.csv", val_csv=ws / "train/base/validation_set.csv",
              images_root=ws / "images")
    ckpt = tmp_path / "prev" / "best.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"PK")
    snapshot = tmp_path / "models" / "siglip"
    snapshot.mkdir(parents=True)
    jobs = {
        "train": ("train", TrainJob(output_dir=tmp_path / "t", **kw)),
        "automl trial": ("train", TrainJob(output_dir=tmp_path / "trial", overrides={"train.optim.lr": 3e-5}, **kw)),
        "warm start": ("train", TrainJob(output_dir=tmp_path / "warm", init_checkpoint=ckpt, **kw)),
        "infer": ("infer", InferJob(spec, ckpt, ws / "kpi/testing_set.csv", ws / "images", tmp_path / "i")),
        "evaluate": ("evaluate", InferJob(spec, ckpt, ws / "kpi/testing_set.csv", ws / "images", tmp_path / "e")),
        "embed": ("embed", EmbedJob(ws / "kpi/testing_set.csv", ws / "images", spec, tmp_path / "emb.parquet",
                                    settings={"model_path": str(snapshot)})),  # air-gapped: a local snapshot
    }
    for name, (kind, job) in jobs.items():
        out = Path(getattr(job, "output_dir", None) or f"{job.output}.job")
        out.mkdir(parents=True, exist_ok=True)
        tj = tao.prepare(kind, job, out, offline=True)
        which_schema = tao_schema.EMBEDDING if kind == "embed" else tao_schema.CHANGENET
        cfg = tao_schema.merged(tj.record["spec"], which_schema)
        if kind == "train":
            assert cfg.train.results_dir == str(out.resolve()) and cfg.train.checkpointer.enable_topk, name
        if name == "warm start":
            assert cfg.train.pretrained_model_path == str(ckpt)
        if name == "automl trial":
            assert cfg.train.optim.lr == 3e-5


def test_a_wrong_key_fails_before_any_container(tmp_path):
    ws = tao_workspace.make(tmp_path / "ws")
    job = TrainJob(spec=ws / "specs/baseline_spec.yaml", train_csv=ws / "train/base/training_set.csv",
                   val_csv=ws / "train/base/validation_set.csv", images_root=ws / "images", output_dir=tmp_path / "t",
                   overrides={"dataset.classify.augmentation.random_rotate.rotate_probability": 0.4})
    with pytest.raises(UserError, match=r"tao_spec\.yaml: dataset\.classify\.augmentation: Key 'augmentation' not in"):
        tao.prepare("train", job, tmp_path / "t", offline=False)


# ------------------------------------------------------------------ the Visual ChangeNet search space


def test_the_space_defaults_are_nvidias():
    from omegaconf import OmegaConf

    base = schema()
    for key, value in search_space.VISUAL_CHANGENET["defaults"].items():
        assert OmegaConf.select(base, key) == value, key


def test_every_searched_key_exists_and_changes_the_merged_config(tmp_path):
    """Where its condition holds, each parameter at its low and high end merges into the schema and
    lands in the merged config, different from what the starting spec merges to."""
    from omegaconf import OmegaConf

    space = search_space.VISUAL_CHANGENET
    spec = train_spec.with_values(presets.spec_dict("tiny"), {
        "train.optim.optim": "sgd", "dataset.classify.augmentation_config.augment": True})
    active = search_space.active(space, spec)
    assert set(active["params"]) == set(space["params"]), active.get("inactive")
    base = tao_schema.merged(job_spec(tmp_path, spec))
    for key, d in space["params"].items():
        changed = False
        for end in (d["low"], d["high"]):
            cfg = tao_schema.check(job_spec(tmp_path, train_spec.with_values(spec, {key: end})), "train")
            assert OmegaConf.select(cfg, key) == pytest.approx(end), key
            changed |= OmegaConf.select(cfg, key) != OmegaConf.select(base, key)
        assert changed, key


def test_conditional_keys_are_searched_only_where_tao_reads_them():
    plain = presets.spec_dict("tiny")  # adam, learnable, augment false
    act = search_space.active(search_space.VISUAL_CHANGENET, plain)
    assert "train.optim.momentum" not in act["params"] and "sgd" in act["inactive"]["train.optim.momentum"]
    rotate = "dataset.classify.augmentation_config.random_rotate.rotate_probability"
    assert rotate not in act["params"] and "augment" in act["inactive"][rotate]
    assert "model.classify.learnable_difference_modules" in act["params"]
    euclid = train_spec.with_values(plain, {"model.classify.difference_module": "euclidean"})
    act = search_space.active(search_space.VISUAL_CHANGENET, euclid)
    assert not {"model.classify.learnable_difference_modules", "train.classify.cls_weight[1]"} & set(act["params"])
    no_keys: dict = {}  # a spec that omits the keys reads TAO's defaults: adamw, euclidean, no augmentation
    act = search_space.active(search_space.VISUAL_CHANGENET, no_keys)
    assert set(act["params"]) == {"train.optim.lr", "train.optim.weight_decay", "dataset.classify.fpratio_sampling"}
    with pytest.raises(UserError, match="itself searched"):
        search_space.validate({"params": {"a": {"type": "float", "low": 0, "high": 1, "when": {"b": 1}},
                                          "b": {"type": "int", "low": 0, "high": 1}}})


RUNNER = """
import sys
from nvidia_tao_core.hydra.runner import hydra_runner
from nvidia_tao_core.config.visual_changenet.default_config import ExperimentConfig

@hydra_runner(config_path=".", config_name="experiment_spec", schema=ExperimentConfig)
def main(cfg):
    print("ACCEPTED")

main()
"""


@pytest.mark.parametrize("edit", [
    {},
    {"dataset.classify.augmentation.random_rotate.rotate_probability": 0.3},
    {"model.hidden_width": 64},
    {"train.classify.cls_weight": 3.0},
    {"train.optim.lr": "1e-4", "dataset.classify.augmentation_config.augment": True},
    {"dataset.classify.input_map": {"SolderLight": "zero"}},
])
def test_merged_agrees_with_nvidias_own_hydra_runner(tmp_path, edit):
    """TAO's entrypoint turns ``-e spec.yaml`` into --config-path/--config-name for the hydra runner in
    nvidia_tao_core; run that very runner on the file and compare its verdict with ours."""
    import subprocess
    import sys

    spec = job_spec(tmp_path, train_spec.with_values(presets.spec_dict("tiny"), edit))
    (tmp_path / "runner.py").write_text(RUNNER)
    proc = subprocess.run([sys.executable, "runner.py", "--config-path", str(tmp_path), "--config-name", spec.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    nvidia_accepts = proc.returncode == 0 and "ACCEPTED" in proc.stdout
    try:
        tao_schema.merged(spec)
        ours = True
    except UserError:
        ours = False
    assert ours == nvidia_accepts, proc.stderr[-1500:]
    assert nvidia_accepts == (not edit or "train.optim.lr" in edit)


# Independent problems, each named by the key to change: refused by the schema (merge) or by TAO at run time.
PROBLEMS = {
    "model.hidden_width": ({"model.hidden_width": 64}, "remove it"),
    "train.num_epochs": ({"train.num_epochs": 2.5}, "type the schema declares"),
    "train.classify.cls_weight": ({"train.classify.cls_weight": 3.0}, "give a list"),
    "dataset.classify.augmentation": ({"dataset.classify.augmentation.random_rotate.rotate_probability": 0.3},
                                      "augmentation_config"),
    "train.checkpointer.mode": ({"train.checkpointer.mode": "max"}, "set mode: min"),
    "train.optim.optim": ({"train.optim.optim": "rmsprop"}, "use adamw, adam or sgd"),
    "results_dir": ({"results_dir": ""}, "set results_dir"),
}


@settings(max_examples=15, deadline=None)
@given(chosen=st.sets(st.sampled_from(sorted(PROBLEMS)), min_size=1))
def test_every_problem_of_a_spec_is_named_at_once(tmp_path_factory, chosen):
    """Not the first one and a count: each key, with its fix, on its own line; nothing else."""
    tmp = tmp_path_factory.mktemp("spec")
    spec = job_spec(tmp, presets.spec_dict("tiny"))
    data = yaml.safe_load(spec.read_text())
    for key in chosen:
        for dotted, value in PROBLEMS[key][0].items():
            train_spec.set_dotted(data, dotted, value)
    spec.write_text(train_spec.dump(data))
    with pytest.raises(tao_schema.SpecProblems) as err:
        tao_schema.check(spec, "train")
    assert sorted(err.value.keys) == sorted(chosen), err.value.problems
    for key in chosen:
        line = next(p for p in err.value.problems if p.startswith(f"{spec}: {key}: "))
        assert PROBLEMS[key][1] in line, line
    assert str(err.value).count(" | ") == len(chosen) - 1
