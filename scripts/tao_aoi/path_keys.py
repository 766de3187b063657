"""Normalised sample identity, so leakage and history checks compare files, not strings.

The anchor compared raw CSV strings: ``images/board/x`` (workspace-relative) never matched
``board/x`` (image-root-relative) and real leaks passed. Here every path is joined to the
directory it is relative to, normalised (``./``, ``..``, duplicate slashes), and expressed
relative to the image root (absolute if it lies outside). Pure Python; callers map it over the
unique values of a column, which keeps it fast on large CSVs.
"""
from __future__ import annotations

import os
import posixpath


def normalise(path: str, base: str, images_root: str) -> str:
    """``path`` as written in a CSV whose paths are relative to ``base`` -> key relative to ``images_root``."""
    p = str(path).strip().replace("\\", "/")
    full = posixpath.normpath(p if p.startswith("/") else posixpath.join(base, p))
    root = posixpath.normpath(images_root)
    if full == root:
        return "."
    if full.startswith(root.rstrip("/") + "/"):
        return full[len(root.rstrip("/")) + 1:]
    return full


def sample_key(input_key: str, object_name: str) -> str:
    """One test image set: its normalised directory plus the component name (label excluded)."""
    return f"{input_key.rstrip('/')}/{str(object_name).strip()}"


def abspath(p: str) -> str:
    return posixpath.normpath(os.path.abspath(p))
