#!/usr/bin/env python3
"""Score a ChangeNet CSV with a trained checkpoint -> <output-dir>/inference.csv."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.infer import main  # noqa: E402

if __name__ == "__main__":
    run(main)
