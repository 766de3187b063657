"""Pre-flight: nine sections, hard vs fixable blockers, exit codes, nothing written."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import mini_workspace

KPI = "FAR < 2% at Recall=100%"


@pytest.fixture
def ws(tmp_path):
    return mini_workspace.build(tmp_path / "ws")


def preflight(script, ws, *extra):
    return script("preflight.py", "--workspace", ws, "--backend", "local", *extra)


def test_ready_workspace_prints_nine_sections_and_writes_nothing(ws, script):
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    proc = preflight(script, ws, "--max-iterations", "3", "--kpi-target", KPI)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for n in range(1, 10):
        assert f"\n{n}. " in "\n" + proc.stdout, f"section {n} missing"
    assert "not needed (local backend)" in proc.stdout
    assert "NGC_KEY=" in proc.stdout and "HF_TOKEN=" in proc.stdout
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before


def test_json_has_every_section_and_credential_names_only(ws, script, monkeypatch):
    proc = script("preflight.py", "--workspace", ws, "--max-iterations", "2", "--kpi-target", KPI, "--json",
                  env={"HF_TOKEN": "hf_secret_value"})
    report = json.loads(proc.stdout)
    assert sorted(report["sections"]) == ["1_workspace", "2_credentials", "3_images", "4_data", "5_phase1",
                                          "6_phase2", "7_phase3", "8_compute", "9_confirm"]
    assert report["sections"]["2_credentials"]["HF_TOKEN"] == "SET"
    assert "hf_secret_value" not in proc.stdout
    assert report["sections"]["6_phase2"]["kpi_contract"].startswith("FAR < 2")


@pytest.mark.parametrize("mutate, needle", [
    ("no_iterations", "max_iterations is required"),
    ("bad_kpi", "% sign"),
    ("leak", "leaks 1 sample"),
    ("empty_pool", "mining pool"),
    ("missing_kpi", "KPI set"),
])
def test_hard_blockers_exit_2_and_are_listed(ws, script, mutate, needle):
    args = ["--max-iterations", "3", "--kpi-target", KPI]
    if mutate == "no_iterations":
        args = ["--kpi-target", KPI]
    elif mutate == "bad_kpi":
        args = ["--max-iterations", "3", "--kpi-target", "FAR < 2"]
    elif mutate == "leak":
        train = pd.read_csv(ws / "train/base/training_set.csv")
        kpi = pd.read_csv(ws / "kpi/testing_set.csv")
        pd.concat([train, kpi.head(1)]).to_csv(ws / "train/base/training_set.csv", index=False)
    elif mutate == "empty_pool":
        pd.read_csv(ws / "augmentation/mining_pool/mining_pool.csv").head(0).to_csv(
            ws / "augmentation/mining_pool/mining_pool.csv", index=False)
    elif mutate == "missing_kpi":
        (ws / "kpi/testing_set.csv").unlink()
    proc = preflight(script, ws, *args)
    assert proc.returncode == 2
    assert "HARD BLOCKERS" in proc.stdout and needle in proc.stdout, proc.stdout[-1500:]
    assert "Fix the hard blockers" in proc.stdout


def test_docker_backend_reports_images(ws, script, tmp_path):
    proc = script("preflight.py", "--workspace", ws, "--backend", "docker", "--max-iterations", "1",
                  "--kpi-target", KPI, "--json", env={"PATH": str(tmp_path)})  # no docker client on PATH
    report = json.loads(proc.stdout)
    images = report["sections"]["3_images"]
    assert {r["key"] for r in images} == {"pyt", "data_services"}
    assert all(r["image"].startswith("nvcr.io/") for r in images)
    assert any("docker is not installed" in b for b in report["hard_blockers"])


# ------------------------------------------------------------------ docker / slurm: what TAO would refuse

from support import tao_workspace  # noqa: E402
from support.docker_fixture import fake_docker  # noqa: E402,F401


def docker_preflight(script, ws):
    proc = script("preflight.py", "--workspace", ws, "--backend", "docker", "--max-iterations", "1",
                  "--kpi-target", KPI, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_docker_radio_with_three_lights_and_linear_concat_exits_2_naming_the_key(fake_docker, tmp_path, script):
    ws = tao_workspace.make(tmp_path / "ws", lights=("A", "B", "C"))
    code, report = docker_preflight(script, ws)
    assert report["sections"]["4_data"]["tao"]["specs"].startswith("train and inference specs accepted")
    spec = ws / "specs" / "baseline_spec.yaml"
    data = yaml.safe_load(spec.read_text())
    data["dataset"]["classify"]["concat_type"] = "linear"
    spec.write_text(yaml.safe_dump(data))
    code, report = docker_preflight(script, ws)
    assert code == 2 and report["sections"]["4_data"]["tao"]["specs"].startswith("REFUSED")
    blocker = next(b for b in report["hard_blockers"] if "concat_type" in b)
    assert "dataset.classify.concat_type: c_radio_v2_vit_base_patch16_224 is a ViT and needs a square input" in blocker
    assert blocker.startswith(f"{spec} (in the train job and the inference job's spec): ") and "grid" in blocker


def test_docker_preflight_names_every_problem_of_the_spec_at_once(fake_docker, tmp_path, script):
    """Two keys the schema refuses and one run-time rule, in one spec: one blocker each, in one pre-flight
    (it stopped at the first before: one round trip per fix)."""
    ws = tao_workspace.make(tmp_path / "ws")
    spec = ws / "specs" / "baseline_spec.yaml"
    data = yaml.safe_load(spec.read_text())
    data["model"]["hidden_width"] = 64                    # no such key in NVIDIA's schema
    data["train"]["num_epochs"] = 2.5                      # wrong type
    data["train"]["checkpointer"] = {"enable_topk": True, "monitor": "val_loss", "mode": "max"}  # TAO asserts at run time
    spec.write_text(yaml.safe_dump(data))
    code, report = docker_preflight(script, ws)
    assert code == 2 and report["sections"]["4_data"]["tao"]["specs"].startswith("REFUSED (3 problem(s)")
    spec_blockers = [b for b in report["hard_blockers"] if b.startswith(str(spec))]
    for key, fix in (("model.hidden_width", "remove it"), ("train.num_epochs", "type"),
                     ("train.checkpointer.mode", "set mode: min")):
        hit = [b for b in spec_blockers if f": {key}: " in b]
        assert len(hit) == 1 and fix in hit[0], (key, spec_blockers)
    assert len(spec_blockers) == 3  # the train-only rule is named once, the shared ones once for both jobs
    text = script("preflight.py", "--workspace", ws, "--backend", "docker", "--max-iterations", "1",
                  "--kpi-target", KPI)
    assert text.returncode == 2
    listed = [ln for ln in text.stdout.splitlines() if ln.strip().startswith(f"- {spec}")]
    assert len(listed) == 3, text.stdout


def test_docker_validation_set_smaller_than_the_batch_exits_2_naming_the_key(fake_docker, ws, script):
    from tao_aoi.workspace import presets

    spec = presets.spec_dict("demo")  # batch 64; the mini workspace's validation set has 5 rows
    spec["dataset"]["classify"]["image_ext"] = ".png"
    (ws / "specs" / "baseline_spec.yaml").write_text(yaml.safe_dump(spec))
    code, report = docker_preflight(script, ws)
    assert code == 2
    assert any("dataset.classify.batch_size: is 64 x 1 GPU(s) but training CSV" in b for b in report["hard_blockers"])


def test_docker_gpu_runtime_and_misread_labels(fake_docker, tmp_path, script, monkeypatch):
    ws = tao_workspace.make(tmp_path / "ws")
    csv = ws / "train/base/training_set.csv"
    df = pd.read_csv(csv)
    df.loc[df["label"] == "PASS", "label"] = "pass"
    df.to_csv(csv, index=False)
    code, report = docker_preflight(script, ws)
    tao = report["sections"]["4_data"]["tao"]
    assert tao["gpu_runtime"].startswith("docker info lists the nvidia runtime")
    assert "3 label(s) TAO would misread" in tao["labels"] and any("canonical copy" in b for b in report["fixable_blockers"])
    monkeypatch.setenv("FAKE_DOCKER_RUNTIMES", "runc")
    monkeypatch.setenv("PATH", f"{fake_docker.parent / 'bin'}:/usr/bin:/bin")
    code, report = docker_preflight(script, ws)
    assert code == 2 and any("no GPU runtime for docker" in b for b in report["hard_blockers"])


def _accepted(script_run, name: str) -> set[str]:
    import re

    proc = script_run(name, "--help", env={"COLUMNS": "200"})
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", proc.stdout))


def test_run_pipeline_runs_the_checks_first_and_its_hint_names_its_own_flags(ws, script, tmp_path):
    import re

    (ws / "kpi/testing_set.csv").unlink()
    results = tmp_path / "run"
    proc = script("run_pipeline.py", "--workspace", ws, "--results-dir", results, "--max-iterations", "2",
                  "--kpi-target", KPI, "--trials", "1", "--yes")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stdout + proc.stderr
    assert "KPI set" in proc.stderr and "nothing was started" in proc.stderr
    assert not results.exists() and "Phase 1" not in proc.stdout
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", proc.stderr))
    assert named and named <= _accepted(script, "run_pipeline.py"), named


def test_deft_only_preflight_talks_only_about_deft(ws, script):
    proc = preflight(script, ws, "--max-iterations", "2", "--kpi-target", KPI, "--phases", "deft", "--json")
    report = json.loads(proc.stdout)
    s = report["sections"]
    assert s["5_phase1"] == s["7_phase3"] == {"note": "not part of this run (--phases deft)"}
    assert "no Phase 1" in s["6_phase2"]["baseline"] and "the DEFT loop" in s["9_confirm"]
    text = preflight(script, ws, "--max-iterations", "2", "--kpi-target", KPI, "--phases", "deft").stdout
    assert "three phases" not in text and "Phase 1 winner" not in text and "warm_start" not in text


def test_automl_only_preflight_needs_no_kpi_set_or_iterations(ws, script):
    (ws / "kpi/testing_set.csv").unlink()
    proc = preflight(script, ws, "--phases", "automl", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["hard_blockers"]
    assert report["sections"]["6_phase2"] == {"note": "not part of this run (--phases automl)"}


def test_sets_too_small_for_the_target_are_warned_about(ws, script):
    """The mini workspace has 4 validation and 5 KPI PASS rows: FAR < 2% there means zero false alarms."""
    report = json.loads(preflight(script, ws, "--max-iterations", "2", "--kpi-target", KPI, "--json").stdout)
    text = " | ".join(report["warnings"])
    assert "the validation set has 4 PASS rows, so one false alarm is 25%" in text and "tie at FAR 0%" in text
    assert "the KPI set has 5 PASS rows" in text and "means zero false alarms" in text
    roomy = json.loads(preflight(script, ws, "--max-iterations", "2", "--kpi-target", "FAR < 30% at Recall=100%",
                                 "--json").stdout)
    assert not [w for w in roomy["warnings"] if "PASS rows" in w]


def test_holdout_shown_checked_and_a_conflicting_training_label_blocks(ws, script):
    holdout = ws / "holdout.csv"
    kpi = pd.read_csv(ws / "kpi/testing_set.csv")
    kpi.iloc[:3].to_csv(holdout, index=False)  # shares 3 samples with the KPI set
    proc = preflight(script, ws, "--max-iterations", "2", "--kpi-target", KPI, "--holdout-csv", holdout)
    assert proc.returncode == 2 and "holdout set shares 3 sample(s)" in proc.stdout
    none = preflight(script, ws, "--max-iterations", "2", "--kpi-target", KPI)
    assert "holdout: none: the KPI figure will be measured on the set that chose the deliverable" in none.stdout
    train = pd.read_csv(ws / "train/base/training_set.csv")
    pd.concat([train, train.iloc[[0]].assign(label="BRIDGE")]).to_csv(ws / "train/base/training_set.csv", index=False)
    proc = preflight(script, ws, "--max-iterations", "2", "--kpi-target", KPI)
    assert proc.returncode == 2 and "lines 2 and 10" in proc.stdout and "labelled PASS and BRIDGE" in proc.stdout
