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


def _parts(dotted: str) -> list[str | int]:
    """``a.b[1].c`` -> ["a", "b", 1, "c"]: a ``[i]`` suffix addresses one entry of a list value
    (TAO's ``train.classify.cls_weight`` is a list, one weight per class)."""
    out: list[str | int] = []
    for part in dotted.split("."):
        name, bracket, rest = part.partition("[")
        out.append(name)
        while bracket:
            index, close, tail = rest.partition("]")
            if not close or not index.isdigit() or (tail and not tail.startswith("[")):
                raise UserError(f"spec key {dotted!r}: a list index must look like name[0]")
            out.append(int(index))
            bracket, rest = tail[:1], tail[1:]
    return out


def get(spec: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = spec
    for part in _parts(dotted):
        if isinstance(part, int):
            if not isinstance(node, (list, tuple)) or part >= len(node):
                return default
        elif not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(spec: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted key, creating mappings on the way; ``key[i]`` sets one list entry (a missing or
    shorter list is padded with 1.0, TAO's neutral class weight, up to ``i``)."""
    parts = _parts(dotted)
    node: Any = spec
    for part, nxt_part in zip(parts[:-1], parts[1:]):
        want = list if isinstance(nxt_part, int) else dict
        child = node[part] if _has(node, part) else None
        if not isinstance(child, want):
            child = [] if want is list else {}
            _put(node, part, child)
        node = child
    _put(node, parts[-1], value)


def _has(node: Any, part: str | int) -> bool:
    return part < len(node) if isinstance(part, int) else part in node


def _put(node: Any, part: str | int, value: Any) -> None:
    if isinstance(part, int):
        node.extend([1.0] * (part + 1 - len(node)))
    node[part] = value


def with_values(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with each dotted key of ``values`` set (list entries such as
    ``cls_weight[1]`` replace that entry only, so the other class weights stay the spec's)."""
    out = copy.deepcopy(dict(spec))
    for key, value in values.items():
        set_dotted(out, key, value)
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
