#!/usr/bin/env python3
"""Render <results-dir>/DEFT_Loop_Report.html: one self-contained page for the whole run."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.render_report import main  # noqa: E402

if __name__ == "__main__":
    run(main)
