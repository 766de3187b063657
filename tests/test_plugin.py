"""The plugin as real clients see it, and instructions that cannot drift from the scripts.

- `claude plugin validate --strict` (npm @anthropic-ai/claude-code) on the marketplace and the plugin
  manifest, plus an offline install into a throwaway HOME listing every skill;
- `agentskills validate` (PyPI skills-ref) on every skill folder (the root skill in a copy named
  after it, since it lives at the repository root);
- every `python3 "${CLAUDE_PLUGIN_ROOT}/scripts/x.py" --flag ...` written in the skills, references
  and agents names a script that exists and accepts exactly those flags.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import click
import pytest
from conftest import ROOT, SCRIPTS

from tooling import require_tool

SKILL_DIRS = sorted(p.parent for p in (ROOT / "skills").glob("*/SKILL.md"))
DOCS = sorted(
    [ROOT / "SKILL.md", *(ROOT / "references").glob("*.md"), *(ROOT / "agents").glob("*.md")]
    + [p for d in SKILL_DIRS for p in [d / "SKILL.md", *(d / "references").glob("*.md")]]
)
ALLOWED_KEYS = {"name", "description", "license", "allowed-tools", "metadata", "compatibility"}


def frontmatter(path: Path) -> dict:
    import yaml

    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{path}: no frontmatter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def claude_env(home: Path) -> dict:
    return dict(os.environ, HOME=str(home), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1",
                DISABLE_TELEMETRY="1", DISABLE_ERROR_REPORTING="1")


def claude_bin() -> str:
    local = ROOT / ".tools" / "claude" / "node_modules" / ".bin" / "claude"
    if local.exists():
        return str(local)
    return require_tool("claude", "npm install --prefix .tools/claude @anthropic-ai/claude-code (.ci/run does)")


@pytest.mark.integration
@pytest.mark.parametrize("target", [".", ".claude-plugin/plugin.json"])
def test_claude_plugin_validate_strict(tmp_path, target):
    proc = subprocess.run([claude_bin(), "plugin", "validate", "--strict", target], cwd=ROOT, capture_output=True,
                          text=True, env=claude_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation passed" in proc.stdout


@pytest.mark.integration
def test_offline_install_lists_every_skill_and_hook(tmp_path):
    """Install from a copy without .venv/.tools (what a user's checkout holds) and list its components."""
    src = tmp_path / "plugin"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".tools", ".git", "demo", "__pycache__",
                                                               ".pytest_cache", ".hypothesis"))
    env = claude_env(tmp_path / "home")
    claude = claude_bin()
    for args in (["plugin", "marketplace", "add", str(src)], ["plugin", "install", "tao-aoi@tao-aoi"]):
        proc = subprocess.run([claude, *args], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    details = subprocess.run([claude, "plugin", "details", "tao-aoi@tao-aoi"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert details.returncode == 0, details.stderr
    names = [frontmatter(ROOT / "SKILL.md")["name"]] + [frontmatter(d / "SKILL.md")["name"] for d in SKILL_DIRS]
    assert f"Skills ({len(names)})" in details.stdout
    for name in names:
        assert name in details.stdout
    assert "SessionStart" in details.stdout and "PreToolUse" in details.stdout


def agentskills_bin() -> str:
    local = Path(sys.executable).parent / "agentskills"
    if local.exists():
        return str(local)
    return require_tool("agentskills", "pip install skills-ref (the test extras install it)")


@pytest.mark.integration
@pytest.mark.parametrize("skill_dir", SKILL_DIRS, ids=lambda p: p.name)
def test_agentskills_validate_each_skill(skill_dir):
    proc = subprocess.run([agentskills_bin(), "validate", str(skill_dir)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.integration
def test_agentskills_validate_root_skill(tmp_path):
    name = frontmatter(ROOT / "SKILL.md")["name"]
    copy = tmp_path / name
    copy.mkdir()
    shutil.copy(ROOT / "SKILL.md", copy / "SKILL.md")
    if (ROOT / "references").exists():
        shutil.copytree(ROOT / "references", copy / "references")
    proc = subprocess.run([agentskills_bin(), "validate", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_manifests_list_exactly_the_skills_on_disk():
    plugin = json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())
    market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    assert plugin["name"] == "tao-aoi" and market["plugins"][0]["name"] == "tao-aoi"
    assert plugin["version"] == market["plugins"][0]["version"] == market["metadata"]["version"]
    listed = plugin["skills"]
    assert listed[0] == "./"
    assert sorted(listed[1:]) == [f"./skills/{d.name}" for d in SKILL_DIRS]
    assert not list((ROOT / "skills").glob("*/*/SKILL.md")), "skills must be flat: skills/<name>/SKILL.md"


@pytest.mark.parametrize("skill_md", [ROOT / "SKILL.md", *(d / "SKILL.md" for d in SKILL_DIRS)],
                         ids=lambda p: p.parent.name if p.parent != ROOT else "root")
def test_frontmatter_is_spec_clean(skill_md):
    fm = frontmatter(skill_md)
    assert set(fm) <= ALLOWED_KEYS, f"{skill_md}: keys {set(fm) - ALLOWED_KEYS} are not allowed"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", fm["name"])
    if skill_md.parent != ROOT:
        assert fm["name"] == skill_md.parent.name
    assert 0 < len(fm["description"]) <= 1024
    assert all(not isinstance(v, (list, dict)) for v in (fm.get("metadata") or {}).values())
    body = skill_md.read_text().split("---\n", 2)[2]
    assert len(body) < 12000, f"{skill_md}: keep SKILL.md short; move detail to references/"


# ---------------------------------------------------------------- instructions vs scripts

CALL = re.compile(r'python3 "\$\{CLAUDE_PLUGIN_ROOT\}/scripts/([a-z_]+\.py)"((?:[^\n`|;&]|\\\n)*)')
BARE = re.compile(r'(^|[\s`(])(\./)?scripts/[a-z_]+\.py')


def script_calls() -> list[tuple[Path, str, list[str]]]:
    calls = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in CALL.finditer(text):
            flags = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(2))
            calls.append((doc, m.group(1), flags))
    return calls


@lru_cache(maxsize=None)
def script_help(script: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True,
                          env=dict(os.environ, TAO_AOI_NO_REEXEC="1", COLUMNS="200"), timeout=120)
    assert proc.returncode == 0, f"{script} --help failed: {proc.stderr}"
    return proc.stdout


@lru_cache(maxsize=None)
def accepted_flags(script: str) -> frozenset[str]:
    """The long options the script's click command declares (its params), --help included.

    setup_env.py is the one argparse script (it runs before click is installed): read from its --help."""
    if not (SCRIPTS / "tao_aoi" / "commands" / script).exists():
        return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", script_help(script)))
    cmd = importlib.import_module(f"tao_aoi.commands.{Path(script).stem}").command
    names = {"--help"} | {name for p in cmd.params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)}
    return frozenset(n for n in names if n.startswith("--"))


def test_docs_call_scripts_that_exist_with_flags_they_accept():
    calls = script_calls()
    assert calls, "no script calls found in the skills"
    problems = []
    for doc, script, flags in calls:
        rel = doc.relative_to(ROOT)
        if not (SCRIPTS / script).exists():
            problems.append(f"{rel}: scripts/{script} does not exist")
            continue
        unknown = sorted(set(flags) - accepted_flags(script))
        if unknown:
            problems.append(f"{rel}: {script} does not accept {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


def test_docs_never_call_a_script_without_the_interpreter():
    bad = []
    for doc in DOCS:
        for lineno, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for m in BARE.finditer(line):
                if "python3 " not in line[:m.start() + 1] and "CLAUDE_PLUGIN_ROOT" not in line:
                    bad.append(f"{doc.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not bad, "installs strip exec bits; call scripts as python3 \"${CLAUDE_PLUGIN_ROOT}/scripts/x.py\":\n" \
        + "\n".join(bad)


def test_every_script_has_help_and_a_docstring():
    for script in sorted(SCRIPTS.glob("*.py")):
        assert "Next: " in script_help(script.name), f"{script.name}: --help does not say what to run next"
        assert script.read_text().splitlines()[1].startswith('"""'), f"{script.name}: missing docstring"


def test_drift_check_catches_a_wrong_flag(tmp_path):
    """The extractor itself must find calls and flags (a checker that finds nothing proves nothing)."""
    text = 'run `python3 "${CLAUDE_PLUGIN_ROOT}/scripts/log_stage.py" --results-dir R --no-such-flag`'
    m = CALL.search(text)
    assert m and m.group(1) == "log_stage.py"
    flags = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(2))
    assert "--no-such-flag" in flags and "--no-such-flag" not in accepted_flags("log_stage.py")
