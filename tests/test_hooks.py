"""Hooks: SessionStart readiness report; PreToolUse guard for the run state and air-gap mode."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "hooks"))
import pre_tool_use  # noqa: E402


def bash(cmd: str) -> dict:
    return {"tool_name": "Bash", "tool_input": {"command": cmd}}


def claude_payload(tool: str, tool_input: dict, cwd: Path) -> str:
    """The PreToolUse input as Claude Code sends it on stdin (hooks reference: common fields + tool fields)."""
    return json.dumps({"session_id": "5f0c6a1e-test", "transcript_path": str(cwd / "transcript.jsonl"),
                       "cwd": str(cwd), "permission_mode": "default", "hook_event_name": "PreToolUse",
                       "tool_name": tool, "tool_input": tool_input, "tool_use_id": "toolu_01TEST"})


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """cwd of the session: a workspace whose results/run_1 is a run folder, plus a backup copy of it."""
    root = tmp_path_factory.mktemp("session")
    for d in ("results/run_1", "backup/run_1"):
        (root / d).mkdir(parents=True)
        for name in ("deft_state.json", "pipeline_state.json", "loop_log.jsonl"):
            (root / d / name).write_text("{}\n")
    (root / "results/run_1/iter1").mkdir()
    (root / "scratch").mkdir()
    return root


def hook(payload: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "hooks" / "pre_tool_use.py")], input=payload,
                          capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items()
                                                                             if k != "AIR_GAPPED"})


def decision(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    if not proc.stdout.strip():
        return "allow"
    out = json.loads(proc.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"]


R = "results/run_1"
DENIED = [
    # redirections and tee
    f"echo '{{}}' > {R}/deft_state.json",
    f"echo x >> {R}/loop_log.jsonl",
    f"printf '%s\\n' '{{\"seq\": 9}}' >> \"{R}/loop_log.jsonl\"",
    f": > {R}/loop_log.jsonl",
    f"F={R}/deft_state.json; echo {{}} > $F",
    f"cat new.json | tee {R}/deft_state.json",
    f"cmd 2>&1 | tee -a {R}/loop_log.jsonl",
    # copy / move / link / install / sync onto the file or into the run folder
    f"jq '.status=\"complete\"' {R}/deft_state.json > /tmp/s && mv /tmp/s {R}/deft_state.json",
    f"cp backup.json {R}/deft_state.json",
    f"sudo cp /tmp/x {R}/deft_state.json",
    f"cp backup/run_1/deft_state.json {R}/",
    f"cp -r backup/run_1/. {R}",
    f"rsync -a backup/run_1/ {R}/",
    f"mv {R}/deft_state.json scratch/",
    f"ln -sf /tmp/x {R}/deft_state.json",
    f"install -m 644 /tmp/x {R}/pipeline_state.json",
    f"dd if=/tmp/x of={R}/deft_state.json",
    # delete / truncate / permissions / editors
    f"rm {R}/loop_log.jsonl",
    f"rm {R}/*.json",
    f"rm -rf {R}",
    "rm -r results",
    f"truncate -s 0 {R}/loop_log.jsonl",
    f"chmod 000 {R}/deft_state.json",
    f"cd {R} && vim deft_state.json",
    # in-place editors
    f"sed -i 's/failed/in_progress/' {R}/deft_state.json",
    f"sed -Ei.bak 's/a/b/' {R}/pipeline_state.json",
    f"perl -i -pe 's/a/b/' {R}/loop_log.jsonl",
    f"perl -pi -e 's/failed/complete/' {R}/deft_state.json",
    f"awk -i inplace '{{print}}' {R}/deft_state.json",
    # interpreter code that writes
    f"python3 -c \"import json; json.dump({{}}, open('{R}/deft_state.json','w'))\"",
    f"python3 -c \"import json; P='{R}/deft_state.json'; s=json.load(open(P)); s['status']='complete'; "
    f"json.dump(s, open(P,'w'))\"",
    f"P={R}/deft_state.json; python3 -c \"import json,sys; s=json.load(open(sys.argv[1])); s['status']='complete'; "
    f"json.dump(s, open(sys.argv[1],'w'))\" $P",
    f"python3 - <<'EOF'\nfrom pathlib import Path\nPath('{R}/deft_state.json').write_text('{{}}')\nEOF",
    f"perl -e 'open(my $f, \">\", \"{R}/deft_state.json\"); print $f 1'",
    f"node -e \"require('fs').writeFileSync('{R}/pipeline_state.json','{{}}')\"",
    # nested shells, substitutions, find, xargs
    f"sh -c 'cp /tmp/x {R}/deft_state.json'",
    f"bash -c \"echo {{}} > {R}/pipeline_state.json\"",
    f"eval 'rm {R}/deft_state.json'",
    f"echo $(rm {R}/deft_state.json)",
    "find results -name deft_state.json -exec cp /tmp/x {} \\;",
    "find results -name deft_state.json -exec mv {} /tmp/ \\;",
    f"cp -t {R} backup/run_1/deft_state.json",
    f"find {R} -name 'deft_state*' -delete",
    f"find {R} -type f -delete",
    f"find {R} -type f -exec sed -i s/failed/ok/ {{}} +",
    f"echo {R}/deft_state.json | xargs rm",
    # archives and git onto the file
    f"tar -xzf backup.tgz {R}/deft_state.json",
    f"tar -xf backup.tar -C {R}",
    f"cd {R} && unzip -o /tmp/state.zip",
    f"git checkout HEAD~1 -- {R}/deft_state.json",
    f"git checkout -- {R}",
    f"git restore {R}/loop_log.jsonl",
]
ALLOWED = [
    f"cat {R}/deft_state.json",
    f"jq . {R}/deft_state.json",
    f"jq '.iterations | keys' {R}/deft_state.json",
    f"tail -n 5 {R}/loop_log.jsonl",
    f"grep -c commit {R}/loop_log.jsonl",
    f"wc -l {R}/loop_log.jsonl > /tmp/count.txt",
    f"sed -n 1p {R}/loop_log.jsonl",
    f"awk '{{print $1}}' {R}/loop_log.jsonl",
    f"perl -ne 'print if /seq/' {R}/loop_log.jsonl",
    f"diff {R}/deft_state.json backup/run_1/deft_state.json",
    f"cp {R}/deft_state.json /tmp/x",
    f"cp {R}/deft_state.json scratch/",
    f"cp -r {R} /tmp/backup",
    f"cp model.ckpt {R}/",
    f"cp {R}/deft_state.json {R}/deft_state.json.bak",
    f"rsync -a {R}/ scratch/copy/",
    f"tar -czf /tmp/run.tgz {R}",
    "tar -tzf /tmp/run.tgz",
    f"python3 -c \"import json; print(json.load(open('{R}/deft_state.json'))['status'])\"",
    f"cat {R}/deft_state.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])'",
    f"python3 \"${{CLAUDE_PLUGIN_ROOT}}/scripts/commit_stage.py\" --results-dir {R} --iter baseline --stage train",
    f"python3 scripts/log_stage.py --results-dir {R} --iter baseline --stage note --status ok --summary hi",
    f"python3 \"${{CLAUDE_PLUGIN_ROOT}}/scripts/repair_state.py\" --results-dir {R}",
    f"python3 \"${{CLAUDE_PLUGIN_ROOT}}/scripts/run_pipeline.py\" --workspace . --phases deft --max-iterations 2 "
    f"--kpi-target 'FAR < 2% at Recall=100%' --results-dir {R} --yes > scratch/run.out 2>&1 &",
    f"find {R} -name '*.json'",
    f"find {R} -name deft_state.json -exec cat {{}} \\;",
    f"find {R} -name '*.tmp' -delete",
    f"git log -p {R}/deft_state.json",
    "git checkout main",
    "echo 'never edit deft_state.json by hand'",
    "rm -rf scratch/old",
    f"ls -la {R} 2>/dev/null",
]


@pytest.mark.parametrize("cmd", DENIED)
def test_state_writes_are_denied_through_the_hook(ws, cmd):
    proc = hook(claude_payload("Bash", {"command": cmd, "description": "x"}, ws))
    assert decision(proc) == "deny", cmd
    reason = json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecisionReason"]
    assert "commit_stage.py" in reason and "log_stage.py" in reason and "repair_state.py" in reason


@pytest.mark.parametrize("cmd", ALLOWED)
def test_reads_copies_elsewhere_and_our_scripts_are_allowed(ws, cmd):
    assert decision(hook(claude_payload("Bash", {"command": cmd}, ws))) == "allow", cmd


@pytest.mark.parametrize("tool, tool_input, expected", [
    ("Write", {"file_path": "{ws}/results/run_1/deft_state.json", "content": "{}"}, "deny"),
    ("Edit", {"file_path": "{ws}/results/run_1/pipeline_state.json", "old_string": "failed",
              "new_string": "complete"}, "deny"),
    ("Edit", {"file_path": "{ws}/results/run_1/loop_log.jsonl", "old_string": "a", "new_string": "b",
              "replace_all": True}, "deny"),
    ("MultiEdit", {"file_path": "{ws}/results/run_1/deft_state.json",
                   "edits": [{"old_string": "a", "new_string": "b"}]}, "deny"),
    ("NotebookEdit", {"notebook_path": "{ws}/results/run_1/deft_state.json", "new_source": "x"}, "deny"),
    ("Write", {"file_path": "{ws}/results/run_1/iter1/RCA_Report.md", "content": "# RCA"}, "allow"),
    ("Edit", {"file_path": "{ws}/specs/baseline_spec.yaml", "old_string": "a", "new_string": "b"}, "allow"),
    ("NotebookEdit", {"notebook_path": "{ws}/analysis.ipynb", "new_source": "x"}, "allow"),
    ("Read", {"file_path": "{ws}/results/run_1/deft_state.json"}, "allow"),
])
def test_file_tools_on_the_state_files_are_denied(ws, tool, tool_input, expected):
    fields = {k: v.replace("{ws}", str(ws)) if isinstance(v, str) else v for k, v in tool_input.items()}
    assert decision(hook(claude_payload(tool, fields, ws))) == expected


def test_hooks_json_routes_every_file_writing_tool_to_the_guard():
    cfg = json.loads((ROOT / "hooks" / "hooks.json").read_text())
    (entry,) = cfg["hooks"]["PreToolUse"]
    matcher = re.compile(f"^(?:{entry['matcher']})$")
    assert all(matcher.match(t) for t in ("Bash", "Write", "Edit", "MultiEdit", "NotebookEdit"))
    assert not matcher.match("Read") and not matcher.match("Grep")


@pytest.mark.parametrize("payload", ["not json", "[]", json.dumps({"tool_name": "Bash", "tool_input": ["x"]}),
                                     json.dumps({"tool_name": "Bash", "tool_input": {"command": "echo 'unclosed"}})])
def test_malformed_payloads_never_break_the_session(payload):
    proc = hook(payload)
    assert proc.returncode == 0 and proc.stdout == ""


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
