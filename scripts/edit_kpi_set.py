#!/usr/bin/env python3
"""Relabel or drop samples of the KPI set, by hand: a person's decision, never the loop's."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.edit_kpi_set import main  # noqa: E402

if __name__ == "__main__":
    run(main)
