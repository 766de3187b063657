#!/usr/bin/env python3
"""Check a training CSV before any job trains on it; exit 2 listing what is wrong."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.validate_training_csv import main  # noqa: E402

if __name__ == "__main__":
    run(main)
