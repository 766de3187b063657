"""A scored set at an operating point, judged by the metric contract: what metric_result.json holds.

The one place an ``inference.csv`` becomes FAR, recall and the rest at the contract's operating point
(``kpi`` does the arithmetic, ``metric_contract`` the verdict). ``analyze_kpi.py``, which every
evaluate stage runs, calls it, so one set of scores has one set of figures.
"""
from __future__ import annotations

from typing import Any

from tao_aoi import labels
from tao_aoi.analysis import kpi, metric_contract

RESULT_NAME = "metric_result.json"
REPORTED_RECALLS = (100.0, 99.9, 99.5, 99.0, 95.0)


def analyze(csv_path: str, *, point_name: str, point_target: float, contract: dict[str, Any] | None,
            pass_label: str = labels.PASS) -> dict[str, Any]:
    df, scores, positive = kpi.read_inference(csv_path, pass_label)
    point = kpi.operating_point(scores, positive, point_name, point_target)
    result: dict[str, Any] = point.as_dict()
    result["per_label"] = kpi.per_label(df["label"], positive, scores > point.threshold)
    result["operating_point"] = {"name": point_name, "target": point_target}
    result["far_at_recall_pct"] = kpi.far_at_recalls(scores, positive, REPORTED_RECALLS)
    result["pass_label"] = labels.canonical_label(pass_label)
    result["inference_csv"] = str(csv_path)
    if contract is None:
        primary = "recall_pct" if point_name == "far_pct" else "far_pct"
        result.update(name=primary, unit="%", value=result[primary], constraints={point_name: result[point_name]})
        return result
    name = contract["name"]
    result.update(
        name=name, unit=contract["unit"], value=metric_contract.metric_value(result, name),
        constraints={c["name"]: metric_contract.metric_value(result, c["name"]) for c in contract["constraints"]},
        kpi_target=contract["text"],
    )
    passed, failures = metric_contract.evaluate(contract, result)
    result.update(passed=passed, failures=failures)
    return result
