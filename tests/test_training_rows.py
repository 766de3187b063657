"""NVIDIA's training-set rules: one row per (input_path, golden_path, object_name), the first kept; a key labelled
twice refused naming both rows; a repeated row never weighs more (the model trained on repeats is the model trained
on the de-duplicated set)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mini_workspace
from tao_aoi.data import dataset_checks
from tao_aoi.errors import UserError


@pytest.fixture
def ws(tmp_path) -> Path:
    return mini_workspace.build(tmp_path / "ws")


def _base(ws: Path) -> pd.DataFrame:
    return pd.read_csv(ws / "train/base/training_set.csv", dtype=str)


@settings(max_examples=150, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1), st.sampled_from(["./", "", "x/../"])),
                      min_size=1, max_size=30))
def test_dedupe_keeps_the_first_row_of_every_key(tmp_path_factory, picks):
    """Spellings of one folder (./a, x/../a) are one key; another golden is another key."""
    rows = [{"input_path": f"{pre}in/b{k % 3}", "golden_path": f"gold{g}/b{k % 3}", "object_name": f"C{k}",
             "label": "MISSING" if k % 2 else "PASS", "n": i} for i, (k, g, pre) in enumerate(picks)]
    df = pd.DataFrame(rows)
    root = tmp_path_factory.getbasetemp() / "no_such_images"
    kept, dropped = dataset_checks.dedupe(df, root)
    seen, want = set(), []
    for r in rows:
        key = (r["input_path"].replace("x/../", "").replace("./", ""), r["golden_path"], r["object_name"])
        if key not in seen:
            seen.add(key)
            want.append(r["n"])
    assert list(kept["n"]) == want and dropped == len(rows) - len(want)


def test_a_key_labelled_twice_is_refused_naming_both_rows(ws, script):
    df = _base(ws)
    twin = df.iloc[[2]].assign(label="BRIDGE")  # line 4 is PASS; the twin goes to the end
    bad = pd.concat([df, twin], ignore_index=True)
    with pytest.raises(UserError, match=r"lines 4 and 10: the same training sample .* is labelled PASS and BRIDGE"):
        dataset_checks.dedupe(bad, ws / "images", ws / "train/base/training_set.csv")
    path = ws / "train" / "conflict.csv"
    bad.to_csv(path, index=False)
    proc = script("validate_training_csv.py", "--csv", path, "--images-root", ws / "images", "--train-spec",
                  ws / "specs/baseline_spec.yaml")
    assert proc.returncode == 2 and "lines 4 and 10" in proc.stderr and "labelled twice" in proc.stderr
    # label case is not a conflict: "pass" and "PASS" are one label (the canonical-label check reports it)
    case = pd.concat([df, df.iloc[[2]].assign(label="pass")], ignore_index=True)
    assert dataset_checks.dedupe(case, ws / "images")[1] == 1


def test_repeats_are_a_warning_and_training_keeps_the_first(ws, script):
    df = _base(ws)
    path = ws / "train" / "repeats.csv"
    pd.concat([df, df.iloc[[0, 0, 6]]], ignore_index=True).to_csv(path, index=False)
    proc = script("validate_training_csv.py", "--csv", path, "--images-root", ws / "images", "--train-spec",
                  ws / "specs/baseline_spec.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["duplicate_count"] == 3 and report["label_conflict_count"] == 0
    other_golden = pd.concat([df, df.iloc[[0]].assign(golden_path="golden/board1")], ignore_index=True)
    assert dataset_checks.dedupe(other_golden, ws / "images")[1] == 0  # another golden: another training pair


def test_a_repeated_row_is_never_a_class_weight(tmp_path, script):
    """Train on the base set with one defect row repeated 25 times: the checkpoint scores exactly like the one
    trained on the set without the repeats (the repeats were dropped, not weighed)."""
    ws = tmp_path / "ws"
    script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "5", check=True)
    base = pd.read_csv(ws / "train/base/training_set.csv", dtype=str, keep_default_na=False)
    defect = int(np.flatnonzero(base["label"] != "PASS")[0])
    repeated = pd.concat([base, base.iloc[[defect] * 25]], ignore_index=True)
    csv = ws / "train" / "repeated.csv"
    repeated.to_csv(csv, index=False)
    scores = {}
    for name, train_csv in (("clean", ws / "train/base/training_set.csv"), ("repeated", csv)):
        out = tmp_path / name
        script("train.py", "--backend", "local", "--spec", ws / "specs/baseline_spec.yaml", "--train-csv", train_csv,
               "--val-csv", ws / "train/base/validation_set.csv", "--images-root", ws / "images", "--output-dir",
               out / "train", "--set", "train.num_epochs=3", check=True)
        script("infer.py", "--backend", "local", "--spec", out / "train/experiment.yaml", "--checkpoint",
               out / "train/best.ckpt", "--csv", ws / "kpi/testing_set.csv", "--images-root", ws / "images",
               "--output-dir", out / "inference", check=True)
        scores[name] = pd.read_csv(out / "inference/inference.csv")["siamese_score"].to_numpy()
    assert np.array_equal(scores["clean"], scores["repeated"])
    assert "25 repeated training row(s)" in (tmp_path / "repeated/train/train.log").read_text()


def test_assembly_drops_repeated_base_rows_and_refuses_a_mined_row_labelled_otherwise(ws, tmp_path, script):
    from test_dataset_gates import pool_row, write_new_rows

    from tao_aoi.commands import init_deft_state

    df = _base(ws)
    pd.concat([df, df.iloc[[1, 1]]], ignore_index=True).to_csv(ws / "train/base/training_set.csv", index=False)
    r = tmp_path / "run"
    init_deft_state.main(["--results-dir", str(r), "--workspace", str(ws), "--max-iterations", "3",
                          "--kpi-target", "FAR < 2% at Recall=100%"])
    write_new_rows(r, "iter1", [], [pool_row(1)])
    proc = script("assemble_dataset.py", "--results-dir", r, "--iter", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["previous_repeats_dropped"] == 2 and rep["combined_rows"] == 9 and rep["duplicate_count"] == 0
    prov = pd.read_csv(r / "iter1/dataset/train_combined_iter1_provenance.csv")
    assert len(prov) == 9 and list(prov["row"]) == list(range(9))
    # a mined row that is a training sample under another label: hard stop naming both rows in their files
    r2 = tmp_path / "run2"
    init_deft_state.main(["--results-dir", str(r2), "--workspace", str(ws), "--max-iterations", "3",
                          "--kpi-target", "FAR < 2% at Recall=100%"])
    clash = {**df.iloc[0].to_dict(), "label": "SHIFT"}
    write_new_rows(r2, "iter1", [], [{k: clash[k] for k in ("input_path", "golden_path", "label", "object_name")}])
    proc = script("assemble_dataset.py", "--results-dir", r2, "--iter", "1")
    assert proc.returncode == 2
    assert "training_set.csv line 2 (PASS)" in proc.stderr and "mined_rows.csv line 2 (SHIFT)" in proc.stderr
    assert not (r2 / "iter1/dataset/train_combined_iter1.csv").exists()


def test_tao_gets_a_deduplicated_copy_of_the_training_csv(ws, tmp_path):
    from tao_aoi.backends import tao

    df = _base(ws)
    path = ws / "train" / "repeats.csv"
    pd.concat([df, df.iloc[[0, 3]]], ignore_index=True).to_csv(path, index=False)
    got = tao._tao_csv(path, tmp_path / "job", ws / "images", list(mini_workspace.LIGHTS), ".png", "training CSV")
    assert got.copied and got.rows == len(df)
    assert pd.read_csv(got.path, dtype=str).equals(df.astype(str))
    val = tao._tao_csv(path, tmp_path / "job", ws / "images", list(mini_workspace.LIGHTS), ".png", "validation CSV")
    assert not val.copied  # only the training set follows the training rules
