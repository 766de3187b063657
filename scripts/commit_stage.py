#!/usr/bin/env python3
"""Record a stage result in deft_state.json: the only way state changes."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.commit_stage import main  # noqa: E402

if __name__ == "__main__":
    run(main)
