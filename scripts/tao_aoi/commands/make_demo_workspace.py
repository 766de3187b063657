"""Build a complete synthetic AOI workspace (images, CSVs, spec, SDG and mining pools).

Deterministic for a --seed. Presets: tiny (seconds; tests), demo (what `make demo` runs),
large (tens of thousands of rows; benchmarks). The base training set lacks SHIFT and TOMBSTONE
and nearly lacks EXCESS_SOLDER, which the KPI set has: the gap the DEFT loop closes with the
AnomalyGen pool (PASS, EXCESS_SOLDER, MISSING, BRIDGE) and the mining pool (every family).
field-tiny / field: an independent generator drawn like production data (three lights, JPEG,
72 px crops with the part anywhere in them, nested paths, R12@1 names, extra columns; base
training lacks TOMBSTONE, POLARITY and FOREIGN_MATERIAL), for tests and benchmarks.
Refuses a non-empty --out unless --force.
"""
from __future__ import annotations

import sys
from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.workspace import presets


@cli.command("make_demo_workspace.py", __doc__, next_step="python3 scripts/preflight.py --workspace OUT "
             "--max-iterations 3 --kpi-target 'FAR < 1% at Recall=100%' (then run_pipeline.py with the same options)")
@click.option("--out", required=True, help="workspace folder to create")
@click.option("--preset", default="demo", type=click.Choice(presets.preset_names()))
@click.option("--seed", type=int, default=0)
@click.option("--force", is_flag=True, help="replace an existing non-empty --out")
@cli.option("--json", help="print the manifest as JSON")
@cli.option("--quiet")
def command(args) -> int:
    say = None if args.quiet or args.json else (lambda msg: print(f"  {msg}", file=sys.stderr))
    manifest = presets.build(args.out, args.preset, args.seed, force=args.force, progress=say)
    if args.json:
        cli.emit_json(manifest)
    elif not args.quiet:
        print(f"workspace {args.out}")
        print(presets.describe(manifest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
