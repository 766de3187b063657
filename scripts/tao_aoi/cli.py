"""The single error handler and small argparse conveniences shared by every command."""
from __future__ import annotations

import argparse
import json
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Callable, NoReturn, Sequence

from tao_aoi.errors import UserError

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse already exits 2 on bad usage)."""

    def error(self, message: str) -> NoReturn:  # pragma: no cover - exercised via subprocess
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str, doc: str | None) -> ArgumentParser:
    text = (doc or "").strip()
    first, _, rest = text.partition("\n")
    return ArgumentParser(
        prog=prog,
        description=first,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a command's main(); map UserError to exit 2 with one clean line on stderr."""
    try:
        code = main(argv)
    except UserError as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(EXIT_USER)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `next_stage.py | head`
        sys.exit(EXIT_OK)
    sys.exit(code or EXIT_OK)


def emit_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
