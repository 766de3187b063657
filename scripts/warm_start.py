#!/usr/bin/env python3
"""Phase 2 -> 3: the inputs for AutoML refinement, and registering its winner back into the run."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.warm_start import main  # noqa: E402

if __name__ == "__main__":
    run(main)
