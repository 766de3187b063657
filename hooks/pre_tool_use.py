"""PreToolUse (Bash) hook: keep hands off the DEFT run state; enforce air-gap mode.

Refuses shell commands that would write deft_state.json or loop_log.jsonl other than through
the plugin's scripts (redirects, tee, sed -i, cp/mv/rm, inline python/node/perl, jq > ...), and
naming the script to use instead. With AIR_GAPPED=1 it also refuses package installs, image
pulls/logins and network download tools. A lexical guard rail, not a sandbox: it stops honest
mistakes, it cannot stop a determined bypass. Standard library only.
"""
from __future__ import annotations

import json
import re
import shlex
import sys

PROTECTED = ("deft_state.json", "loop_log.jsonl")
OUR_WRITERS = ("commit_stage.py", "log_stage.py", "init_deft_state.py", "run_pipeline.py", "seed_baseline.py")
FILE_MUTATORS = {"cp", "mv", "rm", "truncate", "touch", "ln", "install", "rsync", "dd", "shred", "tee", "sponge"}
INLINE_INTERPRETERS = re.compile(r"^(python[0-9.]*|node|perl|ruby|php|bash|sh|zsh)$")
WRITE_HINTS = re.compile(
    r"open\([^)]*['\"][wax+]|write_text|write_bytes|\.write\(|json\.dump\(|os\.(replace|rename|remove|unlink)|"
    r"shutil\.|writeFile|appendFile|unlink|truncate|>\s*\S", re.IGNORECASE)
REDIRECT = re.compile(r"(?:^|[^<>&0-9])(?:[0-9]*|&)>>?\|?\s*(['\"]?)([^\s;&|'\"]+)\1")
AIRGAP_DENY = [
    (re.compile(r"\b(pip[0-9.]*|uv|conda|mamba|micromamba)\s+(install|download|add|sync)\b"), "package install"),
    (re.compile(r"\bpython[0-9.]*\s+-m\s+pip\s+install\b"), "package install"),
    (re.compile(r"\b(apt|apt-get|yum|dnf|apk|brew)\s+(install|update|upgrade)\b"), "system package install"),
    (re.compile(r"\bnpm\s+(install|i|ci|add)\b|\bnpx\s"), "npm install"),
    (re.compile(r"\b(docker|podman)\s+(pull|login|push)\b"), "container registry access"),
    (re.compile(r"--pull(=|\s+)(always|missing)\b"), "container pull"),
    (re.compile(r"\b(curl|wget|aria2c|scp|sftp|ngc|huggingface-cli|hf)\b\s"), "network download tool"),
    (re.compile(r"\bgit\s+(clone|fetch|pull|submodule\s+update)\b"), "git network access"),
]


def _targets_protected(text: str) -> bool:
    return any(name in text for name in PROTECTED)


def state_write_reason(command: str) -> str | None:
    if not _targets_protected(command):
        return None
    for m in REDIRECT.finditer(command):
        if _targets_protected(m.group(2)):
            return f"redirects output into {m.group(2)}"
    try:
        tokens = shlex.split(command, posix=True)
    except ValueError:
        tokens = command.split()
    segments: list[list[str]] = [[]]
    for tok in tokens:
        if tok in ("|", "||", "&&", ";", "&"):
            segments.append([])
        else:
            segments[-1].append(tok)
    for seg in segments:
        if not seg:
            continue
        words = [w for w in seg if "=" not in w or w.startswith("-")] or seg
        prog = words[0].rsplit("/", 1)[-1]
        if prog in ("sudo", "env", "nohup", "time", "command") and len(words) > 1:
            words = words[1:]
            prog = words[0].rsplit("/", 1)[-1]
        args = words[1:]
        touches = any(_targets_protected(a) for a in args)
        if any(a.endswith(OUR_WRITERS) for a in words[:3]):
            continue  # our own writer scripts
        if prog in FILE_MUTATORS and touches:
            return f"{prog} would modify the run state"
        if prog in ("sed", "perl") and touches and any(a.startswith("-i") or a == "--in-place" for a in args):
            return f"{prog} -i would edit the run state in place"
        if INLINE_INTERPRETERS.match(prog) and touches and WRITE_HINTS.search(" ".join(args)):
            return f"inline {prog} code would write the run state"
        if prog == "jq" and touches and ">" in command:
            return "jq output redirected into the run state"
    if re.search(r"<<", command) and WRITE_HINTS.search(command):
        return "an inline script would write the run state"
    return None


def airgap_reason(command: str) -> str | None:
    for pattern, what in AIRGAP_DENY:
        if pattern.search(command):
            return what
    return None


def decide(payload: dict, env: dict) -> dict | None:
    if payload.get("tool_name") != "Bash":
        return None
    command = str((payload.get("tool_input") or {}).get("command", ""))
    reason = state_write_reason(command)
    if reason:
        text = (f"Blocked: {reason}. deft_state.json and loop_log.jsonl are written only by the plugin's "
                f"scripts: record a stage with python3 \"${{CLAUDE_PLUGIN_ROOT}}/scripts/commit_stage.py\", a note "
                f"with .../scripts/log_stage.py, and see what is next with .../scripts/next_stage.py. Reading the "
                f"files (cat, jq '.', tail) is fine.")
        return _deny(text)
    if env.get("AIR_GAPPED") == "1":
        what = airgap_reason(command)
        if what:
            return _deny(f"Blocked by air-gap mode (AIR_GAPPED=1): {what}. Everything the run needs must already "
                         f"be on this machine; use staged images (docker --pull=never) and the existing .venv.")
    return None


def _deny(reason: str) -> dict:
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                   "permissionDecisionReason": reason}}


def main() -> int:
    import os

    try:
        payload = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError:
        return 0  # not our business to break the session on a malformed payload
    out = decide(payload if isinstance(payload, dict) else {}, dict(os.environ))
    if out:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
