#!/usr/bin/env python3
"""AutoML hyper-parameter search on Optuna, scored by FAR@100% recall on the validation set."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.automl import main  # noqa: E402

if __name__ == "__main__":
    run(main)
