"""Shared fixtures: paths, a subprocess runner for the CLIs, and a minimal valid workspace."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) draws the same examples on every run, so a red run is reproducible
# and never a new random draw; local runs keep drawing fresh examples, which is where new counterexamples come from
# (each one found becomes an explicit regression test).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def run_script(name: str, *args: str, check: bool = False, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run scripts/<name> with this interpreter, exactly as a user would."""
    cmd = [sys.executable, str(SCRIPTS / name), *map(str, args)]
    full_env = dict(os.environ, TAO_AOI_NO_REEXEC="1", **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def generated_workspace(factory, preset: str, seed: int):
    """A synthetic workspace from make_demo_workspace.py (a module fixture's tmp_path_factory)."""
    from tao_aoi.layout import Workspace

    out = factory.mktemp(preset) / "ws"
    run_script("make_demo_workspace.py", "--out", out, "--preset", preset, "--seed", seed, check=True)
    return Workspace.at(out)


def workspace_csvs(ws) -> dict:
    """The four CSVs of a workspace, read as the scripts read them."""
    from tao_aoi.data import changenet_csv

    return {"train": changenet_csv.read(ws.training_csv), "val": changenet_csv.read(ws.validation_csv),
            "kpi": changenet_csv.read(ws.kpi_csv), "mining": changenet_csv.read(ws.mining_pool_csv)}


@pytest.fixture
def script():
    return run_script


def make_stub_workspace(ws: Path) -> Path:
    """Just the files init_deft_state.py checks for (state tests need no images)."""
    (ws / "images").mkdir(parents=True)
    for rel in ("specs/baseline_spec.yaml", "train/base/training_set.csv", "train/base/validation_set.csv",
                "kpi/testing_set.csv"):
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x\n")
    return ws


@pytest.fixture
def stub_workspace(tmp_path: Path) -> Path:
    return make_stub_workspace(tmp_path / "ws")


def hide_sdg_goldens(ws: Path, keep: Path) -> None:
    """Move one OK golden per SDG label of ws's AnomalyGen pool into ``keep``: ingest_sdg.py stops on
    the silent drop; moving them back (restore_sdg_goldens) is the fix."""
    import shutil

    keep.mkdir()
    for label in ("PASS", "MISSING", "BRIDGE", "EXCESS_SOLDER"):
        victim = sorted((ws / "augmentation/anomalygen/original_image").glob(f"*+{label}_*"))[0]
        shutil.move(str(victim), keep / victim.name)


def restore_sdg_goldens(ws: Path, keep: Path) -> None:
    import shutil

    for f in keep.iterdir():
        shutil.move(str(f), ws / "augmentation/anomalygen/original_image" / f.name)
