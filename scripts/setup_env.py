#!/usr/bin/env python3
"""Create the toolkit's Python environment: <plugin>/.venv with the pinned dependencies.

Standard library only (it runs before anything is installed, so argparse rather than click). Reads the pins from
pyproject.toml; reruns are no-ops while the pins are unchanged. --test adds the test tools.
NVIDIA's TAO config wheels ([tool.tao-aoi] no-deps) go in with --no-deps: the schema checks of the
docker and slurm backends import only their config modules.
Every script re-executes itself under this .venv, so `python3 scripts/x.py` then just works.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirements(with_test: bool) -> list[str]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    if with_test:
        reqs += project["optional-dependencies"]["test"]
    return reqs


def no_deps_requirements() -> list[str]:
    """Packages installed without their declared dependencies (NVIDIA's TAO config wheels)."""
    return list(_pyproject().get("tool", {}).get("tao-aoi", {}).get("no-deps", []))


def _digest(reqs: list[str], no_deps: list[str]) -> str:
    return hashlib.sha256("\n".join([*reqs, "--no-deps", *no_deps]).encode()).hexdigest()[:16]


def precompile() -> None:
    """Byte-compile the toolkit so state scripts start fast even where PYTHONDONTWRITEBYTECODE is set."""
    subprocess.call([str(VENV / "bin" / "python"), "-m", "compileall", "-q", str(ROOT / "scripts")],
                    stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    # argparse, not click like the other scripts: this one runs before anything is installed.
    p = argparse.ArgumentParser(prog="setup_env.py", description=__doc__.splitlines()[0], allow_abbrev=False,
                                epilog="Next: python3 scripts/preflight.py --workspace W ... (or make demo)")
    p.add_argument("--test", action="store_true", help="also install pytest, hypothesis, skills-ref")
    p.add_argument("--check", action="store_true", help="only report whether the environment is ready (exit 1 if not)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if sys.version_info < (3, 11):
        print(f"error: Python >= 3.11 is required, this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    reqs, no_deps = requirements(args.test), no_deps_requirements()
    digest = _digest(reqs, no_deps)
    stamp = VENV / f".deps-{'test' if args.test else 'run'}-{digest}"
    python = VENV / "bin" / "python"
    if stamp.exists() and python.exists():
        precompile()  # cheap when current; refreshes .pyc after a checkout changed the sources
        if not args.quiet:
            print(f"ready: {VENV}")
        return 0
    if args.check:
        print(f"not ready: run `python3 {ROOT / 'scripts' / 'setup_env.py'}`")
        return 1
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    print(f"installing {len(reqs)} pinned packages into {VENV}", flush=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [str(python), "-m", "pip", "install", "--quiet", *reqs]
    rc = subprocess.call(cmd, env=env)
    if rc == 0 and no_deps:
        rc = subprocess.call([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *no_deps], env=env)
    if rc != 0:
        print(f"error: pip install failed (exit {rc}); see the messages above", file=sys.stderr)
        return 2
    precompile()
    for old in VENV.glob(".deps-*"):
        old.unlink()
    stamp.write_text("\n".join([*reqs, "--no-deps", *no_deps]) + "\n", encoding="utf-8")
    if args.test:  # a test env also satisfies the run requirements
        (VENV / f".deps-run-{_digest(requirements(False), no_deps)}").write_text("")
    print(f"ready: {VENV}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
