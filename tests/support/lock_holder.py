"""A separate process that holds a results folder's run lock (for tests of contention and takeover)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = """
import sys, time
sys.path.insert(0, {scripts!r})
from tao_aoi.state import run_lock
with run_lock.hold({results!r}, kind={kind!r}):
    print("held", flush=True)
    time.sleep({seconds})
"""


def holder(results: Path, kind: str = "run", seconds: float = 60) -> subprocess.Popen:
    """Start it and return once it holds the lock; the caller kills it."""
    code = CODE.format(scripts=str(ROOT / "scripts"), results=str(results), kind=kind, seconds=seconds)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc
