#!/usr/bin/env python3
"""Pick the deliverable among all complete candidates and write best_model.json + its inference spec."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.prepare_inference_spec import main  # noqa: E402

if __name__ == "__main__":
    run(main)
