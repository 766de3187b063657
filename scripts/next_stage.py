#!/usr/bin/env python3
"""Print the next DEFT stage and the exact commands for it, from deft_state.json alone."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.next_stage import main  # noqa: E402

if __name__ == "__main__":
    run(main)
