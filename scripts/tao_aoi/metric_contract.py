"""The metric contract: KPI text -> {name, operator, target, unit, constraints}; pass/fail; best pick.

``FAR < 0.1% at Recall=100%`` means: choose the operating threshold where recall >= 100%, then
FAR there must be < 0.1%. ``recall >= 99.5% at FAR <= 1%`` means: choose the threshold with the
highest recall whose FAR <= 1%, then recall must be >= 99.5%. The first ``at`` clause is the
operating point; ``passed`` is always recomputed from the contract, never trusted from a file.
Pure Python on purpose: state scripts import it.
"""
from __future__ import annotations

import math
import re
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Iterable, Mapping, Sequence

from tao_aoi.errors import UserError

# metric name -> (canonical name, display name, unit)
_METRICS = {
    "far": ("far_pct", "FAR", "%"),
    "far_pct": ("far_pct", "FAR", "%"),
    "false_alarm_rate": ("far_pct", "FAR", "%"),
    "fpr": ("far_pct", "FAR", "%"),
    "recall": ("recall_pct", "Recall", "%"),
    "recall_pct": ("recall_pct", "Recall", "%"),
    "tpr": ("recall_pct", "Recall", "%"),
    "sensitivity": ("recall_pct", "Recall", "%"),
    "precision": ("precision_pct", "Precision", "%"),
    "precision_pct": ("precision_pct", "Precision", "%"),
    "f1": ("f1", "F1", ""),
}
_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "=", "≤": "<=", "≥": ">="}
_CLAUSE = re.compile(
    r"^\s*(?P<metric>[A-Za-z][A-Za-z0-9_ ]*?)\s*(?P<op><=|>=|==|<|>|=|≤|≥)\s*"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>%?)\s*$"
)
_AT = re.compile(r"\s+at\s+|\s*@\s*", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+|\s*,\s*", re.IGNORECASE)

MINIMIZE = {"<", "<="}
OPERATING_POINT_METRICS = {"recall_pct", "far_pct"}


def _clause(text: str, whole: str, *, constraint: bool) -> dict[str, Any]:
    m = _CLAUSE.match(text)
    if not m:
        raise UserError(
            f"KPI target {whole!r}: cannot read {text.strip()!r}; write e.g. 'FAR < 0.1% at Recall=100%'"
        )
    key = m["metric"].strip().lower().replace(" ", "_")
    if key not in _METRICS:
        known = ", ".join(sorted({v[1] for v in _METRICS.values()}))
        raise UserError(f"KPI target {whole!r}: unknown metric {m['metric'].strip()!r}; use one of {known}")
    name, display, unit = _METRICS[key]
    op = _OPS[m["op"]]
    target = float(m["num"])
    if unit == "%" and m["unit"] != "%":
        raise UserError(f"KPI target {whole!r}: write {display} as a percentage with a % sign, e.g. {display} {m['op']} {m['num']}%")
    if unit == "" and m["unit"] == "%":
        raise UserError(f"KPI target {whole!r}: {display} is a ratio in [0, 1], drop the % sign")
    if unit == "%" and not 0.0 <= target <= 100.0:
        raise UserError(f"KPI target {whole!r}: {display} must be between 0% and 100%, got {target}%")
    if op == "=":
        if not constraint:
            raise UserError(f"KPI target {whole!r}: the main clause needs <, <=, > or >=, not '='")
        # "at Recall=100%" pins an operating point: at least that recall / at most that FAR.
        op = "<=" if name == "far_pct" else ">="
    return {"name": name, "display_name": display, "operator": op, "target": target, "unit": unit}


def parse_kpi_target(text: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise UserError("KPI target is empty; pass e.g. --kpi-target 'FAR < 0.1% at Recall=100%'")
    parts = _AT.split(text.strip(), maxsplit=1)
    primary = _clause(parts[0], text, constraint=False)
    constraints: list[dict[str, Any]] = []
    if len(parts) == 2:
        for piece in _AND.split(parts[1]):
            if piece.strip():
                constraints.append(_clause(piece, text, constraint=True))
    if not constraints:
        if primary["name"] == "far_pct":
            constraints.append({"name": "recall_pct", "display_name": "Recall", "operator": ">=",
                                "target": 100.0, "unit": "%"})
        else:
            raise UserError(
                f"KPI target {text!r}: say at which operating point, e.g. '{primary['display_name']} "
                f"{primary['operator']} {primary['target']:g}{primary['unit']} at FAR <= 1%'"
            )
    point = constraints[0]
    if point["name"] not in OPERATING_POINT_METRICS or point["name"] == primary["name"]:
        raise UserError(
            f"KPI target {text!r}: the first 'at' clause must fix Recall or FAR (the other metric than "
            f"{primary['display_name']}), e.g. 'at Recall=100%'"
        )
    return {
        "text": text.strip(),
        "name": primary["name"],
        "display_name": primary["display_name"],
        "operator": primary["operator"],
        "target": primary["target"],
        "unit": primary["unit"],
        "constraints": constraints,
        "operating_point": {"name": point["name"], "target": point["target"]},
        "direction": "minimize" if primary["operator"] in MINIMIZE else "maximize",
    }


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def compare(value: Any, op: str, target: float) -> bool:
    if not _finite(value):
        return False
    if op == "<":
        return value < target
    if op == "<=":
        return value <= target
    if op == ">":
        return value > target
    if op == ">=":
        return value >= target
    raise ValueError(f"unknown operator {op!r}")


def metric_value(result: Mapping[str, Any], name: str) -> Any:
    """Read a metric from a metric_result.json (top-level key, or the contract's value/constraints)."""
    if name in result:
        return result[name]
    if result.get("name") == name:
        return result.get("value")
    return (result.get("constraints") or {}).get(name)


def constraint_failures(contract: Mapping[str, Any], result: Mapping[str, Any]) -> list[str]:
    out = []
    for c in contract.get("constraints", []):
        v = metric_value(result, c["name"])
        if not compare(v, c["operator"], c["target"]):
            out.append(f"{c['name']}={v!r} (needs {c['operator']} {c['target']:g})")
    return out


def evaluate(contract: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Recompute pass/fail; returns (passed, reasons it failed)."""
    failures = constraint_failures(contract, result)
    v = metric_value(result, contract["name"])
    if not compare(v, contract["operator"], contract["target"]):
        failures.insert(0, f"{contract['name']}={v!r} (needs {contract['operator']} {contract['target']:g})")
    return (not failures, failures)


def sort_key(contract: Mapping[str, Any], result: Mapping[str, Any] | None, order: int) -> tuple:
    """Constraints first, then the primary metric in the contract's direction, ties to the earlier."""
    if not result:
        return (2, math.inf, order)
    v = metric_value(result, contract["name"])
    if not _finite(v):
        return (2, math.inf, order)
    feasible = 0 if not constraint_failures(contract, result) else 1
    signed = v if contract["operator"] in MINIMIZE else -v
    return (feasible, signed, order)


def pick_best(contract: Mapping[str, Any], candidates: Sequence[tuple[str, Mapping[str, Any] | None]]) -> str | None:
    """Label of the best candidate; candidates come in run order (baseline, iter1.., final_automl)."""
    scored = [(sort_key(contract, res, i), label) for i, (label, res) in enumerate(candidates)]
    scored = [s for s in scored if s[0][0] < 2]
    return min(scored)[1] if scored else None


def render(contract: Mapping[str, Any]) -> str:
    def one(c: Mapping[str, Any]) -> str:
        return f"{c.get('display_name', c['name'])} {c['operator']} {c['target']:g}{c.get('unit', '')}"

    cons = " and ".join(one(c) for c in contract.get("constraints", []))
    return one(contract) + (f" at {cons}" if cons else "")


def better(contract: Mapping[str, Any], a: float, b: float) -> bool:
    """True if metric value a is strictly better than b under the contract's direction."""
    return a < b if contract["operator"] in MINIMIZE else a > b


def labels_in_order(labels: Iterable[str]) -> list[str]:
    from tao_aoi.layout import iteration_number

    return sorted(labels, key=iteration_number)
