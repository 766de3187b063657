"""Skip-or-fail for tests that need an external tool (slurm, munge, chromium, claude, root).

Locally a missing tool skips the test with its reason (pytest -ra prints it). CI exports
TAO_AOI_REQUIRE_TOOLS=1 after installing every tool, so there the same gap is a failure: a test
that silently skipped in CI would prove nothing.
"""
from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "TAO_AOI_REQUIRE_TOOLS"


def tools_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (when TAO_AOI_REQUIRE_TOOLS=1) with ``reason``; never returns."""
    if tools_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so a missing tool is a failure)", pytrace=False)
    pytest.skip(reason)


def require(condition: bool, reason: str) -> None:
    """Skip-or-fail unless ``condition`` holds (e.g. running as root)."""
    if not condition:
        unavailable(reason)


def require_tool(name: str, reason: str = "") -> str:
    """Absolute path of executable ``name`` on PATH, or skip-or-fail saying what needs it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found on PATH" + (f": {reason}" if reason else ""))
    return path  # type: ignore[return-value]


def require_root(reason: str) -> None:
    require(os.geteuid() == 0, f"needs root: {reason}")
