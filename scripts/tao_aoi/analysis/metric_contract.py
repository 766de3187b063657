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

# metric name -> (canonical name, display name, unit). Names are matched case-insensitively with
# spaces, hyphens and underscores treated alike ("false-alarm rate" = "false_alarm_rate").
_METRICS = {
    "far": ("far_pct", "FAR", "%"),
    "far_pct": ("far_pct", "FAR", "%"),
    "false_alarm_rate": ("far_pct", "FAR", "%"),
    "false_alarms": ("far_pct", "FAR", "%"),
    "false_call_rate": ("far_pct", "FAR", "%"),   # the AOI line's usual name
    "false_calls": ("far_pct", "FAR", "%"),
    "false_positive_rate": ("far_pct", "FAR", "%"),
    "fpr": ("far_pct", "FAR", "%"),
    "recall": ("recall_pct", "Recall", "%"),
    "recall_pct": ("recall_pct", "Recall", "%"),
    "defect_recall": ("recall_pct", "Recall", "%"),
    "detection_rate": ("recall_pct", "Recall", "%"),
    "tpr": ("recall_pct", "Recall", "%"),
    "sensitivity": ("recall_pct", "Recall", "%"),
    "precision": ("precision_pct", "Precision", "%"),
    "precision_pct": ("precision_pct", "Precision", "%"),
    "f1": ("f1", "F1", ""),
    "f1_score": ("f1", "F1", ""),
}
# Symbols and the words people write for them; "=" or nothing ("at 100% recall") pins an operating point.
_OPS = {
    "<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "=", "≤": "<=", "≥": ">=", "=<": "<=", "=>": ">=",
    "below": "<", "under": "<", "less than": "<", "lower than": "<", "smaller than": "<",
    "at most": "<=", "no more than": "<=", "not more than": "<=", "not above": "<=", "not exceeding": "<=",
    "max": "<=", "maximum": "<=", "up to": "<=",
    "above": ">", "over": ">", "more than": ">", "greater than": ">", "higher than": ">",
    "at least": ">=", "no less than": ">=", "not less than": ">=", "not below": ">=", "min": ">=", "minimum": ">=",
    "": "=",
}
# Filler between a metric and its bound: "FAR of at most 0.1%", "recall must be 100%".
_FILLER = re.compile(r"\b(?:of|is|must be|should be|to be|be|a|an|the)\b", re.IGNORECASE)
_OP_RE = "|".join(sorted((re.escape(k) for k in _OPS if k), key=len, reverse=True))
_NUM_RE = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_UNIT_RE = r"(?:%|\s*percent\b|\s*pct\b)?"
# "FAR < 0.1%", "FAR below 0.1 percent", "recall 100%", "recall of 100%"
_METRIC_FIRST = re.compile(
    rf"^\s*(?P<metric>[a-z][a-z0-9_ -]*?)\s*(?P<op>{_OP_RE})?\s*(?P<num>{_NUM_RE})\s*(?P<unit>{_UNIT_RE})\s*$",
    re.IGNORECASE)
# "100% recall", "at least 99.5% recall"
_NUMBER_FIRST = re.compile(
    rf"^\s*(?P<op>{_OP_RE})?\s*(?P<num>{_NUM_RE})\s*(?P<unit>{_UNIT_RE})\s*(?P<metric>[a-z][a-z0-9_ -]*?)\s*$",
    re.IGNORECASE)
# The operating point follows "at" (not "at least/most"), "@", "with", "when", "while" or "for".
_AT = re.compile(r"\s+at\s+(?!least\b|most\b)|\s*@\s*|\s+(?:with|when|while|for)\s+|\s*;\s*", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+|\s*,\s*", re.IGNORECASE)

MINIMIZE = {"<", "<="}
OPERATING_POINT_METRICS = {"recall_pct", "far_pct"}


def _metric_key(raw: str) -> str:
    return re.sub(r"[\s_-]+", "_", raw.strip().lower())


def _numbers(text: str) -> list[str]:
    return re.findall(_NUM_RE, text)


def _example(whole: str) -> str:
    """An example in the canonical form that keeps the user's own numbers where it can."""
    nums = _numbers(whole)
    first = nums[0] if nums else "0.1"
    second = nums[1] if len(nums) > 1 else "100"
    return f"FAR < {first}% at Recall={second}%"


def _match(text: str):
    text = _FILLER.sub(" ", text)
    for rx in (_METRIC_FIRST, _NUMBER_FIRST):
        m = rx.match(text)
        if m and _metric_key(m["metric"]) in _METRICS:
            return m
    return _METRIC_FIRST.match(text) or _NUMBER_FIRST.match(text)


def _clause(text: str, whole: str, *, constraint: bool) -> dict[str, Any]:
    m = _match(text)
    if not m:
        raise UserError(f"KPI target {whole!r}: cannot read {text.strip()!r}; write it as e.g. '{_example(whole)}'")
    key = _metric_key(m["metric"])
    if key not in _METRICS:
        known = ", ".join(sorted({v[1] for v in _METRICS.values()}))
        raise UserError(f"KPI target {whole!r}: unknown metric {m['metric'].strip()!r}; use one of {known} "
                        f"(e.g. '{_example(whole)}')")
    name, display, unit = _METRICS[key]
    op = _OPS[" ".join((m["op"] or "").lower().split())]
    target = float(m["num"])
    percent = bool((m["unit"] or "").strip())
    if not math.isfinite(target):
        raise UserError(f"KPI target {whole!r}: {display} {m['num']} is not a number")
    if op == "=":
        if not constraint:
            raise UserError(f"KPI target {whole!r}: the main clause needs a bound (<, <=, >, >=, below, at most, "
                            f"...), e.g. '{_example(whole)}'")
        # "at Recall=100%" pins an operating point: at least that recall / at most that FAR.
        op = "<=" if name == "far_pct" else ">="
    clause = {"name": name, "display_name": display, "operator": op, "target": target, "unit": unit}
    if unit == "%" and not percent:
        clause["bare"] = m["num"]  # parse_kpi_target refuses it, naming every bare number at once
        return clause
    if unit == "" and percent:
        raise UserError(f"KPI target {whole!r}: {display} is a ratio in [0, 1], not a percentage; did you mean "
                        f"{display} {op} {target / 100:g}?")
    if unit == "%" and not 0.0 <= target <= 100.0:
        raise UserError(f"KPI target {whole!r}: {display} must be between 0% and 100%, got {m['num']}%")
    if name in ("recall_pct", "precision_pct") and 0.0 < target <= 1.0:
        # "Recall=1.0%" is a fraction with a % sign added far more often than a 1% target.
        raise UserError(f"KPI target {whole!r}: {display} {m['num']}% is almost certainly a fraction with a % sign; "
                        f"did you mean {target * 100:g}% ({m['num']} as a fraction)?")
    return clause


def _bare_number_error(whole: str, clauses: list[dict[str, Any]]) -> UserError:
    """'did you mean 0.1% (0.001 as a fraction)?' naming each bare number, with the whole target rewritten."""
    notes, fixed = [], []
    for c in clauses:
        c = dict(c)
        raw = c.pop("bare", None)
        if raw is not None:
            v = float(raw)
            c["target"] = v * 100 if 0.0 < v <= 1.0 else v
            notes.append(f"{c['target']:g}% ({raw} as a fraction)" if 0.0 < v <= 1.0 else f"{raw}%")
        fixed.append(c)
    suggestion = render({**fixed[0], "constraints": fixed[1:]})
    return UserError(f"KPI target {whole!r}: a number without % is never reinterpreted; did you mean "
                     f"{', '.join(notes)}, i.e. '{suggestion}'? Write percentages with a % sign")


def parse_kpi_target(text: str) -> dict[str, Any]:
    """KPI text -> contract. Many phrasings, one meaning; a bare number is refused, never guessed."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("KPI target is empty; pass e.g. --kpi-target 'FAR < 0.1% at Recall=100%'")
    parts = _AT.split(text.strip(), maxsplit=1)
    primary = _clause(parts[0], text, constraint=False)
    constraints: list[dict[str, Any]] = []
    if len(parts) == 2:
        for piece in _AND.split(parts[1]):
            if piece.strip():
                constraints.append(_clause(piece, text, constraint=True))
    if any("bare" in c for c in (primary, *constraints)):
        raise _bare_number_error(text, [primary, *constraints])
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
            f"{primary['display_name']}), e.g. '{_example(text)}'"
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


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two contracts mean the same thing, however their text was written."""
    return render(a) == render(b)


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
