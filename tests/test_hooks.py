"""Hooks: SessionStart readiness report; PreToolUse guard for the run state and air-gap mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "hooks"))
import pre_tool_use  # noqa: E402


def bash(cmd: str) -> dict:
    return {"tool_name": "Bash", "tool_input": {"command": cmd}}


@pytest.mark.parametrize("cmd", [
    "echo '{}' > results/run_1/deft_state.json",
    "echo x >> /w/results/run_1/loop_log.jsonl",
    "jq '.status=\"complete\"' R/deft_state.json > /tmp/s && mv /tmp/s R/deft_state.json",
    "sed -i 's/failed/in_progress/' R/deft_state.json",
    "cat new.json | tee R/deft_state.json",
    "cp backup.json R/deft_state.json",
    "rm R/loop_log.jsonl",
    "python3 -c \"import json; json.dump({}, open('R/deft_state.json','w'))\"",
    "python3 - <<'EOF'\nfrom pathlib import Path\nPath('R/deft_state.json').write_text('{}')\nEOF",
    "truncate -s 0 R/loop_log.jsonl",
    "perl -i -pe 's/a/b/' R/loop_log.jsonl",
    "printf '%s\\n' '{\"seq\": 9}' >> \"R/loop_log.jsonl\"",
])
def test_state_writes_are_denied_with_the_script_to_use(cmd):
    out = pre_tool_use.decide(bash(cmd), {})
    assert out is not None, cmd
    reason = out["hookSpecificOutput"]["permissionDecisionReason"]
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "commit_stage.py" in reason and "log_stage.py" in reason


@pytest.mark.parametrize("cmd", [
    "cat R/deft_state.json",
    "jq '.iterations | keys' R/deft_state.json",
    "tail -n 5 R/loop_log.jsonl",
    "python3 \"${CLAUDE_PLUGIN_ROOT}/scripts/commit_stage.py\" --results-dir R --iter baseline --stage train",
    "python3 scripts/log_stage.py --results-dir R --iter baseline --stage note --status ok --summary hi",
    "wc -l R/loop_log.jsonl > /tmp/count.txt",
    "python3 -c \"import json; print(json.load(open('R/deft_state.json'))['status'])\"",
    "ls -la results/run_1",
])
def test_reads_and_our_scripts_are_allowed(cmd):
    assert pre_tool_use.decide(bash(cmd), {}) is None, cmd


def test_other_tools_are_ignored():
    assert pre_tool_use.decide({"tool_name": "Write", "tool_input": {"file_path": "R/deft_state.json"}}, {}) is None


@pytest.mark.parametrize("cmd, allowed_online", [
    ("pip install optuna", True),
    ("python3 -m pip install numpy", True),
    ("docker pull nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt", True),
    ("docker run --pull=always img", True),
    ("curl -O https://example.com/x", True),
    ("git clone https://github.com/x/y", True),
    ("apt-get install -y chromium", True),
])
def test_air_gap_mode_refuses_network_and_installs(cmd, allowed_online):
    assert pre_tool_use.decide(bash(cmd), {}) is None
    out = pre_tool_use.decide(bash(cmd), {"AIR_GAPPED": "1"})
    assert out and "air-gap" in out["hookSpecificOutput"]["permissionDecisionReason"]


def test_air_gap_allows_local_work():
    assert pre_tool_use.decide(bash("docker run --pull=never img visual_changenet train -e s.yaml"),
                               {"AIR_GAPPED": "1"}) is None


def run_hook(name: str, payload: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "hooks" / name)], input=payload, capture_output=True,
                          text=True, env=env, timeout=30)


def test_pre_tool_use_speaks_the_hook_protocol():
    env = dict(os.environ)
    proc = run_hook("pre_tool_use.py", json.dumps(bash("rm R/deft_state.json")), env)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    ok = run_hook("pre_tool_use.py", json.dumps(bash("ls")), env)
    assert ok.returncode == 0 and ok.stdout == ""
    junk = run_hook("pre_tool_use.py", "not json", env)
    assert junk.returncode == 0


def test_session_start_reports_readiness_and_credential_names_only():
    env = dict(os.environ, NGC_KEY="super-secret-value")
    env.pop("HF_TOKEN", None)
    proc = run_hook("session_start.py", "{}", env)
    assert proc.returncode == 0
    assert "NGC_KEY=SET" in proc.stdout and "HF_TOKEN=UNSET" in proc.stdout
    assert "super-secret-value" not in proc.stdout
    assert "Python toolkit:" in proc.stdout
    ready = (ROOT / ".venv" / "bin" / "python").exists()
    assert ("ready (" in proc.stdout) == ready or "incomplete" in proc.stdout


def test_hooks_json_calls_scripts_through_an_interpreter():
    cfg = json.loads((ROOT / "hooks" / "hooks.json").read_text())
    commands = [h["command"] for entries in cfg["hooks"].values() for e in entries for h in e["hooks"]]
    assert commands and all(c.startswith("python3 \"${CLAUDE_PLUGIN_ROOT}/hooks/") for c in commands)
    for c in commands:
        assert (ROOT / "hooks" / c.split("/hooks/")[1].rstrip('"')).exists()
