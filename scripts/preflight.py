#!/usr/bin/env python3
"""Pre-flight: every read-only check and the nine-section summary before the single approval."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.preflight import main  # noqa: E402

if __name__ == "__main__":
    run(main)
