"""The field generator (make_demo_workspace.py --preset field-tiny / field): the workspace contract,
what makes it production-like, determinism, and what the toolkit must do on it: a position-free
embedder (a same-family pair at different places is above the floor) and a baseline model that never
calls an unseen but visible defect family a confident PASS."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import generated_workspace, run_script, workspace_csvs
from PIL import Image

from tao_aoi import defaults
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import InferJob, TrainJob
from tao_aoi.data import changenet_csv
from tao_aoi.deft import mining, sdg
from tao_aoi.layout import Workspace
from tao_aoi.model import features
from tao_aoi.tao import train_spec
from tao_aoi.workspace import field
from tao_aoi.workspace import field_render as fr

SEED = 7
UNSEEN = ("TOMBSTONE", "POLARITY", "FOREIGN_MATERIAL")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return generated_workspace(tmp_path_factory, "field-tiny", SEED)


def test_workspace_contract_with_production_quirks(ws):
    for path in ws.required_inputs().values():
        assert path.exists(), path
    spec = train_spec.load(ws.baseline_spec)
    lights = train_spec.lights(spec)
    assert lights == list(fr.LIGHTS) and len(lights) >= 3 and train_spec.image_ext(spec) == ".jpg"
    for name, df in workspace_csvs(ws).items():
        assert list(df.columns[:4]) == list(changenet_csv.REQUIRED), name
        assert {"boardname", "line", "panel", "inspected_at", "aoi_program"} <= set(df.columns), name
        assert not changenet_csv.missing_images(df, ws.images, lights, ".jpg"), name
        assert df["object_name"].str.fullmatch(r"[RCDQ]\d+@\d").all(), name
        assert (df["input_path"].str.count("/") == 4).all(), name  # <line>/<date>/<lot>/<serial>/TOP
    row = workspace_csvs(ws)["kpi"].iloc[0]
    with Image.open(ws.images / row.input_path / f"{row.object_name}_{lights[0]}.jpg") as im:
        assert im.format == "JPEG" and im.size == (fr.SIZE, fr.SIZE) and im.mode == "RGB"


def test_family_situation(ws):
    d = workspace_csvs(ws)
    train, val, kpi, mining_labels = (set(d[k]["label"]) for k in ("train", "val", "kpi", "mining"))
    assert set(UNSEEN) <= kpi - train and val == train
    assert kpi == mining_labels == {"PASS", *fr.FAMILIES}
    files, facts = sdg.scan(ws.sdg_pool)
    assert facts["unpaired_files"] == 0 and facts["unparsed_files"] == 0
    assert set(sdg.samples_per_label(files)) <= set(defaults.SDG_LABELS)
    truth = pd.read_csv(ws.root / "demo_truth.csv", dtype=str, keep_default_na=False)
    assert set(truth.loc[truth["label"] == "POLARITY", "footprint"]) == {"D"}  # only polarised parts
    assert "Q" not in set(truth.loc[truth["label"] == "TOMBSTONE", "footprint"])
    keys = {name: set(changenet_csv.sample_keys(df, ws.images, ws.images)) for name, df in d.items()}
    for held_out in ("val", "kpi"):
        for other in keys:
            if other != held_out:
                assert not keys[held_out] & keys[other], (held_out, other)


def test_deterministic_for_a_seed(ws, tmp_path):
    run_script("make_demo_workspace.py", "--out", tmp_path / "again", "--preset", "field-tiny", "--seed", SEED,
               check=True)

    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and p.name != "demo_manifest.json"}

    assert digest(tmp_path / "again") == digest(ws.root)


def scenes(kind: str, n: int, seed: int = 0) -> fr.Scenes:
    rng = np.random.default_rng(seed)
    return fr.nominal(rng, np.full(n, fr.KINDS.index(kind)))


def render(s: fr.Scenes, seed: int) -> dict[str, np.ndarray]:
    return fr.render(s, np.random.default_rng(seed))


def test_glare_is_seen_by_one_light_and_a_particle_by_every_light():
    s = scenes("C", 1)
    glare = s.take(np.arange(1))
    glare.glare[:] = [1, 0.0, 0.0, 2.5, 0.8]  # light index 1
    plain, shiny = render(s, 3), render(glare, 3)
    diff = {light: np.abs(shiny[light].astype(int) - plain[light].astype(int)).max() for light in fr.LIGHTS}
    assert diff[fr.LIGHTS[1]] > 60 and all(diff[lt] == 0 for lt in fr.LIGHTS if lt != fr.LIGHTS[1])
    speck = s.take(np.arange(1))
    fr.add_defects(speck, np.array(["FOREIGN_MATERIAL"]), np.array([False]), np.random.default_rng(1))
    speck.particle[:, :2] = [-25.0, 25.0]  # on bare board, away from the part
    dirty = render(speck, 3)
    for light in fr.LIGHTS:
        assert np.abs(dirty[light].astype(int) - plain[light].astype(int)).max() > 25, light


def descriptors(test: dict[str, np.ndarray], gold: dict[str, np.ndarray]) -> np.ndarray:
    stack = lambda imgs: np.stack([imgs[light] for light in fr.LIGHTS], axis=1)  # noqa: E731
    cfg = features.FeatureConfig.for_size(fr.SIZE)
    return features.embedding_from_features(features._chunk_vectors(stack(test), stack(gold), cfg), len(fr.LIGHTS))


@pytest.mark.parametrize("family, kind", [("FOREIGN_MATERIAL", "R"), ("POLARITY", "D"), ("MISSING", "C")])
def test_a_same_family_pair_at_different_places_is_above_the_floor(ws, family, kind):
    # one part drawn at two places of the crop, the second turned by 180 degrees, each with the same
    # defect (a particle lands elsewhere too); the pool standardises the comparison as mining does
    base = scenes(kind, 1, seed=4)
    pair = base.take(np.zeros(2, int))
    pair.centre[:] = [[-14.0, -12.0], [15.0, 13.0]]
    pair.angle[1] += np.pi
    gold = render(pair, 5)
    bad = pair.take(np.arange(2))
    fr.add_defects(bad, np.array([family] * 2), np.array([False, False]), np.random.default_rng(2))
    if family == "FOREIGN_MATERIAL":
        bad.particle[1] = bad.particle[0]
        bad.particle[:, :2] = [[-28.0, 20.0], [24.0, -26.0]]
    emb = descriptors(render(bad, 6), gold)
    other = pair.take(np.arange(1))
    fr.add_defects(other, np.array(["BRIDGE"]), np.array([False]), np.random.default_rng(2))
    emb_other = descriptors(render(other, 6), {k: v[:1] for k, v in gold.items()})
    pool = changenet_csv.read(ws.mining_pool_csv)
    lights, ext = list(fr.LIGHTS), field.IMAGE_EXT
    cfg = features.config_for(pool, ws.images, lights, ext)
    settings = features.embedder_settings(lights, ext, cfg)
    p_emb = features.embeddings(pool, ws.images, lights, ext, cfg)
    t, _ = mining.comparable(np.concatenate([emb, emb_other]), p_emb, settings)
    t = mining.unit_rows(t)
    same, cross = float(t[0] @ t[1]), float(t[0] @ t[2])
    assert same >= mining.floor_for(settings), (family, same)
    assert same > cross, (family, same, cross)


def test_the_baseline_never_calls_an_unseen_visible_family_a_confident_pass(ws, tmp_path):
    """Trained on base train only (no TOMBSTONE, POLARITY, FOREIGN_MATERIAL), every row of those
    families scores above the median PASS row of the KPI set."""
    b = get_backend("local")
    b.train(TrainJob(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                     images_root=ws.images, output_dir=tmp_path / "train"))
    b.infer(InferJob(spec=tmp_path / "train" / "experiment.yaml", checkpoint=tmp_path / "train" / "best.ckpt",
                     csv=ws.kpi_csv, images_root=ws.images, output_dir=tmp_path / "inference"))
    out = pd.read_csv(tmp_path / "inference" / "inference.csv")
    median_pass = out.loc[out["label"] == "PASS", "siamese_score"].median()
    for family in UNSEEN:
        scores = out.loc[out["label"] == family, "siamese_score"]
        assert len(scores) and (scores > median_pass).all(), (family, scores.min(), median_pass)
