#!/usr/bin/env python3
"""Phase 1 -> 2: make the AutoML winner DEFT's baseline (no retrain)."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.seed_baseline import main  # noqa: E402

if __name__ == "__main__":
    run(main)
