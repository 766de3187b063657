#!/usr/bin/env python3
"""Ingest pre-generated synthetic defects (AnomalyGen pool) for the labels routed to SDG."""
from tao_aoi import interpreter

interpreter.ensure()

from tao_aoi.cli import run  # noqa: E402
from tao_aoi.commands.ingest_sdg import main  # noqa: E402

if __name__ == "__main__":
    run(main)
