"""Score every row of a ChangeNet CSV with a trained checkpoint -> <output-dir>/inference.csv.

inference.csv has input_path, golden_path, object_name, label (when the input has it) and
siamese_score (high = defect), then the input's extra columns; status.json and infer.log beside
it. The CSV needs input_path, golden_path and object_name; every image of every light in the
spec's dataset.classify.input_map must exist. Bad input exits 2 naming the file and nothing is
written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import InferJob, completed
from tao_aoi.state import read_only


@cli.command("infer.py", __doc__, next_step="python3 scripts/analyze_kpi.py <output-dir>/inference.csv --output-dir "
             "<output-dir> --kpi-target T")
@cli.option("--backend")
@cli.option("--spec", required=True, type=click.Path(path_type=Path),
            help="the spec the checkpoint was trained with (its experiment.yaml)")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("--csv", required=True, type=click.Path(path_type=Path), help="ChangeNet CSV to score")
@cli.option("--images-root", required=True, type=click.Path(path_type=Path))
@cli.option("--output-dir", type=click.Path(path_type=Path))
@cli.option("--max-retries")
@cli.option("--json", help="print the job result as JSON")
def command(args) -> int:
    read_only.refuse_committed(args.output_dir, "--output-dir", "infer.py")
    job = InferJob(spec=args.spec, checkpoint=args.checkpoint, csv=args.csv, images_root=args.images_root,
                   output_dir=args.output_dir)
    with cli.job_failures("infer", args.output_dir):
        handle = completed(get_backend(args.backend, max_retries=args.max_retries).infer(job))
    result = {"state": handle.state, "backend": handle.backend, "job_id": handle.job_id,
              "inference_csv": str(Path(args.output_dir) / "inference.csv"), "detail": handle.detail}
    if args.json:
        cli.emit_json(result)
    else:
        print(f"infer {handle.state.lower()}: {result['inference_csv']} ({handle.detail})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
