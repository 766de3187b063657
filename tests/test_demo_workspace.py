"""make_demo_workspace.py: layout contract, determinism, the family situation DEFT exists for,
disjoint held-out sets, the AnomalyGen pool layout, and no partial workspace on failure."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import generated_workspace, run_script, workspace_csvs
from PIL import Image

from tao_aoi import defaults
from tao_aoi.data import changenet_csv
from tao_aoi.deft import sdg
from tao_aoi.errors import UserError
from tao_aoi.layout import Workspace
from tao_aoi.tao import train_spec
from tao_aoi.workspace import demo, demo_render, diagnostics, presets

SEED = 11


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return generated_workspace(tmp_path_factory, "tiny", SEED)


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "demo_manifest.json"}


def test_layout_and_csv_contract(ws):
    for path in ws.required_inputs().values():
        assert path.exists(), path
    assert ws.mining_pool_csv.is_file() and (ws.sdg_pool / "SDG_result.csv").is_file()
    spec = train_spec.load(ws.baseline_spec)
    assert train_spec.lights(spec) == ["SolderLight", "UniformLight"]
    assert train_spec.image_ext(spec) == ".png"
    assert train_spec.get(spec, "train.pretrained_model_path") == ""
    for key in ("train.num_epochs", "train.optim.lr", "train.optim.weight_decay", "dataset.classify.batch_size",
                "model.classify.embed_dec", "train.classify.cls_weight[0]", "train.classify.cls_weight[1]"):
        assert isinstance(train_spec.get(spec, key), (int, float)), key
    assert isinstance(train_spec.get(spec, "train.classify.cls_weight"), list)  # TAO: one weight per class
    yaml.safe_load(ws.baseline_spec.read_text())  # plain YAML, no tags
    for name, df in workspace_csvs(ws).items():
        assert list(df.columns[:4]) == list(changenet_csv.REQUIRED), name
        assert not changenet_csv.missing_images(df, ws.images, ["SolderLight", "UniformLight"], ".png"), name
        assert df["label"].isin(["PASS", *demo_render.FAMILIES]).all()
    with Image.open(ws.images / "golden" / "BRD_A" / "R1_SolderLight.png") as im:
        assert im.size == (demo.IMAGE_SIZE,) * 2 and im.mode == "RGB"


def test_family_situation(ws):
    d = workspace_csvs(ws)
    train, kpi, mining = (set(d[k]["label"]) for k in ("train", "kpi", "mining"))
    assert {"SHIFT", "TOMBSTONE"} <= kpi - train, "the base set must lack families the KPI set has"
    assert (d["train"]["label"] == "EXCESS_SOLDER").mean() < 0.05  # nearly lacks
    assert kpi == {"PASS", *demo_render.FAMILIES}
    assert mining == {"PASS", *demo_render.FAMILIES}, "the mining pool holds the families SDG cannot make"
    assert set(d["val"]["label"]) == kpi  # validation: a held-out production sample with every family
    files, facts = sdg.scan(ws.sdg_pool)
    assert facts["unpaired_files"] == 0 and facts["unparsed_files"] == 0
    assert set(sdg.samples_per_label(files)) == set(defaults.SDG_LABELS)
    truth = pd.read_csv(ws.root / "demo_truth.csv", dtype=str, keep_default_na=False)
    kpi_truth = truth[(truth["split"] == "kpi") & (truth["label"] != "PASS")]
    for family, grp in kpi_truth.groupby("label"):
        assert set(grp["severity"]) == {"easy", "hard"}, family


def test_held_out_sets_are_disjoint(ws):
    keys = {name: set(changenet_csv.sample_keys(df, ws.images, ws.images)) for name, df in workspace_csvs(ws).items()}
    for held_out in ("val", "kpi"):
        for other in keys:
            if other != held_out:
                assert not keys[held_out] & keys[other], (held_out, other)
    assert all(len(k) == len(df) for k, df in zip(keys.values(), workspace_csvs(ws).values())), "duplicate sample keys"


def test_sdg_pool_layout(ws):
    ng = sorted(p.name for p in (ws.sdg_pool / "reconstructed_image").iterdir())
    ok = sorted(p.name for p in (ws.sdg_pool / "original_image").iterdir())
    assert ng == ok and ng
    manifest = pd.read_csv(ws.sdg_pool / "SDG_result.csv", dtype=str)
    assert sorted(manifest["image_name"]) == ng
    parsed = [sdg.parse_name(Path(n).stem) for n in ng]
    assert all(p and p["light"] in ("SolderLight", "UniformLight") for p in parsed)
    assert {p["label"] for p in parsed} == set(defaults.SDG_LABELS)


def test_good_parts_differ_from_their_golden(ws):
    df = changenet_csv.read(ws.kpi_csv)
    good = df[df["label"] == "PASS"].head(20)
    diffs = []
    for row in good.itertuples():
        t = np.asarray(Image.open(ws.images / row.input_path / f"{row.object_name}_UniformLight.png"), float)
        g = np.asarray(Image.open(ws.images / row.golden_path / f"{row.object_name}_UniformLight.png"), float)
        diffs.append(np.abs(t - g).mean())
    assert min(diffs) > 1.0, "nuisance (jitter, gain, noise) must make PASS a non-zero difference"


def test_deterministic_for_a_seed(ws, tmp_path):
    run_script("make_demo_workspace.py", "--out", tmp_path / "again", "--preset", "tiny", "--seed", SEED, check=True)
    assert digest_tree(tmp_path / "again") == digest_tree(ws.root)
    run_script("make_demo_workspace.py", "--out", tmp_path / "other", "--preset", "tiny", "--seed", SEED + 1,
               check=True)
    other = {h for k, h in digest_tree(tmp_path / "other").items() if k.endswith(".png")}
    mine = {h for k, h in digest_tree(ws.root).items() if k.endswith(".png")}
    assert len(other & mine) < 0.05 * len(mine), "another seed must give other images"


def test_refuses_non_empty_out_and_force_replaces(tmp_path):
    out = tmp_path / "ws"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_script("make_demo_workspace.py", "--out", out, "--preset", "tiny")
    assert proc.returncode == 2 and str(out) in proc.stderr and proc.stderr.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    proc = run_script("make_demo_workspace.py", "--out", out, "--preset", "tiny", "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "keep.txt").exists() and Workspace.at(out).kpi_csv.is_file()


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(demo.pr, "add_defects", broken)
    with pytest.raises(RuntimeError):
        presets.build(tmp_path / "ws", "tiny", 0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="preset"):
        presets.build(tmp_path / "ws", "huge", 0)


def test_preset_sizes():
    assert sum(demo.PRESETS["large"].rows.values()) >= 20_000
    assert sum(demo.PRESETS["tiny"].rows.values()) < sum(demo.PRESETS["demo"].rows.values())


def floor_summary(table: pd.DataFrame) -> tuple[float, float]:
    """(share of defect targets with a same-family row >= floor, share of kept neighbours of the
    target's family) for a search across labels: the embedder's own quality (mining searches within
    the target's label by default, which makes the second share 1 by construction)."""
    defects = table[table["label"] != "PASS"]
    weight = defects["targets"] / defects["targets"].sum()
    return (float((defects["with_same_label_hit"] * weight).sum()),
            float((defects["kept_same_label_share"] * weight).sum()))


def test_mining_floor_keeps_same_family_rows_on_tiny(ws):
    # tiny's pool has ~20 rows per family, so fewer targets find a twin; what is kept must still be right
    hit, purity = floor_summary(diagnostics.similarity_check(ws.root))
    assert hit >= 0.75 and purity >= 0.8


@pytest.mark.slow
def test_mining_floor_is_meaningful_on_demo(tmp_path):
    run_script("make_demo_workspace.py", "--out", tmp_path / "ws", "--preset", "demo", "--quiet", check=True)
    hit, purity = floor_summary(diagnostics.similarity_check(tmp_path / "ws"))
    assert hit >= 0.95 and purity >= 0.95
