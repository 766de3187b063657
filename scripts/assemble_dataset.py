#!/usr/bin/env python3
"""Assemble iteration N's training set: previous rows unchanged + this iteration's SDG and mined rows."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.assemble_dataset import main  # noqa: E402

if __name__ == "__main__":
    run(main)
