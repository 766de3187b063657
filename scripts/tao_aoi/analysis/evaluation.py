"""A scored set at an operating point, judged by the metric contract: what metric_result.json holds.

The one place an ``inference.csv`` becomes FAR, recall and the rest at the contract's operating point
(``kpi`` does the arithmetic, ``metric_contract`` the verdict). ``analyze_kpi.py``, which every
evaluate stage runs, calls it, so one set of scores has one set of figures.
"""
from __future__ import annotations

from typing import Any

from tao_aoi import labels
from tao_aoi.analysis import binomial, deployment, kpi, metric_contract

RESULT_NAME = "metric_result.json"
REPORTED_RECALLS = (100.0, 99.9, 99.5, 99.0, 95.0)


def analyze(csv_path: str, *, point_name: str, point_target: float, contract: dict[str, Any] | None,
            pass_label: str = labels.PASS, calibration_csv: str | None = None) -> dict[str, Any]:
    """metric_result.json. ``calibration_csv``: the same model's inference.csv on the validation set, for
    ``calibrated`` (the threshold chosen there at the same operating point, applied to this set)."""
    df, scores, positive = kpi.read_inference(csv_path, pass_label)
    point = kpi.operating_point(scores, positive, point_name, point_target)
    result: dict[str, Any] = point.as_dict()
    result.update(binomial.far_figures(point.fp, point.n_pass))
    result.update(binomial.recall_figures(point.tp, point.n_defect))
    result["deployment"] = deployment.ship(scores, positive, point.threshold)
    if calibration_csv:
        from tao_aoi.analysis import calibration

        vdf, vscores, vpositive = kpi.read_inference(calibration_csv, pass_label)
        result["calibrated"] = calibration.calibrate(
            vscores, vpositive, vdf["label"].to_numpy(), scores, positive, df["label"].to_numpy(), point_name,
            point_target, validation_csv=str(calibration_csv))
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
    if name == "far_pct":
        result["resolution_note"] = binomial.resolution_note(contract["operator"], contract["target"], point.n_pass,
                                                             "the KPI set")
    result.update(
        name=name, unit=contract["unit"], value=metric_contract.metric_value(result, name),
        constraints={c["name"]: metric_contract.metric_value(result, c["name"]) for c in contract["constraints"]},
        kpi_target=contract["text"],
    )
    passed, failures = metric_contract.evaluate(contract, result)
    result.update(passed=passed, failures=failures)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What analyze_kpi.py prints after the KPI line: the FAR's uncertainty, the calibrated KPI, the
    threshold to ship (recall and FAR in percent, thresholds exact)."""
    from tao_aoi import fmt

    lo, hi = result["far_ci95_pct"]
    out = [f"FAR resolution {fmt.num(result['far_resolution_pct'])}% (one of {result['n_pass']} PASS rows); 95% "
           f"interval {fmt.num(lo)}..{fmt.num(hi)}%"]
    if result.get("resolution_note"):
        out.append(f"note: {result['resolution_note']}")
    cal = result.get("calibrated")
    if cal:
        out.append(f"calibrated: threshold {fmt.exact(cal['threshold'])} chosen on the validation set gives FAR "
                   f"{fmt.num(cal['kpi']['far_pct'])}% at recall {fmt.num(cal['kpi']['recall_pct'])}% here")
        if cal.get("note"):
            out.append(f"note: {cal['note']}")
    dep = result.get("deployment")
    if dep:
        m = dep["margin"]
        out.append(f"ship threshold {fmt.exact(dep['threshold'])} ({dep['placed']}; margin to the nearest defect "
                   f"{fmt.num(m['to_defect'])}, to the nearest PASS {fmt.num(m['to_pass'])})")
        warning = deployment.margin_warning(dep)
        if warning:
            out.append(f"warning: {warning}")
    return out
