"""A small tmpfs mounted where a test wants a file system that fills up (the results folder during
assembly, the run's log). Mounting needs root (CI runs as root, like the SLURM tests): without it the
test skips locally with the reason, and fails under TAO_AOI_REQUIRE_TOOLS=1 (tooling.py)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

from tooling import unavailable


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``16k``) at ``path`` (created) for the block; unmounted after."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        unavailable("mount/umount not found: the disk-full tests mount a small tmpfs")
    if os.geteuid() != 0:
        unavailable("needs root: the disk-full tests mount a small tmpfs (CI runs .ci/run as root)")
    path.mkdir(parents=True, exist_ok=True)
    proc = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if proc.returncode != 0:
        unavailable(f"cannot mount a tmpfs at {path} ({' '.join(proc.stderr.split())}): the container lacks "
                    f"CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        if _run("umount", str(path)).returncode != 0:
            _run("umount", "-l", str(path))  # a process still inside: detach now, freed when it leaves


def resize(path: Path, size: str) -> None:
    """Give a mounted tmpfs more room (what freeing disk space does), keeping its files."""
    proc = _run("mount", "-o", f"remount,size={size}", str(path))
    assert proc.returncode == 0, proc.stderr
