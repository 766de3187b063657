#!/usr/bin/env python3
"""Compute FAR, recall, precision, F1 and the threshold of an inference.csv at an operating point."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.analyze_kpi import main  # noqa: E402

if __name__ == "__main__":
    run(main)
