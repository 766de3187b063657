"""Every hint names a flag the command accepts.

A static scan: for each CLI, the functions it can call (followed through module aliases, imported
names, ``self``/class methods; dynamic dispatch such as the runner's in-process stage commands and
the backend interface is not followed), and in them every ``--flag`` in the text of a raised
UserError/HardStop and of pre-flight's blocker and warning lists. A flag must be one the CLI accepts
(its --help), or follow a script's name in the same text (``gap_analysis.py --min-recall``), and is
then checked against that script. ``tao_aoi.backends`` is out of scope: its messages name job fields
after train.py/infer.py flags and external tools' options (srun, docker).
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

from conftest import SCRIPTS
from test_plugin import accepted_flags

PKG = SCRIPTS / "tao_aoi"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SCRIPT_THEN_FLAG = re.compile(r"([a-z_]+\.py)\b")
ERRORS = {"UserError", "HardStop", "StageFailed", "Unreachable"}
LISTS = {"hard", "fixable", "warnings"}  # pre-flight's blocker and warning lists
OUT_OF_SCOPE = ("tao_aoi.backends",)
# (function, flag): why that hint is right although the calling CLI lacks the flag.
ALLOWED = {
    ("tao_aoi.state.deft_state._artifact_paths", "--checkpoint"): "commit_stage.py's artifact; the runner commits files its stages wrote",
    ("tao_aoi.state.deft_state._check_metric_result", "--metric-result"): "commit_stage.py's artifact (as above)",
    ("tao_aoi.state.deft_state._check_validation_report", "--validation-report"): "commit_stage.py's artifact (as above)",
    ("tao_aoi.state.deft_state.commit", "--best-model"): "commit_stage.py's artifact (as above)",
    ("tao_aoi.state.deft_state.commit", "--status"): "commit_stage.py's argument; the runner passes ok/error",
    ("tao_aoi.state.deft_state.commit", "--duration-sec"): "commit_stage.py's argument; the runner passes a measured time",
    ("tao_aoi.state.deft_state.commit", "--stage"): "commit_stage.py's argument; the runner passes stages from the table",
    ("tao_aoi.state.deft_state.log", "--duration-sec"): "log_stage.py's argument; the runner logs its lock-takeover note with 0",
    ("tao_aoi.state.deft_state._materialize", "--results-dir"):
        "the run-folder recovery advice, reached from read_only's guard: a command told to write inside a run reads "
        "that run's state (the advice is for the run's own commands)",
    ("tao_aoi.pipeline.run_config.deft_config", "--images-root"):
        "run_pipeline.py and seed_baseline.py pass the workspace's images/, which pre-flight checks first",
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SCRIPTS).with_suffix("").parts).removesuffix(".__init__")


class Module:
    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.tree = ast.parse(source)
        self.aliases: dict[str, str] = {}             # local name -> module
        self.imported: dict[str, tuple[str, str]] = {}  # local name -> (module, function)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tao_aoi"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in FILES:
                        self.aliases[a.asname or a.name] = full
                    else:
                        self.imported[a.asname or a.name] = (node.module, a.name)
        self.functions: dict[str, ast.AST] = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.functions[node.name] = node
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self.functions[f"{node.name}.{sub.name}"] = sub

    def callees(self, qualname: str) -> list[tuple[str, str]]:
        node = self.functions[qualname]
        if isinstance(node, ast.ClassDef):  # constructing a class may run any of its methods
            return [(self.name, f"{node.name}.{s.name}") for s in node.body if isinstance(s, ast.FunctionDef)]
        cls = qualname.split(".")[0] if "." in qualname else None
        out = []
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            f = call.func
            if isinstance(f, ast.Name):
                if f.id in self.functions:
                    out.append((self.name, f.id))
                elif f.id in self.imported:
                    out.append(self.imported[f.id])
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                v = f.value.id
                if v in self.aliases:
                    out.append((self.aliases[v], f.attr))
                elif v in ("self", "cls") and cls:
                    out.append((self.name, f"{cls}.{f.attr}"))
                elif v in self.functions:
                    out.append((self.name, f"{v}.{f.attr}"))
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) \
                    and isinstance(f.value.value, ast.Name) and f.value.value.id in self.aliases:
                out.append((self.aliases[f.value.value.id], f"{f.value.attr}.{f.attr}"))
        return out


def hint_flags(node: ast.AST) -> list[tuple[str, str | None, int]]:
    """(flag, script named before it in the same text or None, line) in raised errors and blocker lists."""
    out = []
    for n in ast.walk(node):
        target = None
        if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call):
            fn = n.exc.func
            if (fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")) in ERRORS:
                target = n.exc
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "append" \
                and isinstance(n.func.value, ast.Name) and n.func.value.id in LISTS:
            target = n
        if target is None:
            continue
        text = " ".join(_text(a) for a in [*target.args, *(k.value for k in target.keywords)])
        for m in FLAG.finditer(text):
            out.append((m.group(1), _credited(text, m.start()), target.lineno))
    return out


def _text(node: ast.AST) -> str:
    """A message's text with ``{}`` where an f-string formats a value (no words glued together)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return "{}"
    return " ".join(_text(c) for c in ast.iter_child_nodes(node))


def _credited(text: str, at: int) -> str | None:
    """The script a flag belongs to when the text names one shortly before it, in the same clause."""
    scripts = list(SCRIPT_THEN_FLAG.finditer(text[:at]))
    if not scripts:
        return None
    between = text[scripts[-1].end():at]
    return scripts[-1].group(1) if len(between) <= 80 and ";" not in between else None


FILES = {module_name(p): p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts}


@lru_cache(maxsize=None)
def module(name: str) -> Module:
    return Module(name, FILES[name].read_text(encoding="utf-8"))


def reachable(entry_module: str) -> set[tuple[str, str]]:
    todo = [(entry_module, f) for f in module(entry_module).functions]
    seen: set[tuple[str, str]] = set()
    while todo:
        mod, fn = todo.pop()
        if (mod, fn) in seen or mod not in FILES or mod.startswith(OUT_OF_SCOPE):
            continue
        if fn not in module(mod).functions:
            continue
        seen.add((mod, fn))
        todo += module(mod).callees(fn)
    return seen


COMMANDS = sorted(m for m in FILES if m.startswith("tao_aoi.commands.") and m != "tao_aoi.commands")


def problems() -> tuple[list[str], int]:
    bad, checked, used = [], 0, set()
    for cmd in COMMANDS:
        script = cmd.rsplit(".", 1)[1] + ".py"
        for mod, fn in sorted(reachable(cmd)):
            for flag, named, line in hint_flags(module(mod).functions[fn]):
                checked += 1
                target = named if named and (SCRIPTS / named).exists() else script
                if flag in accepted_flags(target):
                    continue
                if (f"{mod}.{fn}", flag) in ALLOWED:
                    used.add((f"{mod}.{fn}", flag))
                    continue
                bad.append(f"{script}: {mod}.{fn} (line {line}) names {flag}, which {target} does not accept")
    bad += [f"allow-list entry {k} is not needed any more: remove it" for k in ALLOWED if k not in used]
    return bad, checked


def test_every_hint_names_a_flag_its_command_accepts():
    bad, checked = problems()
    assert checked > 50, "the scan found almost no hints: it is not looking where the messages are"
    assert not bad, "\n".join(bad)


def test_the_scan_catches_a_wrong_flag_and_credits_a_named_script():
    src = '''
from tao_aoi.errors import UserError
def f(x):
    if x:
        raise UserError(f"{x} is missing; pass --kpi-csv")
    hard.append("see gap_analysis.py --min-recall")
'''
    found = hint_flags(ast.parse(src))
    assert ("--kpi-csv", None, 5) in found and ("--min-recall", "gap_analysis.py", 6) in found
    assert "--kpi-csv" not in accepted_flags("run_pipeline.py")
    assert "--min-recall" in accepted_flags("gap_analysis.py")


def test_the_scan_follows_calls_into_the_library():
    seen = reachable("tao_aoi.commands.run_pipeline")
    assert ("tao_aoi.pipeline.preflight", "run") in seen and ("tao_aoi.pipeline.phases", "resume_changes") in seen
    assert ("tao_aoi.deft.sdg", "forecast") in seen
