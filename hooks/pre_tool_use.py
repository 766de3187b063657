"""PreToolUse hook: keep hands off a run's state files; enforce air-gap mode.

deft_state.json, pipeline_state.json and loop_log.jsonl are written only by the plugin's scripts.
This refuses, naming the script to use instead:
- Write / Edit / MultiEdit / NotebookEdit on one of them;
- Bash commands that would write one: redirections, tee, cp/mv/ln/install/rsync/dd onto it (or
  into the run folder holding it), rm/truncate/shred/touch/chmod, sed -i, perl -i, awk -i inplace,
  editors, interpreter code (python -c, heredocs, node -e, ...) that writes while naming it,
  sh -c / bash -c / eval strings, $(...), find -exec/-delete, xargs, tar/unzip extracting onto it,
  git checkout/restore/rm/mv/clean of it, and rm -r of a run folder.
Reading or copying them elsewhere stays allowed (cat, jq ., grep, cp state.json /tmp/x,
python -c 'json.load(open(P))', the plugin's own scripts).
A lexical guard rail, not a sandbox: the real protection is the check every reader makes (the
state files must agree with the hash-chained log, or the command exits 2). With AIR_GAPPED=1 it
also refuses package installs, image pulls/logins and network download tools. Standard library
only; any internal error lets the call through (the tamper check still stands behind it).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import sys

PROTECTED = ("deft_state.json", "pipeline_state.json", "loop_log.jsonl")
RUN_MARKER = "loop_log.jsonl"  # a folder holding it is a run folder
WRITE_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}
OUR_SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")

SEPARATORS = {";", "&&", "||", "|", "&", "|&", "\n", "(", ")", ";;", "{", "}"}
WRITE_REDIRECTS = {">", ">>", ">|", "&>", "&>>", "<>", ">&"}
READ_REDIRECTS = {"<", "<<", "<<<", "<&"}
PREFIXES = {"sudo", "env", "nohup", "time", "command", "exec", "nice", "timeout", "stdbuf", "ionice", "builtin",
            "chronic", "unbuffer"}
PREFIX_ARG_OPTS = {"sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"}, "env": {"-u", "-C", "-S"},
                   "nice": {"-n"}, "timeout": {"-s", "-k", "--signal", "--kill-after"},
                   "ionice": {"-c", "-n", "-p"}, "stdbuf": {"-i", "-o", "-e"}}
MUTATORS = {"rm", "unlink", "truncate", "shred", "touch", "chmod", "chown", "chgrp", "chattr", "setfacl", "sponge",
            "tee", "ed", "ex", "vi", "vim", "nvim", "nano", "emacs", "pico", "joe", "patch"}
COPIERS = {"cp", "mv", "ln", "install", "rsync", "scp"}
COPIER_ARG_OPTS = {"-t", "-S", "--suffix", "-m", "-o", "-g", "-e", "-f", "-T", "--exclude", "--include", "--filter",
                   "--files-from", "--rsh", "--temp-dir", "--partial-dir", "--log-file", "-P", "-i", "-F", "-c",
                   "-l", "-J"}
SHELLS = re.compile(r"^(sh|bash|zsh|dash|ksh|fish)$")
INTERPRETERS = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|node|nodejs|deno|bun|perl|ruby|php|Rscript|lua|tclsh|osascript)$")
CODE_FLAGS = {"-c", "-e", "-E", "-r", "--eval", "-p", "--print", "-x"}
GIT_WRITERS = {"checkout", "restore", "rm", "mv", "apply", "am", "stash", "clean", "switch", "reset"}
WRITE_HINTS = re.compile(
    r"open\s*\([^)]*,\s*(mode\s*=\s*)?['\"][^'\"]*[wax+]|open\s*\([^;]*['\"]\s*\+?(>|>>|\+<)|"
    r"\.write_text\(|\.write_bytes\(|\.write\(|\.writelines\(|json\.dump\((?![^)]*sys\.std)|"
    r"os\.(replace|rename|renames|remove|unlink|truncate|ftruncate|open|link|symlink)\(|"
    r"shutil\.(copy|copyfile|copy2|copytree|move|rmtree)|\.(unlink|rename|touch|truncate|symlink_to|hardlink_to)\(|"
    r"writeFile|appendFile|createWriteStream|fs\.(rm|unlink|rename|truncate|copyFile|cp)|"
    r"File\.(write|open|delete|rename)|IO\.write|FileUtils\.|file_put_contents|fopen\s*\([^)]*['\"][wax+]|"
    r"\bunlink\b|\brename\b|>\s*['\"]?\S*(deft_state|pipeline_state|loop_log)", re.IGNORECASE)
STDOUT_WRITES = re.compile(r"sys\.(stdout|stderr)\.write\(|process\.stdout\.write\(")
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
HEREDOC = re.compile(r"(?<!<)<<(?!<)-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
FOUND = "__find_match__/deft_state.json"  # what `{}` / xargs input stands for when it may be a state file


# --------------------------------------------------------------------------- what a path means


class Context:
    """The session's cwd (relative paths) and the shell variables assigned so far in the command."""

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd or os.getcwd()
        self.vars: dict[str, str] = {}

    def path(self, token: str) -> str:
        return os.path.normpath(os.path.join(self.cwd, os.path.expanduser(token)))

    def expand(self, token: str) -> str:
        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: self.vars.get(m.group(1), m.group(0)), token)


def names_protected(token: str) -> bool:
    """The token is (or globs to) a state file's name."""
    base = token.rstrip("/").rsplit("/", 1)[-1]
    if base in PROTECTED:
        return True
    return any(c in base for c in "*?[") and any(fnmatch.fnmatchcase(name, base) for name in PROTECTED)


def mentions(text: str) -> bool:
    return any(name in text for name in PROTECTED) or any(
        names_protected(tok) for tok in re.findall(r"[^\s'\";|&<>()]+", text) if any(c in tok for c in "*?["))


def is_run_dir(token: str, ctx: Context, depth: int = 2) -> bool:
    """An existing folder that is a run folder or holds run folders (results/, a workspace) up to ``depth``."""
    p = ctx.path(token)
    if not os.path.isdir(p):
        return False
    if os.path.exists(os.path.join(p, RUN_MARKER)):
        return True
    if depth == 0:
        return False
    try:
        entries = [e for e in os.scandir(p) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    return any(is_run_dir(e.path, ctx, depth - 1) for e in entries[:200])


def inside_run(token: str, ctx: Context) -> bool:
    p = ctx.path(token)
    while True:
        if os.path.exists(os.path.join(p, RUN_MARKER)):
            return True
        parent = os.path.dirname(p)
        if parent == p:
            return False
        p = parent


# --------------------------------------------------------------------------- tokens and simple commands


def _heredocs(command: str) -> tuple[str, list[str]]:
    """The command without its here-document bodies, and the bodies."""
    lines = command.split("\n")
    out, bodies, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        for m in HEREDOC.finditer(line):
            strip_tabs, delim, body = line[m.start():m.start() + 3] == "<<-", m.group(2), []
            while i < len(lines) and (lines[i].lstrip("\t") if strip_tabs else lines[i]) != delim:
                body.append(lines[i])
                i += 1
            i += 1  # the delimiter line
            bodies.append("\n".join(body))
    return "\n".join(out), bodies


def tokens(command: str) -> list[str]:
    lex = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>\n")
    lex.whitespace = " \t\r"
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return list(lex)
    except ValueError:  # unbalanced quotes (a comment, a typo): a rougher split still finds the words
        return re.findall(r"[;&|()<>\n]+|[^\s;&|()<>]+", command)


def simple_commands(toks: list[str]) -> list[list[str]]:
    """Split at operators; `find ... -exec ... ;` keeps its escaped `;` as an argument."""
    out: list[list[str]] = [[]]
    for tok in toks:
        seg = out[-1]
        open_exec = seg and seg[0].rsplit("/", 1)[-1] == "find" and _find_exec_open(seg)
        if tok in SEPARATORS and not (open_exec and tok in (";", "+")):
            if tok == "(" and seg and seg[-1] == "$":
                seg.pop()
            out.append([])
        else:
            seg.append(tok)
    return [seg for seg in out if seg]


def _find_exec_open(seg: list[str]) -> bool:
    opened = False
    for tok in seg:
        if tok in ("-exec", "-execdir", "-ok", "-okdir"):
            opened = True
        elif tok in (";", "+") and opened:
            opened = False
    return opened


def _strip_redirects(seg: list[str]) -> tuple[list[str], list[str]]:
    """(words, files written by redirection)."""
    words, written, i = [], [], 0
    while i < len(seg):
        tok = seg[i]
        if tok in WRITE_REDIRECTS or tok in READ_REDIRECTS:
            if words and words[-1].isdigit():
                words.pop()  # the fd number of 2>file
            target = seg[i + 1] if i + 1 < len(seg) else ""
            if tok in WRITE_REDIRECTS and not target.isdigit() and target != "-":
                written.append(target)
            i += 2
            continue
        words.append(tok)
        i += 1
    return words, written


def _unwrap(words: list[str], ctx: Context) -> list[str]:
    """Drop leading assignments (remembered for $VAR) and wrappers such as sudo, env, timeout."""
    while words:
        m = ASSIGNMENT.match(words[0])
        if m:
            ctx.vars[m.group(1)] = m.group(2)
            words = words[1:]
            continue
        prog = words[0].rsplit("/", 1)[-1]
        if prog == "export" and len(words) > 1:
            for w in words[1:]:
                m = ASSIGNMENT.match(w)
                if m:
                    ctx.vars[m.group(1)] = m.group(2)
            return []
        if prog not in PREFIXES:
            return words
        rest, opts = words[1:], PREFIX_ARG_OPTS.get(prog, set())
        while rest and (rest[0].startswith("-") or ASSIGNMENT.match(rest[0])):
            m = ASSIGNMENT.match(rest[0])
            if m:
                ctx.vars[m.group(1)] = m.group(2)
            rest = rest[2:] if rest[0] in opts else rest[1:]
        if prog == "timeout" and rest:
            rest = rest[1:]  # the duration
        words = rest
    return words


# --------------------------------------------------------------------------- rules


def _positionals(args: list[str], arg_opts: set[str]) -> tuple[list[str], dict[str, str]]:
    pos, opts, i = [], {}, 0
    while i < len(args):
        a = args[i]
        if a == "--":
            pos.extend(args[i + 1:])
            break
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            opts[k] = v
        elif a in arg_opts and i + 1 < len(args):
            opts[a] = args[i + 1]
            i += 1
        elif a.startswith("-") and len(a) > 1:
            opts[a] = ""
        else:
            pos.append(a)
        i += 1
    return pos, opts


def _copier(prog: str, args: list[str], ctx: Context) -> str | None:
    pos, opts = _positionals(args, COPIER_ARG_OPTS)
    target = opts.get("-t") or opts.get("--target-directory")
    if target is None:
        if len(pos) < 2:
            return None
        target, sources = pos[-1], pos[:-1]
    else:
        sources = pos
    if prog == "mv" and any(names_protected(s) for s in sources):
        return f"mv would move a run's state file away ({next(s for s in sources if names_protected(s))})"
    if names_protected(target):
        return f"{prog} would overwrite {target}"
    if is_run_dir(target, ctx, depth=0) and any(
            names_protected(s) or os.path.isdir(ctx.path(s)) or any(c in s for c in "*?[") for s in sources):
        return f"{prog} would copy over the state files of the run folder {target}"
    return None


def _sed_perl_awk(prog: str, args: list[str]) -> str | None:
    inplace = False
    if prog == "sed":
        inplace = any(a.startswith("--in-place") or (a.startswith("-") and not a.startswith("--") and "i" in a[1:])
                      for a in args)
    elif prog == "perl":
        for a in args:
            if not a.startswith("-") or a.startswith("--"):
                continue
            for letter in a[1:]:
                if letter == "i":
                    inplace = True
                if letter in "eEMmIxCd0l":
                    break
    else:  # awk
        inplace = any(a in ("inplace", "--include=inplace", "-iinplace") for a in args)
    if inplace and any(names_protected(a) for a in args):
        return f"{prog} in-place editing would rewrite the run state"
    return None


def _interpreter(prog: str, args: list[str], command: str) -> str | None:
    script = next((a for a in args if not a.startswith("-")), None)
    if script and script.endswith(".py") and _is_our_script(script):
        return None
    codes = [args[i + 1] for i, a in enumerate(args[:-1]) if a in CODE_FLAGS]
    for code in codes:
        if (mentions(code) or mentions(command)) and WRITE_HINTS.search(STDOUT_WRITES.sub("", code)):
            return f"inline {prog} code would write the run state"
    return None


def _is_our_script(script: str) -> bool:
    try:
        return script.rsplit("/", 1)[-1] in os.listdir(OUR_SCRIPTS_DIR)
    except OSError:
        return False


def _find(args: list[str], ctx: Context, command: str, depth: int) -> str | None:
    starts = []
    for a in args:
        if a.startswith("-") or a in ("(", "!", ")"):
            break
        starts.append(a)
    filtered = any(a in ("-name", "-iname", "-path", "-ipath", "-wholename", "-regex", "-iregex") for a in args)
    may_hit = any(names_protected(a) for a in args) or (not filtered and any(
        is_run_dir(s, ctx) or inside_run(s, ctx) for s in starts or ["."]))
    if "-delete" in args and may_hit:
        return "find -delete would delete the run state"
    for flag in ("-fprint", "-fprintf", "-fls", "-fprint0"):
        if flag in args and args.index(flag) + 1 < len(args) and names_protected(args[args.index(flag) + 1]):
            return f"find {flag} would overwrite the run state"
    i = 0
    while i < len(args):
        if args[i] in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j] not in (";", "+"):
                j += 1
            sub = [FOUND if a == "{}" and may_hit else a for a in args[i + 1:j]]
            reason = _rules(sub, ctx, command, depth + 1)
            if reason:
                return f"find -exec: {reason}"
            i = j
        i += 1
    return None


def _archive(prog: str, args: list[str], ctx: Context) -> str | None:
    if prog == "tar":
        first = args[0] if args else ""
        extract = (any(a in ("--extract", "--get") or (a.startswith("-") and not a.startswith("--") and "x" in a)
                       for a in args) or (bool(first) and not first.startswith("-") and "x" in first))
        dest_opts = ("-C", "--directory")
    else:  # unzip
        extract = not any(a in ("-l", "-v", "-t", "-Z") for a in args)
        dest_opts = ("-d",)
    if not extract:
        return None
    dest = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in dest_opts), None)
    dest = dest or next((a.split("=", 1)[1] for a in args if a.startswith("--directory=")), None)
    if any(names_protected(a) for a in args) or is_run_dir(dest or ".", ctx, depth=0):
        return f"{prog} would extract over the run state"
    return None


def _git(args: list[str], ctx: Context) -> str | None:
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] in ("-C", "-c", "--git-dir", "--work-tree") else args[1:]
    if not args or args[0] not in GIT_WRITERS:
        return None
    sub, rest = args[0], args[1:]
    paths = [a for a in rest if not a.startswith("-")]
    if any(names_protected(a) for a in rest) or any(is_run_dir(p, ctx) for p in paths):
        return f"git {sub} would rewrite the run state"
    if sub == "clean" and not paths and is_run_dir(".", ctx):
        return "git clean would delete run folders"
    return None


def _rules(words: list[str], ctx: Context, command: str, depth: int = 0) -> str | None:
    """Why this simple command would write a state file, or None."""
    words = [ctx.expand(w) for w in _unwrap(words, ctx)]
    if not words or depth > 4:
        return None
    prog, args = words[0].rsplit("/", 1)[-1], words[1:]
    if prog in ("cd", "pushd") and args:
        ctx.cwd = ctx.path(args[-1])  # later relative paths resolve from there
        return None
    if prog in MUTATORS:
        hit = next((a for a in args if names_protected(a)), None)
        if hit:
            return f"{prog} would modify {hit}"
        recursive = "--recursive" in args or any(
            a.startswith("-") and not a.startswith("--") and ("r" in a or "R" in a) for a in args)
        run = prog == "rm" and recursive and next((a for a in args if not a.startswith("-") and is_run_dir(a, ctx)), None)
        if run:
            return (f"rm -r would delete the run folder(s) in {run}, whose log is the run's record (if a run must "
                    f"go, the user deletes it)")
        return None
    if prog in COPIERS:
        return _copier(prog, args, ctx)
    if prog == "dd":
        hit = next((a for a in args if a.startswith("of=") and names_protected(a[3:])), None)
        return f"dd would overwrite {hit[3:]}" if hit else None
    if prog in ("sed", "gsed", "perl", "awk", "gawk"):
        reason = _sed_perl_awk(prog.lstrip("g") if prog in ("gsed", "gawk") else prog, args)
        if reason:
            return reason
    if SHELLS.match(prog) and "-c" in args and args.index("-c") + 1 < len(args):
        return analyze(args[args.index("-c") + 1], ctx, depth + 1)
    if prog in ("eval", "su"):
        return analyze(" ".join(a for a in args if a != "-c"), ctx, depth + 1)
    if INTERPRETERS.match(prog):
        return _interpreter(prog, args, command)
    if prog == "find":
        return _find(args, ctx, command, depth)
    if prog == "xargs":
        pos, opts = _positionals(args, {"-I", "-i", "-n", "-d", "-P", "-a", "-L", "-s", "-E", "-e"})
        if not pos:
            return None
        sub = pos + ([FOUND] if mentions(command) else [])
        if "-I" in opts:
            sub = [FOUND if opts["-I"] in a and mentions(command) else a for a in pos]  # -I R: R is the input
        return _rules(sub, ctx, command, depth + 1)
    if prog in ("tar", "unzip"):
        return _archive(prog, args, ctx)
    if prog == "git":
        return _git(args, ctx)
    return None


def analyze(command: str, ctx: Context | None = None, depth: int = 0) -> str | None:
    """Why this shell command would write a run's state file, or None."""
    ctx = ctx or Context(os.getcwd())
    if depth > 4:
        return None
    text, bodies = _heredocs(command)
    for body in bodies:
        if (mentions(body) or mentions(text)) and WRITE_HINTS.search(STDOUT_WRITES.sub("", body)):
            return "an inline script (here-document) would write the run state"
        reason = analyze(body, ctx, depth + 1) if mentions(body) else None
        if reason:
            return reason
    for inner in re.findall(r"`([^`]*)`", text):
        reason = analyze(inner, ctx, depth + 1)
        if reason:
            return reason
    for seg in simple_commands(tokens(text)):
        words, written = _strip_redirects(seg)
        hit = next((ctx.expand(t) for t in written if names_protected(ctx.expand(t))), None)
        if hit:
            return f"redirects output into {hit}"
        reason = _rules(words, ctx, text, depth)
        if reason:
            return reason
    return None


# --------------------------------------------------------------------------- the hook


def state_write_reason(payload: dict) -> str | None:
    tool = payload.get("tool_name")
    tool_input = payload.get("tool_input") or {}
    if tool in WRITE_TOOLS:
        target = str(tool_input.get(WRITE_TOOLS[tool]) or "")
        return f"{tool} would modify {target}" if names_protected(target) else None
    if tool == "Bash":
        return analyze(str(tool_input.get("command", "")), Context(str(payload.get("cwd") or "")))
    return None


def airgap_reason(command: str) -> str | None:
    for pattern, what in AIRGAP_DENY:
        if pattern.search(command):
            return what
    return None


def decide(payload: dict, env: dict) -> dict | None:
    reason = state_write_reason(payload)
    if reason:
        return _deny(
            f"Blocked: {reason}. A run's deft_state.json, pipeline_state.json and loop_log.jsonl are written only by "
            f"the plugin's scripts (and every reader refuses a hand-edited one): record a stage with python3 "
            f"\"${{CLAUDE_PLUGIN_ROOT}}/scripts/commit_stage.py\", a note with .../scripts/log_stage.py, see what is "
            f"next with .../scripts/next_stage.py, rebuild a state file from the log with .../scripts/repair_state.py. "
            f"Reading or copying them elsewhere (cat, jq '.', cp to /tmp) is fine.")
    if payload.get("tool_name") == "Bash" and env.get("AIR_GAPPED") == "1":
        what = airgap_reason(str((payload.get("tool_input") or {}).get("command", "")))
        if what:
            return _deny(f"Blocked by air-gap mode (AIR_GAPPED=1): {what}. Everything the run needs must already "
                         f"be on this machine; use staged images (docker --pull=never) and the existing .venv.")
    return None


def _deny(reason: str) -> dict:
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                   "permissionDecisionReason": reason}}


def main() -> int:
    try:
        payload = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError:
        return 0  # not our business to break the session on a malformed payload
    try:
        out = decide(payload if isinstance(payload, dict) else {}, dict(os.environ))
    except Exception:  # noqa: BLE001 - a guard rail must never break the session
        return 0
    if out:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
