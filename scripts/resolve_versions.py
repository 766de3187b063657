#!/usr/bin/env python3
"""Print the pinned value of a versions.yaml key, e.g. images.tao_toolkit.pyt."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.resolve_versions import main  # noqa: E402

if __name__ == "__main__":
    run(main)
