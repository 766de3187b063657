"""pyproject.toml says what runs: every third-party import is declared, every pin is imported or kept with a reason.

Imports are read from the source (AST: lazy imports inside functions included) of scripts/ and hooks/
(runtime), tests/ (the test extra) and bench/; import names map to distributions through
importlib.metadata.packages_distributions(). NVIDIA's --no-deps schema wheels are imported for real
to see what they need. The constraints (pip -c) must pin exactly what the declared packages pull in.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from functools import cache

import pytest

from conftest import ROOT, SCRIPTS

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT, TOOL = PYPROJECT["project"], PYPROJECT["tool"]["tao-aoi"]
EXTRAS = {k: v for k, v in PROJECT["optional-dependencies"].items() if k != "test"}
LOCAL = {"tao_aoi", "conftest"}  # the project's own packages; tests/ and bench/ also import their siblings


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pin_names(pins: list[str]) -> set[str]:
    for pin in pins:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+!-]*", pin), f"{pin!r} is not an exact pin"
    return {norm(p.split("==")[0]) for p in pins}


RUNTIME = pin_names(PROJECT["dependencies"])
OPTIONAL = {norm(n): pin_names(pins) for n, pins in EXTRAS.items()}
TEST = pin_names(PROJECT["optional-dependencies"]["test"])
NO_DEPS = pin_names(TOOL["no-deps"])
CONSTRAINED = pin_names(TOOL["constraints"])
KEPT = {norm(k): v for k, v in TOOL["kept"].items()}


@cache
def imports(*roots: str) -> dict[str, set[str]]:
    """{top-level module: files importing it} over the .py files under ``roots``, stdlib and local left out."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for f in sorted((ROOT / root).rglob("*.py")):
            siblings = {p.stem for p in f.parent.glob("*.py")} | {p.name for p in f.parent.iterdir() if p.is_dir()}
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if _stdlib(top) or top in LOCAL or (root != "scripts" and top in siblings | _test_helpers()):
                        continue
                    found.setdefault(top, set()).add(str(f.relative_to(ROOT)))
    return found


def _stdlib(top: str) -> bool:
    # CPython's private modules (event_log tries _sha2, then _sha256) belong to no distribution
    return top in sys.stdlib_module_names or (top.startswith("_") and top not in _packages())


@cache
def _test_helpers() -> set[str]:
    """Modules of tests/ and bench/ that import each other through sys.path (support, rca_data, ...)."""
    out = set()
    for root in ("tests", "bench", "hooks", "scripts"):  # tests also import the hooks and setup_env.py by path
        out |= {p.stem for p in (ROOT / root).glob("*.py")} | {p.name for p in (ROOT / root).iterdir() if p.is_dir()}
    return out


@cache
def _packages() -> dict[str, list[str]]:
    return md.packages_distributions()


def distributions(module: str) -> set[str]:
    return {norm(d) for d in _packages().get(module, [])}


@cache
def closure(names: frozenset[str]) -> set[str]:
    """Installed distributions ``names`` pull in (their requirements, recursively; extras' requirements out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in md.requires(name) or []:
            if re.search(r"\bextra\s*==", req):
                continue
            dep = norm(re.split(r"[\s\[;<>=!~(]", req, maxsplit=1)[0])
            try:
                md.distribution(dep)
            except md.PackageNotFoundError:  # a platform or Python-version requirement that does not apply here
                continue
            todo.append(dep)
    return seen - names


def test_every_runtime_import_is_declared():
    declared = RUNTIME | set().union(*OPTIONAL.values())
    problems = []
    for module, files in sorted(imports("scripts", "hooks").items()):
        dists = distributions(module)
        if not dists:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) belongs to no installed distribution")
        elif not dists & declared:
            problems.append(f"{module} ({'/'.join(sorted(dists))}, imported by {', '.join(sorted(files))}) is not a "
                            f"runtime pin in pyproject.toml")
    assert not problems, "\n".join(problems)


def test_every_runtime_pin_is_imported_or_kept_with_a_reason():
    imported = set().union(*(distributions(m) for m in imports("scripts", "hooks")))
    for name in RUNTIME:
        assert name in imported or KEPT.get(name), \
            f"{name} is pinned but nothing in scripts/ or hooks/ imports it; drop it or say why in [tool.tao-aoi.kept]"
    with_bench = imported | set().union(*(distributions(m) for m in imports("bench")))
    for extra, names in OPTIONAL.items():
        for name in names:
            assert name in with_bench, f"extra {extra}: {name} is imported by no module of scripts/, hooks/ or bench/"
    assert "scipy" not in RUNTIME  # scikit-learn's; the tests' binomial oracle pins it in the test extra
    assert "faiss-cpu" in OPTIONAL["ann"] and "faiss-cpu" not in RUNTIME


def test_kept_pins_are_pinned_and_their_reasons_hold():
    runtime_imports = set().union(*(distributions(m) for m in imports("scripts", "hooks")))
    test_imports = set().union(*(distributions(m) for m in imports("tests")))
    for name in KEPT:
        assert name in RUNTIME | TEST, f"[tool.tao-aoi.kept] names {name}, which is not pinned"
        assert name not in (runtime_imports if name in RUNTIME else test_imports), \
            f"{name} is imported where it is pinned for: it needs no entry in [tool.tao-aoi.kept]"
    # attrs: NVIDIA's config modules import it; cmaes: optuna's CmaEsSampler imports it when it samples
    code = ("import sys, optuna; from tao_aoi.tao import schema\n"
            "[schema.schema_class(w) for w in (schema.CHANGENET, schema.EMBEDDING)]\n"
            "optuna.logging.set_verbosity(optuna.logging.WARNING)\n"
            "s = optuna.create_study(sampler=optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=1))\n"
            "s.optimize(lambda t: t.suggest_float('x', 0, 1) + t.suggest_float('y', 0, 1), n_trials=3)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env={"PYTHONPATH": str(SCRIPTS), "PATH": "/usr/bin:/bin"}).stdout.split())
    assert {"attr", "cmaes"} <= loaded


def test_what_the_no_deps_schema_wheels_import_is_declared():
    """They go in with pip --no-deps, so what their config modules import must be pinned here."""
    code = ("import sys; before = set(sys.modules)\n"
            "from tao_aoi.tao import schema\n"
            "[schema.schema_class(w) for w in (schema.CHANGENET, schema.EMBEDDING)]\n"
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(SCRIPTS), "PATH": "/usr/bin:/bin"}).stdout.split()
    installed = RUNTIME | closure(frozenset(RUNTIME))
    needed = {d for m in loaded if not _stdlib(m) for d in distributions(m)} - NO_DEPS
    assert {"omegaconf", "attrs", "pyyaml"} <= needed
    assert needed <= installed, f"the schema wheels import {sorted(needed - installed)}, which nothing installs"
    assert {"attrs", "omegaconf"} <= RUNTIME  # imported by the wheels themselves, so pinned directly


def test_test_and_bench_imports_are_declared():
    declared = RUNTIME | TEST | NO_DEPS | set().union(*OPTIONAL.values())
    problems = []
    for module, files in sorted(imports("tests", "bench").items()):
        dists = distributions(module)
        if not dists & declared and not (dists & CONSTRAINED and all(f.startswith("bench/") for f in files)):
            problems.append(f"{module} ({'/'.join(sorted(dists)) or 'no distribution'}, imported by "
                            f"{', '.join(sorted(files))}) is not declared (add it to the test extra)")
    assert not problems, "\n".join(problems)
    used = set().union(*(distributions(m) for m in imports("tests", "bench")))
    for name in TEST:
        assert name in used or KEPT.get(name), f"test extra {name} is used by no test; drop it or say why"


def test_constraints_pin_exactly_what_the_pins_pull_in():
    declared = RUNTIME | TEST | set().union(*OPTIONAL.values())
    pulled = closure(frozenset(declared)) - declared
    missing = sorted(pulled - CONSTRAINED)
    assert not missing, "add to [tool.tao-aoi] constraints: " + ", ".join(f'"{d}=={md.version(d)}"' for d in missing)
    stale = sorted(CONSTRAINED - pulled)
    assert not stale, f"[tool.tao-aoi] constraints pins {stale}, which no declared package needs (or a declared one)"
    for pin in TOOL["constraints"]:
        name, version = pin.split("==")
        assert md.version(name) == version, f"{pin}: the .venv has {md.version(name)}; rerun scripts/setup_env.py"


def test_preflight_and_the_session_hook_probe_runtime_packages_only():
    """An optional extra missing is no setup problem (only --method ann needs faiss)."""
    from tao_aoi.pipeline import preflight

    probe = re.search(r'PROBE = "import ([^"]+)"', (ROOT / "hooks" / "session_start.py").read_text()).group(1)
    for module in [*preflight.PACKAGES, *(m.strip() for m in probe.split(","))]:
        assert distributions(module) & RUNTIME, f"{module} is checked as part of the runtime but is not a runtime pin"


@pytest.mark.parametrize("with_test, extras", [(False, ()), (False, ("ann",)), (False, ("ann", "bench")),
                                               (True, ()), (True, ("bench",))])
def test_setup_env_installs_the_declared_sets(with_test, extras):
    """setup_env.py reads the same lists: the runtime pins, the extras asked for, and --test adds the test
    tools and the extras the tests exercise (ann: the --method ann tests; bench: its imports resolved here)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import setup_env
    finally:
        sys.path.remove(str(SCRIPTS))
    assert TOOL["test-extras"] == ["ann", "bench"] and set(TOOL["test-extras"]) <= set(EXTRAS)
    want = RUNTIME | set().union(*(OPTIONAL[e] for e in {*extras, *(TOOL["test-extras"] if with_test else ())}))
    assert pin_names(setup_env.requirements(with_test, extras)) == want | (TEST if with_test else set())
    assert pin_names(setup_env.constraints()) == CONSTRAINED and pin_names(setup_env.no_deps_requirements()) == NO_DEPS
