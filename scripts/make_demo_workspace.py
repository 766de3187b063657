#!/usr/bin/env python3
"""Build a complete synthetic AOI workspace (images, CSVs, spec, SDG and mining pools)."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.make_demo_workspace import main  # noqa: E402

if __name__ == "__main__":
    run(main)
