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

from tao_aoi import cli, demo_workspace


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("make_demo_workspace.py", __doc__)
    p.add_argument("--out", required=True, help="workspace folder to create")
    p.add_argument("--preset", default="demo", choices=demo_workspace.preset_names())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    say = None if args.quiet or args.json else (lambda msg: print(f"  {msg}", file=sys.stderr))
    manifest = demo_workspace.build(args.out, args.preset, args.seed, force=args.force, progress=say)
    if args.json:
        cli.emit_json(manifest)
    elif not args.quiet:
        print(f"workspace {args.out}")
        print(demo_workspace.describe(manifest))
    return 0
