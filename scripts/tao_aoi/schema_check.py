"""Validate documents against the JSON Schemas shipped in ``tao_aoi/schemas``.

The state scripts run this on every call, and the reference implementation (jsonschema) costs
~95 ms to import, more than the whole latency budget of log_stage.py. So validation uses
fastjsonschema (a compiling Draft-07 validator, ~10 ms); tests check with jsonschema that both
accept and reject the same documents.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from tao_aoi.errors import UserError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _validator(name: str) -> Callable[[Any], Any]:
    import fastjsonschema

    return fastjsonschema.compile(load_schema(name))


def validate(name: str, doc: Any, *, where: str) -> None:
    """Raise UserError naming ``where`` (file/line) if ``doc`` does not match schema ``name``."""
    import fastjsonschema

    try:
        _validator(name)(doc)
    except fastjsonschema.JsonSchemaException as exc:
        raise UserError(f"{where}: does not match {name} schema: {exc.message}") from None
