#!/usr/bin/env python3
"""Rebuild deft_state.json and pipeline_state.json from loop_log.jsonl (after a hand edit or a crash)."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.repair_state import main  # noqa: E402

if __name__ == "__main__":
    run(main)
