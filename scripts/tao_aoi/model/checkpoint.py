"""Checkpoints that are data, never code: numpy arrays + JSON metadata in one ``.npz`` file.

Loading uses ``np.load(allow_pickle=False)``, so a file carrying pickled objects is refused instead
of executed; the metadata (a UTF-8 JSON document stored as a byte array) must name our format, so
a TAO ``.pth`` or any other file handed in by mistake is refused with a message naming it.
One file keeps the checkpoint self-contained when stages copy it around.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tao_aoi import atomic
from tao_aoi.errors import UserError

META_KEY = "__meta__"


def save(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Atomic write of ``arrays`` plus ``meta`` (must contain ``format`` and ``format_version``)."""
    if META_KEY in arrays:
        raise ValueError(f"{META_KEY} is reserved")
    blob = np.frombuffer(json.dumps(dict(meta), sort_keys=True, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{META_KEY: blob}, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    atomic.write_bytes(path, buf.getvalue())


def load(path: str | Path, fmt: str, version: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a checkpoint written by ``save`` with this format; UserError otherwise."""
    p = Path(path)
    hint = "pass a best.ckpt written by this toolkit's local backend"
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist; {hint}")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise UserError(f"checkpoint {p} is not a local-backend checkpoint (not an .npz archive; a TAO .pth "
                        f"needs --backend docker); {hint}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UserError(f"checkpoint {p} holds pickled objects, which are never loaded (they can run code); "
                            f"{hint}") from None
        raise UserError(f"checkpoint {p} is corrupt ({' '.join(str(exc).split())}); {hint}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"checkpoint {p} is corrupt ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                        f"{hint}") from None
    raw = arrays.pop(META_KEY, None)
    try:
        if raw is None or raw.dtype != np.uint8:
            raise ValueError("no metadata")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("metadata is not an object")
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"checkpoint {p} has no readable {META_KEY} metadata, so it is not ours; {hint}") from None
    if meta.get("format") != fmt:
        raise UserError(f"checkpoint {p} has format {meta.get('format')!r}, expected {fmt!r}; {hint}")
    if meta.get("format_version") != version:
        raise UserError(f"checkpoint {p} is format version {meta.get('format_version')!r}, this toolkit reads "
                        f"{version}; retrain with this toolkit")
    return arrays, meta
