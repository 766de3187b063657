"""Fail (exit 2) if any training row's sample also appears in a held-out set.

Samples are compared on resolved identity (normalised input directory + object_name, label ignored),
so an `images/` prefix, `./` or a different label spelling cannot hide a leak. Prints the leaking
rows (CSV line, key, which set). --images-root is the folder the CSVs' paths are relative to (default:
the nearest images/ folder above the training CSV). A CSV whose sample folders do not exist under it
(nor under its parent or the CSV's own folder) is refused (exit 2): identity that cannot be resolved
cannot prove the absence of a leak.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.data import changenet_csv, leakage
from tao_aoi.errors import HardStop


@cli.command("check_leakage.py", __doc__, next_step="python3 scripts/validate_training_csv.py --csv TRAIN "
             "--images-root I --train-spec S (every other check before training)")
@click.option("--train", required=True, help="training CSV")
@click.option("--against", multiple=True, required=True, help="held-out CSV (repeat for several)")
@cli.option("--images-root", help="image root (default: <train CSV's workspace>/images)")
@cli.option("--json", help="print the leaks as JSON")
def command(args) -> int:
    root = Path(args.images_root) if args.images_root else _default_root(Path(args.train))
    train = changenet_csv.read(args.train, what="training CSV")
    against = [(a, changenet_csv.read(a, what="held-out CSV")) for a in args.against]
    leakage.require_resolved(train, root, args.train, "training CSV")
    for name, df in against:
        leakage.require_resolved(df, root, name, "held-out CSV")
    leaks = leakage.find_leaks(train, args.train, against, root)
    if args.json:
        cli.emit_json({"leakage_count": int(len(leaks)), "leaks": leaks.head(1000).to_dict(orient="records")})
    elif len(leaks):
        for r in leaks.head(50).itertuples():
            print(f"{args.train} line {r.line}: {r.key} ({r.label}) also in {r.against}")
    if len(leaks):
        raise HardStop(f"{len(leaks)} row(s) of {args.train} leak into held-out sets (first: line {leaks.iloc[0]['line']} "
                       f"{leaks.iloc[0]['key']}); drop them from the training CSV")
    if not args.json:
        print(f"no leakage: {len(train)} training rows vs {sum(len(d) for _, d in against)} held-out rows")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)


def _default_root(train_csv):
    """<workspace>/images for a CSV under <workspace>/train/base or <workspace>/kpi; else the CSV's folder
    (require_resolved then refuses if the sample folders are not there either)."""
    for parent in train_csv.resolve().parents:
        if (parent / "images").is_dir():
            return parent / "images"
    return train_csv.resolve().parent
