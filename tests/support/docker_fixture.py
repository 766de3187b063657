"""Fixture ``fake_docker``: the fake TAO ``docker`` (support/fake_docker.py) first on PATH.

Import it into a test module (``from support.docker_fixture import fake_docker  # noqa: F401``).
The fake merges every spec into NVIDIA's schema from the nvidia-tao-core / nvidia-tao-ds wheels,
so the fixture skips locally, or fails under TAO_AOI_REQUIRE_TOOLS=1, when they are missing.
Returns the fake's state folder (calls.jsonl, images.txt).
"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest

from tooling import require

FAKE = Path(__file__).parent / "fake_docker.py"
PLUGIN = Path(__file__).resolve().parents[2]


def require_tao_wheels() -> None:
    for module in ("nvidia_tao_core", "nvidia_tao_ds", "omegaconf"):
        require(importlib.util.find_spec(module) is not None,
                f"{module} is not installed: NVIDIA's TAO schema wheels come from scripts/setup_env.py "
                f"(make venv-test)")


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    require_tao_wheels()
    bin_dir, state = tmp_path / "bin", tmp_path / "docker-state"
    bin_dir.mkdir()
    state.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_DIR", str(state))
    monkeypatch.setenv("FAKE_TAO_PLUGIN", str(PLUGIN))
    monkeypatch.setenv("FAKE_TAO_MODE", "ok")
    monkeypatch.setenv("FAKE_TAO_NETWORK", "hash")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    monkeypatch.delenv("AIR_GAPPED", raising=False)
    return state
