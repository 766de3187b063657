"""Print the pinned value of a versions.yaml key, e.g. images.tao_toolkit.pyt.

Exit 2 naming the missing part of the key if it does not exist.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.tao import versions


@cli.command("resolve_versions.py", __doc__, next_step="use the printed value, e.g. docker pull <image> (preflight.py "
             "lists which images are present)")
@click.argument("key")
@click.option("--versions-file", default=str(versions.VERSIONS_FILE), help="the pinned versions file")
def command(args) -> int:
    print(versions.resolve(args.key, Path(args.versions_file)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
