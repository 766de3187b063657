"""Run every script under the plugin's own .venv when it exists.

Skills call ``python3 "${CLAUDE_PLUGIN_ROOT}/scripts/x.py"``; whatever ``python3`` is on PATH,
this re-executes the script with ``<plugin>/.venv/bin/python`` (created by setup_env.py) so the
pinned dependencies are always the ones used. Set TAO_AOI_NO_REEXEC=1 to opt out.
"""
from __future__ import annotations

import os
import sys

PLUGIN_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
VENV = os.path.join(PLUGIN_ROOT, ".venv")


def venv_python() -> str:
    return os.path.join(VENV, "bin", "python")


def ensure() -> None:
    if os.environ.get("TAO_AOI_NO_REEXEC"):
        return
    target = venv_python()
    if not os.path.exists(target) or os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    os.environ["TAO_AOI_NO_REEXEC"] = "1"  # never loop
    os.execv(target, [target, *sys.argv])
