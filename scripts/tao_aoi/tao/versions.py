"""versions.yaml: the pinned TAO container images, looked up by dotted key."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tao_aoi.errors import UserError
from tao_aoi.layout import PLUGIN_ROOT

VERSIONS_FILE = PLUGIN_ROOT / "versions.yaml"


def load(path: Path = VERSIONS_FILE) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found; the plugin checkout is incomplete") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping")
    return data


def resolve(key: str, path: Path = VERSIONS_FILE) -> str:
    node: Any = load(path)
    walked = []
    for part in key.split("."):
        walked.append(part)
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"{path}: no key {'.'.join(walked)!r} (asked for {key!r})")
        node = node[part]
    if not isinstance(node, str) or not node.strip():
        raise UserError(f"{path}: {key!r} is not a non-empty string (it is a {type(node).__name__})")
    return node.strip()


def image(key: str) -> str:
    """An image by short key (pyt, data_services, paidf_anomalygen) or full dotted key."""
    short = {"pyt": "images.tao_toolkit.pyt", "data_services": "images.tao_toolkit.data_services",
             "anomalygen": "images.metropolis_sdg.paidf_anomalygen"}
    return resolve(short.get(key, key))
