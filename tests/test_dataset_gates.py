"""Leakage, training-CSV validation and iteration assembly: every gate exits 2 and writes nothing partial."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import mini_workspace
from tao_aoi.commands import init_deft_state


@pytest.fixture
def ws(tmp_path) -> Path:
    return mini_workspace.build(tmp_path / "ws")


def csv(ws: Path, rel: str) -> Path:
    return ws / rel


# ------------------------------------------------------------------ check_leakage


def _train_with(ws: Path, extra: dict) -> Path:
    df = pd.read_csv(ws / "train/base/training_set.csv")
    df = pd.concat([df, pd.DataFrame([extra])], ignore_index=True)
    out = ws / "train" / "candidate.csv"
    df.to_csv(out, index=False)
    return out


@pytest.mark.parametrize("input_path, label", [
    ("kpi/board0", "PASS"),              # identical
    ("images/kpi/board0", "PASS"),       # workspace-relative prefix
    ("./kpi//board0/", "PASS"),          # ./ and duplicate slashes
    ("kpi/board1/../board0", "pass"),    # .. and a different label spelling
])
def test_leaks_are_found_whatever_the_path_spelling(ws, script, input_path, label):
    train = _train_with(ws, {"input_path": input_path, "golden_path": "golden/board0", "label": label,
                             "object_name": "C0@1", "boardname": "B0"})
    proc = script("check_leakage.py", "--train", train, "--against", ws / "kpi/testing_set.csv",
                  "--against", ws / "train/base/validation_set.csv", "--images-root", ws / "images")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "kpi/board0/C0@1" in proc.stdout and "leak" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_no_leak_passes_and_default_root_is_found(ws, script):
    proc = script("check_leakage.py", "--train", ws / "train/base/training_set.csv",
                  "--against", ws / "kpi/testing_set.csv")
    assert proc.returncode == 0, proc.stderr
    assert "no leakage" in proc.stdout


def test_csv_outside_a_workspace_is_refused_not_guessed(ws, script, tmp_path):
    """Copies of the CSVs in a folder with no images/: an images/-prefixed leak must not pass as "no leakage"."""
    outside = tmp_path / "handoff"
    outside.mkdir()
    train = _train_with(ws, {"input_path": "images/kpi/board0", "golden_path": "images/golden/board0",
                             "label": "PASS", "object_name": "C0@1", "boardname": "B0"})
    (outside / "train.csv").write_text(train.read_text())
    (outside / "kpi.csv").write_text((ws / "kpi/testing_set.csv").read_text())
    guessed = script("check_leakage.py", "--train", outside / "train.csv", "--against", outside / "kpi.csv")
    assert guessed.returncode == 2, guessed.stdout + guessed.stderr
    assert "no leakage" not in guessed.stdout and "--images-root" in guessed.stderr
    assert "train.csv line 2" in guessed.stderr and guessed.stderr.count("\n") == 1
    told = script("check_leakage.py", "--train", outside / "train.csv", "--against", outside / "kpi.csv",
                  "--images-root", ws / "images")
    assert told.returncode == 2 and "kpi/board0/C0@1" in told.stdout and "leak" in told.stderr


def test_missing_sample_folder_is_refused_even_with_an_images_root(ws, script):
    train = _train_with(ws, {"input_path": "gone/board9", "golden_path": "golden/board0", "label": "PASS",
                             "object_name": "C0@1", "boardname": "B0"})
    proc = script("check_leakage.py", "--train", train, "--against", ws / "kpi/testing_set.csv",
                  "--images-root", ws / "images")
    assert proc.returncode == 2 and "'gone/board9'" in proc.stderr and "no leakage" not in proc.stdout


# ------------------------------------------------------------------ validate_training_csv


def _validate(script, ws, train, *extra):
    return script("validate_training_csv.py", "--csv", train, "--images-root", ws / "images",
                  "--train-spec", ws / "specs/baseline_spec.yaml", *extra)


def test_clean_training_csv_validates_and_writes_report(ws, script, tmp_path):
    rep = tmp_path / "r.json"
    proc = _validate(script, ws, ws / "train/base/training_set.csv", "--against", ws / "kpi/testing_set.csv",
                     "--report-json", rep)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(rep.read_text())
    assert report["missing_file_count"] == 0 and report["leakage_count"] == 0 and report["rows"] == 8


def test_missing_light_image_names_line_and_file(ws, script):
    (ws / "images/train/board1/C1@1_UniformLight.png").unlink()
    proc = _validate(script, ws, ws / "train/base/training_set.csv")
    assert proc.returncode == 2
    assert "line 3" in proc.stderr and "C1@1_UniformLight.png" in proc.stderr


def test_noncanonical_label_is_refused(ws, script):
    train = _train_with(ws, {"input_path": "train/board0", "golden_path": "golden/board0", "label": "pass",
                             "object_name": "C9@1", "boardname": "B0"})
    mini_workspace.sample(ws / "images", "train/board0", "C9@1", 5)
    proc = _validate(script, ws, train)
    assert proc.returncode == 2 and "'pass'" in proc.stderr and "'PASS'" in proc.stderr


def test_one_class_training_set_is_refused(ws, script):
    df = pd.read_csv(ws / "train/base/training_set.csv")
    only = ws / "train" / "only_pass.csv"
    df[df.label == "PASS"].to_csv(only, index=False)
    proc = _validate(script, ws, only)
    assert proc.returncode == 2 and "both PASS and defect" in proc.stderr


def test_missing_column_is_named(ws, script):
    df = pd.read_csv(ws / "train/base/training_set.csv").drop(columns=["golden_path"])
    bad = ws / "train" / "bad.csv"
    df.to_csv(bad, index=False)
    proc = _validate(script, ws, bad)
    assert proc.returncode == 2 and "'golden_path'" in proc.stderr


# ------------------------------------------------------------------ assembly


@pytest.fixture
def run_dir(ws, tmp_path) -> Path:
    r = tmp_path / "run"
    init_deft_state.main(["--results-dir", str(r), "--workspace", str(ws), "--max-iterations", "3",
                          "--kpi-target", "FAR < 2% at Recall=100%"])
    return r


def write_new_rows(r: Path, label: str, sdg: list[dict], mined: list[dict]) -> None:
    for sub, rows_, extra in (("sdg", sdg, {"source": "sdg", "sdg_sample": "s"}),
                              ("mining", mined, {"source": "mined", "similarity": 0.95, "target": "t"})):
        d = r / label / sub
        d.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame([{**x, **extra} for x in rows_],
                          columns=["input_path", "golden_path", "label", "object_name", *extra])
        df.to_csv(d / ("sdg_rows.csv" if sub == "sdg" else "mined_rows.csv"), index=False)


def pool_row(i: int) -> dict:
    return {"input_path": f"pool/board{i % 3}", "golden_path": f"golden/board{i % 3}",
            "label": ["PASS", "SHIFT", "SHIFT", "MISSING"][i], "object_name": f"C{i}@1"}


def test_iter1_assembles_base_plus_new_with_provenance(ws, run_dir, script):
    write_new_rows(run_dir, "iter1", [], [pool_row(1), pool_row(2)])
    proc = script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["previous_rows"], report["new_rows"], report["combined_rows"]) == (8, 2, 10)
    assert report["new_by_source"] == {"sdg": 0, "mined": 2}
    combined = pd.read_csv(run_dir / "iter1/dataset/train_combined_iter1.csv")
    prov = pd.read_csv(run_dir / "iter1/dataset/train_combined_iter1_provenance.csv")
    base = pd.read_csv(ws / "train/base/training_set.csv")
    assert len(prov) == len(combined)
    assert combined.iloc[:8][["input_path", "object_name", "label"]].equals(base[["input_path", "object_name", "label"]])
    assert list(prov["source"]) == ["base_train"] * 8 + ["mined"] * 2


def test_iter2_keeps_previous_rows_unchanged_and_drops_repeats(ws, run_dir, script):
    write_new_rows(run_dir, "iter1", [], [pool_row(1)])
    assert script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "1").returncode == 0
    write_new_rows(run_dir, "iter2", [], [pool_row(1), pool_row(2)])  # pool_row(1) is already in
    proc = script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["new_rows"] == 1 and report["duplicates_dropped"] == 1
    c1 = pd.read_csv(run_dir / "iter1/dataset/train_combined_iter1.csv")
    c2 = pd.read_csv(run_dir / "iter2/dataset/train_combined_iter2.csv")
    assert c2.iloc[: len(c1)].equals(c1)
    prov = pd.read_csv(run_dir / "iter2/dataset/train_combined_iter2_provenance.csv")
    assert list(prov["source"]) == ["previous_iter"] * 9 + ["mined"]
    assert list(prov["origin"]) == ["base_train"] * 8 + ["mined", "mined"]
    assert list(prov["added_in"])[-2:] == ["iter1", "iter2"]


@pytest.mark.parametrize("leaky_path", ["kpi/board0", "images/kpi/board0", "./val/board1/"])
def test_assembly_stops_on_leakage_and_writes_no_training_set(ws, run_dir, script, leaky_path):
    obj = "C0@1" if "kpi" in leaky_path else "C1@1"
    write_new_rows(run_dir, "iter1", [], [{"input_path": leaky_path, "golden_path": "golden/board0",
                                           "label": "PASS", "object_name": obj}])
    proc = script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "1")
    assert proc.returncode == 2 and "leak" in proc.stderr
    assert not (run_dir / "iter1/dataset/train_combined_iter1.csv").exists()
    report = json.loads((run_dir / "iter1/dataset/validation_report.json").read_text())
    assert report["leakage_count"] == 1


def test_assembly_stops_on_zero_new_rows(ws, run_dir, script):
    write_new_rows(run_dir, "iter1", [], [])
    proc = script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "1")
    assert proc.returncode == 2 and "zero new rows" in proc.stderr
    assert not (run_dir / "iter1/dataset/train_combined_iter1.csv").exists()


def test_assembly_stops_on_a_missing_image(ws, run_dir, script):
    (ws / "images/pool/board2/C2@1_SolderLight.png").unlink()
    write_new_rows(run_dir, "iter1", [], [pool_row(2)])
    proc = script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "1")
    assert proc.returncode == 2 and "C2@1_SolderLight.png" in proc.stderr


def test_assembly_before_its_inputs_exist_is_a_clear_error(ws, run_dir, script):
    proc = script("assemble_dataset.py", "--results-dir", run_dir, "--iter", "1")
    assert proc.returncode == 2 and "sdg_rows.csv does not exist" in proc.stderr
