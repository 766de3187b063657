#!/usr/bin/env python3
"""Train a change-classification model through a backend -> <output-dir>/best.ckpt."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.train import main  # noqa: E402

if __name__ == "__main__":
    run(main)
