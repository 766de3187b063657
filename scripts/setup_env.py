#!/usr/bin/env python3
"""Create the toolkit's Python environment: <plugin>/.venv with the pinned dependencies.

Standard library only (it runs before anything is installed, so argparse rather than click). Reads the pins from
pyproject.toml; reruns are no-ops while the pins are unchanged. --extra NAME adds an optional extra (ann: faiss
for mine_pool.py --method ann; bench: the tree libraries of bench/embedded.py --trees); --test adds the test
tools and the extras the tests exercise ([tool.tao-aoi] test-extras).
What the pins pull in is held to [tool.tao-aoi] constraints (pip -c): the same versions on every machine.
NVIDIA's TAO config wheels ([tool.tao-aoi] no-deps) go in with --no-deps: the schema checks of the
docker and slurm backends import only their config modules.
Every script re-executes itself under this .venv, so `python3 scripts/x.py` then just works.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def extras() -> list[str]:
    """The optional extras (``ann``, ...) besides ``test``."""
    return sorted(k for k in _pyproject()["project"].get("optional-dependencies", {}) if k != "test")


def test_extras() -> list[str]:
    """The extras the test suite exercises ([tool.tao-aoi] test-extras), installed with --test."""
    return list(_tool().get("test-extras", []))


def requirements(with_test: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """Runtime pins, plus the named extras; ``with_test`` adds the test tools and the extras tests exercise."""
    project = _pyproject()["project"]
    optional = project.get("optional-dependencies", {})
    reqs = list(project["dependencies"])
    for name in sorted(set(extra) | set(test_extras() if with_test else ())):
        reqs += optional[name]
    if with_test:
        reqs += optional["test"]
    return reqs


def no_deps_requirements() -> list[str]:
    """Packages installed without their declared dependencies (NVIDIA's TAO config wheels)."""
    return list(_tool().get("no-deps", []))


def constraints() -> list[str]:
    """Exact versions of what the pins pull in (pip's -c: they fix a version, never add a package)."""
    return list(_tool().get("constraints", []))


def _tool() -> dict:
    return _pyproject().get("tool", {}).get("tao-aoi", {})


def _digest(reqs: list[str], no_deps: list[str]) -> str:
    return hashlib.sha256("\n".join([*reqs, "--no-deps", *no_deps, "-c", *constraints()]).encode()).hexdigest()[:16]


def _stamp(with_test: bool, extra: tuple[str, ...]) -> Path:
    """The marker of an installed set: ``.deps-<test|run[+extra...]>-<digest of its pins>``."""
    name = "+".join(["test" if with_test else "run", *sorted(set(extra) - set(test_extras() if with_test else ()))])
    return VENV / f".deps-{name}-{_digest(requirements(with_test, extra), no_deps_requirements())}"


def precompile() -> None:
    """Byte-compile the toolkit so state scripts start fast even where PYTHONDONTWRITEBYTECODE is set."""
    subprocess.call([str(VENV / "bin" / "python"), "-m", "compileall", "-q", str(ROOT / "scripts")],
                    stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    # argparse, not click like the other scripts: this one runs before anything is installed.
    p = argparse.ArgumentParser(prog="setup_env.py", description=__doc__.splitlines()[0], allow_abbrev=False,
                                epilog="Next: python3 scripts/preflight.py --workspace W ... (or make demo)")
    p.add_argument("--extra", action="append", default=[], choices=extras(),
                   help="also install an optional extra (ann: faiss for mine_pool.py --method ann; bench: the "
                        "tree libraries bench/embedded.py --trees compares); repeatable")
    p.add_argument("--test", action="store_true", help="also install the test tools (pytest, hypothesis, ...) "
                                                       "and the extras the tests exercise (ann)")
    p.add_argument("--check", action="store_true", help="only report whether the environment is ready (exit 1 if not)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if sys.version_info < (3, 11):
        print(f"error: Python >= 3.11 is required, this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    extra = tuple(sorted(set(args.extra)))
    reqs, no_deps = requirements(args.test, extra), no_deps_requirements()
    stamp = _stamp(args.test, extra)
    python = VENV / "bin" / "python"
    if stamp.exists() and python.exists():
        precompile()  # cheap when current; refreshes .pyc after a checkout changed the sources
        if not args.quiet:
            print(f"ready: {VENV}")
        return 0
    if args.check:
        flags = "".join(f" --extra {e}" for e in extra) + (" --test" if args.test else "")
        print(f"not ready: run `python3 {ROOT / 'scripts' / 'setup_env.py'}{flags}`")
        return 1
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    print(f"installing {len(reqs)} pinned packages into {VENV}", flush=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    with tempfile.TemporaryDirectory() as tmp:
        pinned = Path(tmp) / "constraints.txt"
        pinned.write_text("\n".join(constraints()) + "\n", encoding="utf-8")
        rc = subprocess.call([str(python), "-m", "pip", "install", "--quiet", "-c", str(pinned), *reqs], env=env)
    if rc == 0 and no_deps:
        rc = subprocess.call([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *no_deps], env=env)
    if rc != 0:
        print(f"error: pip install failed (exit {rc}); see the messages above", file=sys.stderr)
        return 2
    precompile()
    for old in VENV.glob(".deps-*"):
        old.unlink()
    stamp.write_text("\n".join([*reqs, "--no-deps", *no_deps, "-c", *constraints()]) + "\n", encoding="utf-8")
    # what was installed also satisfies every smaller set: the runtime alone, and each subset of its extras
    have = sorted(set(extra) | set(test_extras() if args.test else ()))
    for k in range(len(have) + 1):
        for subset in itertools.combinations(have, k):
            _stamp(False, subset).write_text("")
    print(f"ready: {VENV}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
