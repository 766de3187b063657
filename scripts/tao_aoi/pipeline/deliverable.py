"""Choose the deliverable among every complete candidate and write its inference spec.

Candidates are the iterations whose evaluate committed (baseline, iterN, final_automl), in run
order; the choice is the metric contract's (constraints first, then the contract's direction,
ties to the earlier candidate: metric_contract.pick_best). A Phase 3 result that regressed is
therefore never the deliverable, and best_model.json says so. When at most ``defaults.FEW_PINNING``
samples hold the deliverable's KPI (``analysis/pinning.py``), best_model.json ``limiting`` names
them (score, label-issue flag, a picture in ``limiting_images/``): the report and the final line
lead with it.

Three figures describe the deliverable, and best_model.json keeps each under its own key:
- the contract figure (``metric_result``, ``threshold``): FAR and recall on the KPI set at the
  contract's operating point. The KPI set also chose the weak samples, the stop and this model, so
  it is the optimistic one;
- ``calibrated``: the threshold chosen on the validation set, applied unchanged to the KPI set;
- ``holdout`` (with ``--holdout-csv``): the sealed set no decision saw, scored once here with the
  deliverable at the shipped threshold: what to expect on the line.
``deployment`` is the threshold that ships (``eval_margin`` of the inference spec): the middle of the
gap the contract's operating point sits in, with its margins (analysis/deployment.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tao_aoi import atomic, defaults
from tao_aoi.analysis import metric_contract
from tao_aoi.errors import UserError
from tao_aoi.layout import Results
from tao_aoi.state import deft_state, run_lock
from tao_aoi.tao import train_spec

RULE = "constraints first, then the contract's direction, ties to the earlier candidate"


def choose(st: dict) -> tuple[str, list[dict]]:
    contract = st["metric_contract"]
    cands = deft_state.candidates(st)
    if not cands:
        raise UserError("no complete candidate yet (no evaluate committed); run the baseline train and evaluate first")
    best = metric_contract.pick_best(contract, cands)
    if best is None:
        raise UserError("no candidate has a finite metric value; check the evaluate outputs (metric_result.json)")
    table = []
    for label, res in cands:
        res = res or {}
        table.append({"iteration": label, "value": res.get("value"), "threshold": res.get("threshold"),
                      "passed": res.get("passed"),
                      "feasible": not metric_contract.constraint_failures(contract, res),
                      "chosen": label == best})
    return best, table


def inference_spec(training_spec: dict, checkpoint: str, threshold: float | None) -> dict:
    """A TAO-shaped inference spec from the winner's effective training spec."""
    spec = {k: v for k, v in training_spec.items() if k not in ("train", "automl")}
    classify = dict(train_spec.get(training_spec, "dataset.classify", {}) or {})
    for key in ("train_dataset", "validation_dataset", "test_dataset"):
        classify.pop(key, None)
    classify["infer_dataset"] = {"csv_path": "", "images_dir": ""}
    spec["dataset"] = {**(training_spec.get("dataset") or {}), "classify": classify}
    spec["inference"] = {"checkpoint": checkpoint, "results_dir": "", "batch_size": 1}
    if threshold is not None:
        train_spec.set_dotted(spec, "model.classify.eval_margin", float(threshold))
    return spec


def held_by(R: Results, st: dict, label: str) -> dict | None:
    """The deliverable's holding samples (``pinning.entry`` plus the samples, flags and pictures), from its
    KPI inference at the contract's recall target; None when none holds it (or the contract is not at a
    recall target)."""
    import numpy as np

    from tao_aoi.analysis import gap_analysis, kpi, label_noise, limiting, pinning

    point = st["metric_contract"].get("operating_point") or {}
    inference = R.stage_dir(label, "evaluate") / "inference.csv"
    if point.get("name") != "recall_pct" or not inference.is_file():
        return None
    try:
        cols, scores, positive = kpi.read_inference_columns(inference)
    except UserError:  # advisory: an unreadable scored set never blocks choosing the deliverable
        return None
    lim = limiting.find(scores, positive, float(point["target"]) / 100.0, defaults.FEW_PINNING)
    far_fixed = lim.far_if_fixed()
    listed = [{"far_if_fixed": float(far_fixed[j])} for j in range(len(lim.rows))]
    entry = pinning.entry({"far": lim.far}, listed)
    if entry is None:
        return None
    issue, _ = label_noise.find(scores, positive)
    spec = train_spec.load(st["config"]["train_spec"])
    lights, ext = train_spec.lights(spec), train_spec.image_ext(spec)
    entry["samples_holding"] = []
    with atomic.atomic_dir(R.root / pinning.IMAGES_DIR) as tmp:
        for j, r in enumerate(lim.rows[:entry["samples"]].tolist()):
            row = {k: v[r] for k, v in cols.items()}
            name = gap_analysis.limiting_image_name(j + 1, row)
            gap_analysis.render_thumbnail(row, st["config"]["images_root"], lights, ext, tmp / name)
            entry["samples_holding"].append({
                "rank": j + 1, "label": str(row["label"]), "input_path": str(row["input_path"]),
                "object_name": str(row["object_name"]), "siamese_score": float(scores[r]),
                "far_if_fixed": float(far_fixed[j]), "label_issue": bool(np.asarray(issue)[r]),
                "image": f"{pinning.IMAGES_DIR}/{name}"})
    entry["kpi_csv"] = st["config"]["kpi_csv"]
    return entry


def prepare(results_dir: str | Path) -> dict:
    with run_lock.hold(results_dir):  # best_model.json is part of the run: one writer at a time
        return _prepare(results_dir)


def _prepare(results_dir: str | Path) -> dict:
    R = Results.at(results_dir)
    st = deft_state.load(R.root)
    best, table = choose(st)
    rec = st["iterations"][best]
    ckpt = rec["artifacts"].get("checkpoint")
    spec_path = rec["artifacts"].get("training_spec") or st["config"]["train_spec"]
    if not ckpt or not Path(ckpt).is_file():
        raise UserError(f"the chosen iteration {best}'s checkpoint {ckpt} is missing; it must stay in the results folder")
    result = rec["metric_result"]
    figures = shipped_figures(R, st, best, rec)
    note = None
    if "final_automl" in st["iterations"] and best != "final_automl":
        fa = st["iterations"]["final_automl"].get("metric_result") or {}
        from tao_aoi import fmt

        unit = st["metric_contract"].get("unit", "")
        mine, theirs = fa.get("value"), result.get("value")
        note = (f"Phase 3 (final_automl) scored {fmt.distinct(mine, [theirs])}{unit} vs {best}'s "
                f"{fmt.distinct(theirs, [mine])}{unit}: it did not "
                f"improve on the contract, so {best} stays the deliverable")
    model = {
        "iteration": best,
        "checkpoint": ckpt,
        "threshold": result.get("threshold"),
        "metric_contract": st["metric_contract"],
        "metric_result": result,
        "passed": result.get("passed"),
        "training_spec": spec_path,
        "backend": st["config"]["backend"],
        "images_root": st["config"]["images_root"],
        "selection_rule": RULE,
        "candidates": table,
        "phase3_note": note,
        **figures,
        "limiting": held_by(R, st, best),
    }
    spec = inference_spec(train_spec.load(spec_path), ckpt, figures["deployment"]["threshold"])
    atomic.write_text(R.inference_spec, train_spec.dump(spec))
    atomic.write_json(R.best_model, model)
    return model


# --------------------------------------------------------------------------- the shipped figures


def _metric_file(rec: dict) -> dict:
    """The winner's full metric_result.json (the state keeps a summary of it)."""
    path = (rec.get("metric_result") or {}).get("evidence_path") or rec["artifacts"].get("metric_result")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def shipped_figures(R: Results, st: dict, best: str, rec: dict) -> dict[str, Any]:
    """deployment, calibrated and holdout of the deliverable ``best`` (best_model.json keys)."""
    from tao_aoi.analysis import deployment, kpi

    inference_csv = rec["artifacts"].get("inference_csv")
    if not inference_csv or not Path(inference_csv).is_file():
        raise UserError(f"the chosen iteration {best}'s inference.csv {inference_csv} is missing; it must stay in the "
                        f"results folder (the shipped threshold is placed on its scores)")
    point = st["metric_contract"]["operating_point"]
    _, scores, positive = kpi.read_inference_columns(inference_csv)
    op = kpi.operating_point(scores, positive, point["name"], float(point["target"]))
    dep = deployment.ship(scores, positive, op.threshold)
    dep["warning"] = deployment.margin_warning(dep)
    full = _metric_file(rec)
    calibrated = full.get("calibrated") or (rec.get("metric_result") or {}).get("calibrated")
    out: dict[str, Any] = {"deployment": dep, "calibrated": calibrated, "resolution_note": full.get("resolution_note"),
                           "holdout": holdout_figures(R, st, best, dep["threshold"])}
    return out


def holdout_figures(R: Results, st: dict, best: str, threshold: float) -> dict[str, Any] | None:
    """The sealed holdout at the shipped threshold (None without --holdout-csv)."""
    holdout_csv = st["config"].get("holdout_csv")
    if not holdout_csv:
        return None
    from tao_aoi.analysis import binomial, kpi
    from tao_aoi.data import changenet_csv

    scored = R.holdout(best) / "inference.csv"
    if not scored.is_file():
        raise UserError(f"{scored} does not exist: score the holdout set with the deliverable first (infer.py --csv "
                        f"{holdout_csv} --checkpoint <{best}'s best.ckpt> --output-dir {scored.parent}; "
                        f"next_stage.py prints the line)")
    cols, scores, positive = kpi.read_inference_columns(scored)
    given = changenet_csv.read_columns(holdout_csv, what="holdout CSV")
    if len(given["label"]) != scores.size:
        raise UserError(f"{scored} has {scores.size} rows but the holdout CSV {holdout_csv} has {len(given['label'])}; "
                        f"score the whole holdout set again into a fresh folder")
    p = kpi.at_threshold(scores, positive, threshold)
    return {"far_pct": p.far_pct, "recall_pct": p.recall_pct, "threshold": float(threshold), "rows": int(scores.size),
            "n_pass": p.n_pass, "n_defect": p.n_defect, "counts": {"tp": p.tp, "fp": p.fp, "tn": p.tn, "fn": p.fn},
            **binomial.far_figures(p.fp, p.n_pass), **binomial.recall_figures(p.tp, p.n_defect),
            "iteration": best, "holdout_csv": str(holdout_csv), "inference_csv": str(scored)}
