#!/usr/bin/env python3
"""Mine real labelled images similar to the weak samples (cosine k-NN over one embedder)."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.mine_pool import main  # noqa: E402

if __name__ == "__main__":
    run(main)
