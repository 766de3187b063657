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

from tao_aoi import cli, defaults
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import InferJob


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("infer.py", __doc__)
    p.add_argument("--backend", default="local", choices=defaults.BACKENDS)
    p.add_argument("--spec", required=True, type=Path, help="the spec the checkpoint was trained with "
                                                            "(its experiment.yaml)")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--csv", required=True, type=Path)
    p.add_argument("--images-root", required=True, type=Path)
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--json", action="store_true", help="print the job result as JSON")
    args = p.parse_args(argv)
    handle = get_backend(args.backend).infer(InferJob(spec=args.spec, checkpoint=args.checkpoint, csv=args.csv,
                                                      images_root=args.images_root, output_dir=args.output_dir))
    result = {"state": handle.state, "backend": handle.backend, "job_id": handle.job_id,
              "inference_csv": str(Path(args.output_dir) / "inference.csv"), "detail": handle.detail}
    if args.json:
        cli.emit_json(result)
    else:
        print(f"infer {handle.state.lower()}: {result['inference_csv']} ({handle.detail})")
    return 0 if handle.state == "COMPLETE" else 1
