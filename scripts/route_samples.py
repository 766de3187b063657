#!/usr/bin/env python3
"""Route weak samples per label to SDG, mining, both or dropped; flag likely mislabelled rows for review."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.route_samples import main  # noqa: E402

if __name__ == "__main__":
    run(main)
