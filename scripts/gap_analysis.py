#!/usr/bin/env python3
"""Root-cause the weakest KPI samples: threshold, signed weakness, top-K per label, thumbnails, RCA report skeleton."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.gap_analysis import main  # noqa: E402

if __name__ == "__main__":
    run(main)
