#!/usr/bin/env python3
"""Create a DEFT run: deft_state.json + loop_log.jsonl in the results folder."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.init_deft_state import main  # noqa: E402

if __name__ == "__main__":
    run(main)
