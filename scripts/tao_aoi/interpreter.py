"""Run every script under the plugin's own .venv when it exists.

Skills call ``python3 "${CLAUDE_PLUGIN_ROOT}/scripts/x.py"``; whatever ``python3`` is on PATH,
this re-executes the script with ``<plugin>/.venv/bin/python`` (created by setup_env.py) so the
pinned dependencies are always the ones used. Set TAO_AOI_NO_REEXEC=1 to opt out.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parents[2]
VENV = PLUGIN_ROOT / ".venv"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> None:
    if os.environ.get("TAO_AOI_NO_REEXEC"):
        return
    target = venv_python()
    if not target.exists():
        return
    try:
        if Path(sys.prefix).resolve() == VENV.resolve():
            return
    except OSError:
        return
    os.environ["TAO_AOI_NO_REEXEC"] = "1"  # never loop
    os.execv(str(target), [str(target), *sys.argv])
