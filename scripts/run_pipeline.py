#!/usr/bin/env python3
"""Run the AOI pipeline headless (no LLM): AutoML -> DEFT loop -> AutoML, or one phase of it."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.run_pipeline import main  # noqa: E402

if __name__ == "__main__":
    run(main)
