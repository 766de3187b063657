"""Run one job described in a JSON file with the local backend, on whatever host runs this.

The slurm backend uses it for embedding, which has no user-facing CLI of its own:
``python -m tao_aoi.backends.job_runner embed <embed_job.json>`` (with ``scripts/`` on PYTHONPATH).
Exit 2 with one line on a UserError, like every script.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.backends import get_backend
from tao_aoi.backends.base import EmbedJob
from tao_aoi.errors import UserError


@cli.command("job_runner", __doc__, next_step="nothing by hand: the slurm backend that submitted the job reads its "
             "outputs")
@click.argument("kind", type=click.Choice(("embed",)))
@click.argument("job_json", type=click.Path(path_type=Path))
def command(args) -> int:
    try:
        req = json.loads(args.job_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{args.job_json}: cannot read the job description ({exc}); resubmit the job") from None
    job = EmbedJob(csv=Path(req["csv"]), images_root=Path(req["images_root"]), spec=Path(req["spec"]),
                   output=Path(req["output"]), settings=req.get("settings") or {})
    handle = get_backend("local").embed(job)
    return 0 if handle.state == "COMPLETE" else 1


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
