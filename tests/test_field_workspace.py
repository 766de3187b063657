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
from tao_aoi.workspace import builder, field
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


@pytest.fixture(scope="module")
def base_model(ws, tmp_path_factory) -> tuple[Path, float, pd.DataFrame]:
    """Trained on base train only: (its training folder, the KPI set's median PASS score, KPI scores)."""
    out = tmp_path_factory.mktemp("base_model")
    b = get_backend("local")
    b.train(TrainJob(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                     images_root=ws.images, output_dir=out / "train"))
    b.infer(InferJob(spec=out / "train" / "experiment.yaml", checkpoint=out / "train" / "best.ckpt",
                     csv=ws.kpi_csv, images_root=ws.images, output_dir=out / "inference"))
    scores = pd.read_csv(out / "inference" / "inference.csv")
    return out / "train", float(scores.loc[scores["label"] == "PASS", "siamese_score"].median()), scores


def test_the_baseline_never_calls_an_unseen_visible_family_a_confident_pass(base_model):
    """Trained on base train only (no TOMBSTONE, POLARITY, FOREIGN_MATERIAL), every row of those
    families scores above the median PASS row of the KPI set."""
    _, median_pass, out = base_model
    for family in UNSEEN:
        scores = out.loc[out["label"] == family, "siamese_score"]
        assert len(scores) and (scores > median_pass).all(), (family, scores.min(), median_pass)


def edge_and_tongue_cases(n_seed: int = 11) -> tuple[fr.Scenes, fr.Scenes, list[str]]:
    """(goldens, tests, names): a hard particle touching each side of the crop on a chip and a SOT-23,
    and a hard solder tongue beyond each pad of every kind (the generator's forms, placed by hand)."""
    rng = np.random.default_rng(n_seed)
    kinds, names, setups = [], [], []
    for kind in ("R", "Q"):
        for side in range(4):
            kinds.append(fr.KINDS.index(kind))
            names.append(f"border{side}{kind}@1")
            setups.append(("border", side))
    for kind in fr.KINDS:
        for term in range(3 if kind == "Q" else 2):
            kinds.append(fr.KINDS.index(kind))
            names.append(f"tongue{term}{kind}@1")
            setups.append(("extension", term))
    gold = fr.nominal(rng, np.asarray(kinds))
    test = gold.take(np.arange(len(kinds)))
    fr.capture(gold, rng, golden=True)
    fr.production(test, rng, glare_share=0.0)
    for i, (form, where) in enumerate(setups):
        if form == "border":
            axis, outward = where % 2, 1.0 if where < 2 else -1.0
            test.particle[i] = [0.0, 0.0, 1.4, 0.0, 0.3, 1.0]
            test.particle[i, axis] = outward * (fr.SIZE - 1) / 2 - test.register[i, axis] - outward * 0.3 * 1.4
            test.particle[i, 1 - axis] = rng.uniform(-20, 20)
        else:
            test.tongue[i] = [where, 4.0, 1.4, 1.0]
    return gold, test, names


def test_a_change_touching_the_crop_edge_or_a_thin_tongue_beyond_a_pad_scores_above_the_pass_median(
        ws, base_model, tmp_path):
    """The embedded model sees a change wherever it is in the crop: a particle the crop's edge cuts and a
    thin solder tongue beyond a pad, never seen as such in base training, score above the median PASS."""
    train, median_pass, _ = base_model
    gold, test, names = edge_and_tongue_cases()
    writer = builder.ImageWriter()
    root = tmp_path / "images"
    field._write_images(writer, gold, [root / "cases" / "golden" / n for n in names], np.random.default_rng(1))
    field._write_images(writer, test, [root / "cases" / "test" / n for n in names], np.random.default_rng(2))
    csv = tmp_path / "cases.csv"
    labels = ["FOREIGN_MATERIAL" if n.startswith("border") else "EXCESS_SOLDER" for n in names]
    pd.DataFrame({"input_path": "cases/test", "golden_path": "cases/golden", "label": labels,
                  "object_name": names}).to_csv(csv, index=False)
    get_backend("local").infer(InferJob(spec=train / "experiment.yaml", checkpoint=train / "best.ckpt", csv=csv,
                                        images_root=root, output_dir=tmp_path / "inference"))
    out = pd.read_csv(tmp_path / "inference" / "inference.csv")
    low = out[out["siamese_score"] <= median_pass]
    assert low.empty, (low[["object_name", "siamese_score"]].to_dict("records"), median_pass)
    # and the descriptors register each of them: the strongest local change is above the same crop's without it
    cfg = features.FeatureConfig.for_size(fr.SIZE)
    stack = lambda imgs: np.stack([imgs[light] for light in fr.LIGHTS], axis=1)  # noqa: E731
    clean = test.take(np.arange(len(names)))
    clean.particle[:] = 0.0
    clean.tongue[:] = 0.0
    g = stack(render(gold, 1))
    with_it = features._chunk_vectors(stack(render(test, 2)), g, cfg)
    without = features._chunk_vectors(stack(render(clean, 2)), g, cfg)
    strongest = lambda x: x[:, :features.PER_LIGHT * len(fr.LIGHTS)].reshape(len(x), len(fr.LIGHTS), -1)[:, :, 0].max(1)  # noqa: E731
    assert (strongest(with_it) > strongest(without)).all()
