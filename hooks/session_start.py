"""SessionStart hook: is the toolkit's Python environment ready, and which credentials are set.

Standard library only (it must run before anything is installed). Prints a short note that
Claude Code adds to the session context. Credentials are reported by NAME only, never values.
"""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CREDENTIALS = ("NGC_KEY", "HF_TOKEN")
PROBE = "import numpy, pandas, pyarrow, yaml, sklearn, optuna, PIL, jinja2, fastjsonschema"


def environment_status() -> tuple[bool, str]:
    py = os.path.join(ROOT, ".venv", "bin", "python")
    setup = f'python3 "{os.path.join(ROOT, "scripts", "setup_env.py")}"'
    if not os.path.exists(py):
        return False, f"not set up: run `{setup}` (creates {os.path.join(ROOT, '.venv')}, ~1-2 min)"
    try:
        proc = subprocess.run([py, "-c", PROBE], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"the .venv does not start ({exc}); run `{setup}`"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, f"incomplete ({last}); run `{setup}`"
    return True, f"ready ({os.path.join(ROOT, '.venv')}); scripts re-run themselves under it"


def main() -> int:
    sys.stdin.read() if not sys.stdin.isatty() else None  # hook payload: not needed
    ok, detail = environment_status()
    creds = ", ".join(f"{name}={'SET' if os.environ.get(name) else 'UNSET'}" for name in CREDENTIALS)
    lines = [
        "## tao-aoi plugin",
        f"- Python toolkit: {detail}",
        f"- Credentials (names only): {creds}. The local backend needs none; NGC_KEY is needed only to pull "
        f"TAO images, HF_TOKEN only for gated Hugging Face downloads.",
        "- Run state (deft_state.json, loop_log.jsonl) is written only by the plugin's scripts.",
    ]
    if os.environ.get("AIR_GAPPED") == "1":
        lines.append("- AIR_GAPPED=1: package installs, image pulls and network tools are refused.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
