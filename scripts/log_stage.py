#!/usr/bin/env python3
"""Append one event to <results-dir>/loop_log.jsonl with the next seq (exclusive lock, fsync)."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.log_stage import main  # noqa: E402

if __name__ == "__main__":
    run(main)
