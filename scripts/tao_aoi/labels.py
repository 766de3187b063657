"""One label normalisation for every script (the anchor disagreed with itself on pass vs PASS).

Canonical form: upper case, surrounding whitespace removed, inner spaces and hyphens turned into
underscores. ``pass``, ``Pass`` and `` PASS `` all become ``PASS``; ``excess-solder`` becomes
``EXCESS_SOLDER``. Positive class (a defect) = any canonical label other than PASS.
"""
from __future__ import annotations

import re

PASS = "PASS"
_SEP = re.compile(r"[\s\-]+")
_VALID = re.compile(r"^[A-Z0-9][A-Z0-9_]*$")


def canonical_label(raw: object) -> str:
    """Return the canonical label, or '' when ``raw`` is empty/missing."""
    if raw is None:
        return ""
    text = str(raw).strip()
    if not text or text.lower() == "nan":
        return ""
    return _SEP.sub("_", text).upper()


def is_valid_canonical(label: str) -> bool:
    return bool(_VALID.match(label))


def is_defect(label: str) -> bool:
    return canonical_label(label) != PASS
