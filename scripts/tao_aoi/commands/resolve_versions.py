"""Print the pinned value of a versions.yaml key, e.g. images.tao_toolkit.pyt.

Exit 2 naming the missing part of the key if it does not exist.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tao_aoi import cli, versions


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("resolve_versions.py", __doc__)
    p.add_argument("key", help="dotted key, e.g. images.tao_toolkit.data_services")
    p.add_argument("--versions-file", default=str(versions.VERSIONS_FILE))
    args = p.parse_args(argv)
    print(versions.resolve(args.key, Path(args.versions_file)))
    return 0
