"""Train a change-classification model on a ChangeNet CSV through a backend.

Writes <output-dir>/best.ckpt (the deliverable checkpoint), experiment.yaml (the effective spec),
status.json (TAO-shaped JSON lines; local: one per epoch with kpi.val_far in percent) and
train.log. --init-checkpoint (or a non-empty train.pretrained_model_path in the spec) fine-tunes.
--set key=value overrides a dotted spec key (value parsed as YAML: 1e-3, 64, [1, 3], true).
--row-weights gives each training row a weight (the local model; TAO has no per-row weight, so the
docker backend and slurm's container mode record it as not applied).
Every input is checked before anything is written: a missing image for any light, an unreadable
image, a CSV without a required column or without both PASS and defect rows, a bad spec value or a
checkpoint that is not ours exits 2 naming the file, row or key; so does a job that does not complete,
an output folder that cannot be written and running out of memory: one error line each.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from tao_aoi import cli, defaults
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import TrainJob, completed
from tao_aoi.errors import UserError
from tao_aoi.state import read_only


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs -> {dotted key: YAML-parsed value}."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {item!r} must look like dotted.key=value, e.g. train.optim.lr=1e-3")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
    return out


@cli.command("train.py", __doc__, next_step="in a DEFT run, the commit_stage.py line next_stage.py printed; else "
             "python3 scripts/infer.py --spec <output-dir>/experiment.yaml --checkpoint <output-dir>/best.ckpt ...")
@cli.option("--backend")
@cli.option("--spec", required=True, type=click.Path(path_type=Path))
@click.option("--train-csv", required=True, type=click.Path(path_type=Path))
@click.option("--val-csv", required=True, type=click.Path(path_type=Path),
              help="validation CSV (per-epoch val FAR, best epoch)")
@cli.option("--images-root", required=True, type=click.Path(path_type=Path))
@cli.option("--output-dir", type=click.Path(path_type=Path))
@click.option("--init-checkpoint", type=click.Path(path_type=Path), help="fine-tune from this checkpoint")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a dotted spec key (repeatable)")
@cli.option("--max-retries")
@click.option("--row-weights", type=click.Path(path_type=Path),
              help="CSV with a weight per training row, in order (a DEFT iteration's provenance CSV); the local "
                   "model weights its rows by it, TAO (docker, slurm container mode) has no per-row weight")
@cli.option("--json", help="print the job result as JSON")
def command(args) -> int:
    read_only.refuse_committed(args.output_dir, "--output-dir", "train.py")
    job = TrainJob(spec=args.spec, train_csv=args.train_csv, val_csv=args.val_csv, images_root=args.images_root,
                   output_dir=args.output_dir, init_checkpoint=args.init_checkpoint, overrides=parse_sets(args.sets),
                   row_weights=args.row_weights)
    with cli.job_failures("train", args.output_dir):
        handle = completed(get_backend(args.backend, max_retries=args.max_retries).train(job))
    result = {"state": handle.state, "backend": handle.backend, "job_id": handle.job_id,
              "checkpoint": str(Path(args.output_dir) / defaults.CHECKPOINT_NAME),
              "experiment": str(Path(args.output_dir) / "experiment.yaml"), "detail": handle.detail}
    if args.json:
        cli.emit_json(result)
    else:
        print(f"train {handle.state.lower()}: {result['checkpoint']} ({handle.detail})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
