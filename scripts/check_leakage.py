#!/usr/bin/env python3
"""Fail (exit 2) if any training row's sample also appears in a held-out set."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.check_leakage import main  # noqa: E402

if __name__ == "__main__":
    run(main)
