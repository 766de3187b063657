"""Train a change-classification model on a ChangeNet CSV through a backend.

Writes <output-dir>/best.ckpt (the deliverable checkpoint), experiment.yaml (the effective spec),
status.json (TAO-shaped JSON lines; local: one per epoch with kpi.val_far in percent) and
train.log. --init-checkpoint (or a non-empty train.pretrained_model_path in the spec) fine-tunes.
--set key=value overrides a dotted spec key (value parsed as YAML: 1e-3, 64, [1, 3], true).
Every input is checked before anything is written: a missing image for any light, an unreadable
image, a CSV without a required column or without both PASS and defect rows, a bad spec value or a
checkpoint that is not ours exits 2 naming the file, row or key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tao_aoi import cli, defaults
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import TrainJob
from tao_aoi.errors import UserError


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


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("train.py", __doc__)
    p.add_argument("--backend", default="local", choices=defaults.BACKENDS)
    p.add_argument("--spec", required=True, type=Path, help="TAO-shaped train spec (YAML)")
    p.add_argument("--train-csv", required=True, type=Path)
    p.add_argument("--val-csv", required=True, type=Path, help="validation CSV (per-epoch val FAR, best epoch)")
    p.add_argument("--images-root", required=True, type=Path, help="folder the CSV paths are relative to")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--init-checkpoint", type=Path, help="fine-tune from this checkpoint")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted spec key (repeatable)")
    p.add_argument("--json", action="store_true", help="print the job result as JSON")
    args = p.parse_args(argv)
    job = TrainJob(spec=args.spec, train_csv=args.train_csv, val_csv=args.val_csv, images_root=args.images_root,
                   output_dir=args.output_dir, init_checkpoint=args.init_checkpoint, overrides=parse_sets(args.sets))
    handle = get_backend(args.backend).train(job)
    result = {"state": handle.state, "backend": handle.backend, "job_id": handle.job_id,
              "checkpoint": str(Path(args.output_dir) / defaults.CHECKPOINT_NAME),
              "experiment": str(Path(args.output_dir) / "experiment.yaml"), "detail": handle.detail}
    if args.json:
        cli.emit_json(result)
    else:
        print(f"train {handle.state.lower()}: {result['checkpoint']} ({handle.detail})")
    return 0 if handle.state == "COMPLETE" else 1
