"""The TAO-shaped train spec: which lights a sample has and the image extension.

Only ``yaml.safe_load`` is used; a spec never runs code.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from tao_aoi.errors import UserError


def load(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"train spec {p} does not exist") from None
    except yaml.YAMLError as exc:
        raise UserError(f"train spec {p} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise UserError(f"train spec {p} must be a YAML mapping")
    return data


def get(spec: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = spec
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(spec: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = spec
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Nested merge: mappings merge key by key, anything else in ``override`` wins."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def lights(spec: Mapping[str, Any], where: str | Path = "train spec") -> list[str]:
    """Light names from ``dataset.classify.input_map`` ordered by channel index."""
    input_map = get(spec, "dataset.classify.input_map")
    if not isinstance(input_map, Mapping) or not input_map:
        raise UserError(f"{where}: dataset.classify.input_map must map each light name to its index, e.g. "
                        f"{{SolderLight: 0, UniformLight: 1}}")
    try:
        return [k for k, _ in sorted(input_map.items(), key=lambda kv: (int(kv[1]), str(kv[0])))]
    except (TypeError, ValueError):
        raise UserError(f"{where}: dataset.classify.input_map values must be integer indices") from None


def image_ext(spec: Mapping[str, Any], where: str | Path = "train spec") -> str:
    ext = get(spec, "dataset.classify.image_ext")
    if not isinstance(ext, str) or not ext.startswith(".") or len(ext) < 2:
        raise UserError(f"{where}: dataset.classify.image_ext must be an extension such as '.png'")
    return ext


def dump(spec: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(spec), sort_keys=False, default_flow_style=False)
