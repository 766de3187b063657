"""The report's view model: what each section shows, computed from the run's files (sources.py).

The best iteration is the state's own answer (``best_iteration`` once finalized, otherwise
``metric_contract.pick_best`` over ``state.candidates``), the rule prepare_inference_spec.py uses,
so the report can never crown a different model than best_model.json (the anchor's B9).
Values stay raw here except where the text depends on the neighbours (``fmt.distinct``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tao_aoi import fmt
from tao_aoi.analysis import metric_contract
from tao_aoi.automl import ties
from tao_aoi.layout import Results, iteration_number
from tao_aoi.report import sources, svg
from tao_aoi.report.sources import Doc
from tao_aoi.state import deft_state as state_mod
from tao_aoi.state import stages

SYNTHETIC_WARN_SHARE = 0.5   # the anchor flagged a synthetic share above 50% of the training set
EVENTS_SHOWN = 300
PARAM_COLUMNS = 12
TOP_TRIALS = 10
NO_PROVENANCE = "rows (no provenance)"


def phase_name(label: str, record: Mapping[str, Any] | None = None) -> str:
    if label == "baseline":
        return "Phase 1 winner (baseline)" if (record or {}).get("source") == "automl_phase1" else "Baseline"
    if label == "final_automl":
        return "Phase 3 (AutoML refinement)"
    return f"DEFT iteration {iteration_number(label)}"


def cell(v: Any) -> str:
    """A value of a generic table as text (numbers without separators, structures as compact JSON)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return fmt.num(v, 6)
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)[:300]
    return str(v)


def _interval(ci: Any) -> str:
    return f"{fmt.num(ci[0])}-{fmt.num(ci[1])}%" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def _far_recall(d: Mapping[str, Any]) -> str:
    """FAR (with its 95% interval and resolution when known) at a recall, both in percent."""
    ci = _interval(d.get("far_ci95_pct"))
    res = d.get("far_resolution_pct")
    extra = ", ".join(x for x in (f"95% interval {ci}" if ci else "",
                                  f"one false alarm = {fmt.num(res)}%" if fmt.is_number(res) else "") if x)
    return (f"FAR {fmt.num(d.get('far_pct'))}%" + (f" ({extra})" if extra else "")
            + f" at recall {fmt.num(d.get('recall_pct'))}%")


def _resolution_note(contract: Mapping[str, Any] | None, mr: Mapping[str, Any]) -> str | None:
    from tao_aoi.analysis import binomial

    n_pass = mr.get("n_pass")
    if not contract or contract.get("name") != "far_pct" or not isinstance(n_pass, int) or n_pass < 1:
        return None
    return binomial.resolution_note(contract["operator"], contract["target"], n_pass, "the KPI set")


def _config_cell(key: str, value: Any) -> str:
    """A config value as shown: recall in percent (the state keeps the ratio), no holdout said so."""
    if key == "min_recall" and fmt.is_number(value):
        return f"{fmt.num(100 * value)}%"
    if key == "holdout_csv" and not value:
        return "none (the KPI figure is measured on the set that chose the deliverable)"
    return cell(value)


def trustworthiness_cells(mr: Mapping[str, Any]) -> dict[str, str]:
    """The trajectory's extra columns for one candidate: its FAR's 95% interval and the calibrated KPI."""
    cal = (mr.get("calibrated") or {}).get("kpi") or {}
    return {"far_ci": _interval(mr.get("far_ci95_pct")),
            "calibrated": (f"{fmt.num(cal.get('far_pct'))}% / {fmt.num(cal.get('recall_pct'))}%" if cal else "n/a")}


def shipped_rows(bm: Mapping[str, Any]) -> list[tuple[str, str]]:
    """best_model.json's shipped threshold, margins and the three figures' sources, for the deliverable table."""
    dep, ho = bm.get("deployment") or {}, bm.get("holdout")
    m = dep.get("margin") or {}
    rows = [("threshold that ships (eval_margin)", fmt.exact(dep.get("threshold"))),
            ("margin to the nearest defect / PASS", f"{fmt.num(m.get('to_defect'))} / {fmt.num(m.get('to_pass'))}"),
            ("how it was placed", cell(dep.get("rule")))] if dep else []
    if dep.get("moved_gaps"):
        rows.append(("moved below the operating point", f"{dep['moved_gaps']} gap(s): KPI "
                     + _far_recall(dep.get("kpi") or {})))
    rows.append(("holdout", _far_recall(ho) + f" on {ho.get('rows')} sealed rows ({cell(ho.get('holdout_csv'))})"
                 if ho else "none (the KPI figure was measured on the set that chose this model)"))
    return rows


def table(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, first: str | None = None,
          keys: Sequence[Any] | None = None) -> dict[str, Any]:
    """{columns, rows} from dicts; ``first`` names an extra leading column filled from ``keys``."""
    cols = list(columns or dict.fromkeys(k for r in records for k in r))
    rows = [[cell(r.get(c)) for c in cols] for r in records]
    if first is not None:
        cols = [first] + cols
        rows = [[cell(k)] + row for k, row in zip(keys or [], rows)]
    return {"columns": cols, "rows": rows}


def csv_table(data: sources.Csv, limit: int = sources.TABLE_ROWS) -> dict[str, Any]:
    return {"columns": data.columns, "rows": data.head(limit), "total": len(data), "shown": min(limit, len(data))}


def per_label_counts(doc: Doc) -> dict[str, int]:
    return doc.data.tally("label", canonical=True) if doc.ok and "label" in doc.data.columns else {}


def missing(doc: Doc, what: str, stage_status: str | None) -> str:
    """Why a section has nothing to show."""
    if doc.status == "unreadable":
        return f"{what} unreadable: {doc.path}: {doc.reason}"
    if stage_status == "ok":
        return f"not available: the stage was committed but {doc.path} is missing"
    if stage_status == "error":
        return "the stage failed (see the event log); nothing was written"
    return "not run yet"


def _stage_status(record: Mapping[str, Any] | None, stage: str) -> str | None:
    return (((record or {}).get("stages") or {}).get(stage) or {}).get("status")


# --------------------------------------------------------------------------- model


class Report:
    """Assembles the template context from one results folder."""

    def __init__(self, run: sources.Run, generated_at: str):
        self.run = run
        self.R: Results = run.results
        self.st = run.state
        self.generated_at = generated_at
        self.contract = (self.st or {}).get("metric_contract")
        self.labels = sources.labels_in_run(self.st)
        self.records = (self.st or {}).get("iterations", {})
        self.minimize = (self.contract or {}).get("direction", "minimize") == "minimize"
        self.unit = (self.contract or {}).get("unit", "")
        self.best = self._best()
        self._row_counts: dict[str, Doc] = {}
        self.datasets = {lb: sources.dataset_files(self.R, lb, self.records.get(lb))
                         for lb in self.labels if lb.startswith("iter")}
        self._known_rows = self._known_row_counts()
        self.studies = {phase: sources.automl_study(self.R, phase) for phase, _ in sources.AUTOML_PHASES}

    # ------------------------------------------------------------------ best
    def _best(self) -> str | None:
        if not self.st:
            return None
        if self.st["status"] == "complete" and self.st.get("best_iteration"):
            return self.st["best_iteration"]
        return metric_contract.pick_best(self.contract, state_mod.candidates(self.st))

    def value(self, label: str) -> Any:
        return ((self.records.get(label) or {}).get("metric_result") or {}).get("value")

    def _values(self) -> list[float]:
        vals = [self.value(lb) for lb in self.labels]
        return [v for v in vals if fmt.is_number(v)] + ([self.contract["target"]] if self.contract else [])

    def metric_text(self, v: Any) -> str:
        """The metric with enough digits to differ from the target and every other iteration."""
        return fmt.distinct(v, self._values()) + (self.unit if fmt.is_number(v) else "")

    # ------------------------------------------------------------------ run + banner
    def header(self) -> dict[str, Any]:
        st = self.st or {}
        cfg = st.get("config") or {}
        keys = ("workspace", "backend", "max_iterations", "num_sdg", "top_k_per_label", "top_k_per_target",
                "min_similarity", "min_recall", "sdg_labels", "kpi_csv", "training_csv", "validation_csv", "holdout_csv")
        return {
            "run_id": st.get("run_id") or self.R.root.name,
            "results_dir": str(self.R.root),
            "kpi_target": st.get("kpi_target") or "",
            "contract": metric_contract.render(self.contract) if self.contract else "",
            "status": st.get("status") or "not started",
            "created_at": st.get("created_at") or "", "updated_at": st.get("updated_at") or "",
            "generated_at": self.generated_at,
            "config": [(k, _config_cell(k, cfg.get(k))) for k in keys if k in cfg] + self._config_changes(st)
            + self._budget(),
            "iterations_run": sum(1 for lb in self.labels if lb.startswith("iter")
                                  and self.records[lb].get("status") == "complete"),
            "max_iterations": cfg.get("max_iterations"),
        }

    @staticmethod
    def _config_changes(st: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Options changed when the run resumed (state.reconfigure): old -> new and where each applies."""
        lines = [f"{k} {cell(c.get('from'))} -> {cell(c.get('to'))} from {c.get('applies_from')} (seq {e.get('seq')})"
                 for e in st.get("config_changes") or [] for k, c in (e.get("changes") or {}).items()]
        return [("options changed on resume", "; ".join(lines))] if lines else []

    def _budget(self) -> list[tuple[str, str]]:
        """What --time-limit became when the run started (pipeline_state.json), with its estimate."""
        doc = sources.pipeline_state(self.R)
        budget = doc.data.get("budget") if doc.ok and isinstance(doc.data, dict) else None
        if not isinstance(budget, dict) or "estimate" not in budget:
            return []
        from tao_aoi.pipeline import compute_budget

        try:
            return [("time budget", compute_budget.summary_line(budget))]
        except (KeyError, TypeError, ValueError):  # a hand-edited or older record: show it raw below
            return []

    def passed(self, label: str | None) -> bool:
        """Whether the iteration's evaluation met the contract."""
        return bool(((self.records.get(label) or {}).get("metric_result") or {}).get("passed"))

    def pinned(self) -> dict[str, Any] | None:
        """What the banner leads with when at most ``defaults.FEW_PINNING`` samples hold a KPI that misses
        its target (nothing when it is met): the deliverable's (best_model.json ``limiting``), else the
        best iteration's RCA (metrics.json ``held_by``); each sample with its picture, label-issue flag
        and the commands to relabel or drop it; then how to rerun on the corrected KPI set."""
        from tao_aoi.analysis import pinning

        bm = sources.best_model(self.R)
        held, samples, base, kpi_csv, where = None, [], self.R.root, None, ""
        if (bm.ok and bm.get("passed") is True) or (not bm.ok and self.best and self.passed(self.best)):
            return None  # the target is met: nothing to relabel or drop, the KPI headline says the rest
        if bm.ok and isinstance(bm.data.get("limiting"), Mapping):
            held = bm.data["limiting"]
            samples, kpi_csv, where = held.get("samples_holding") or [], held.get("kpi_csv"), cell(bm.get("iteration"))
        elif self.best:
            m = sources.rca_files(self.R, self.best, self.records.get(self.best))["metrics"]
            if m.ok and isinstance(m.data.get("held_by"), Mapping):
                held = m.data["held_by"]
                samples = (m.data.get("limiting_samples") or [])[:held.get("samples", 0)]
                base, where = self.R.stage_dir(self.best, "rca"), self.best
                kpi_csv = (m.data.get("inputs") or {}).get("kpi_csv")
        if not held or not samples:
            return None
        ps = sources.pipeline_state(self.R)
        options = ps.data.get("options") if ps.ok and isinstance(ps.data, dict) else None
        rerun = pinning.rerun_command(options, str(self.R.root.with_name(self.R.root.name + "_kpi_edited"))) \
            if isinstance(options, dict) else None
        rows = []
        for x in (x for x in samples if isinstance(x, Mapping)):
            uri, problem = sources.image_uri(base / str(x.get("image", "")), self.R.root) if x.get("image") else (None, "")
            rows.append({"name": f"{cell(x.get('label'))} {pinning.sample_name(x)}",
                         "score": fmt.num(x.get("siamese_score"), 4), "flagged": bool(x.get("label_issue")),
                         "flag": "flagged as a possible label error" if x.get("label_issue") else
                         "not flagged as a label error", "image": uri, "image_problem": problem,
                         **pinning.fix_commands(x, kpi_csv)})
        return {"headline": cell(held.get("headline")), "where": where, "samples": rows,
                "note": pinning.rerun_note(rerun)}

    def banner(self) -> dict[str, Any]:
        """The DEFT state's verdict; the three-phase runner's own failure (pipeline_state.json) is added;
        a KPI held by a few samples leads (``pinned``)."""
        out = self._deft_banner()
        out["pinned"] = self.pinned() if self.st else None
        ps = sources.pipeline_state(self.R)
        if ps.get("status") == "failed" and out["kind"] != "stopped":
            stop = f"The pipeline stopped: {cell(ps.get('failure'))}"
            if not self.st:
                return {"kind": "stopped", "headline": "Hard stop before the DEFT loop", "detail": stop, "sub": ""}
            out["sub"] = (out.get("sub", "") + " " + stop).strip()
        return out

    def _deft_banner(self) -> dict[str, Any]:
        st = self.st
        if not st:
            return {"kind": "progress", "headline": "DEFT loop not started",
                    "detail": f"{self.R.state} does not exist yet; AutoML results below, if any."}
        c = self.contract
        target = f"{c['display_name']} {c['operator']} {fmt.num(c['target'])}{c['unit']}"
        best, v = self.best, self.value(self.best) if self.best else None
        best_txt = (f"best {c['display_name']} {self.metric_text(v)} at {best}" if best else "no evaluated iteration yet")
        passed = self.passed(best)
        if st["status"] == "failed":
            f = st.get("failure") or {}
            return {"kind": "stopped", "headline": f"Hard stop at {f.get('iter')}/{f.get('stage')}",
                    "detail": f"{f.get('summary', '')}", "sub": f"{best_txt}; target {target}. Fix the cause and "
                    f"retry {f.get('iter')}/{f.get('stage')} (next_stage.py shows the command)."}
        if st["status"] == "complete":
            if passed:
                return {"kind": "met", "headline": f"KPI met: {target}", "detail": f"{best_txt} (deliverable).",
                        "sub": self._stop_text()}
            return {"kind": "gap", "headline": f"KPI not met: {self._gap_text(v)}", "detail": f"{best_txt} (deliverable).",
                    "sub": self._stop_text()}
        nxt = stages.expected_next(st) or (stages.allowed_next(st) or [None])[0]
        head = "In progress" + (f": next {nxt}" if nxt else "")
        sub = f"target {target}" + ("; the KPI is already met, finalize pending" if passed else "")
        return {"kind": "progress", "headline": head, "detail": best_txt + " so far.", "sub": sub}

    def _gap_text(self, v: Any) -> str:
        c = self.contract
        if not fmt.is_number(v):
            return "no finite metric"
        failing = self.failures((self.records.get(self.best) or {}).get("metric_result") or {})
        if metric_contract.compare(v, c["operator"], c["target"]):
            return "constraints not met: " + "; ".join(failing)
        gap = abs(v - c["target"])
        unit = " pp" if c["unit"] == "%" else ""
        head = f"{fmt.num(gap)}{unit} from the target" if gap else "at the target but not"
        return f"{head} {c['display_name']} {c['operator']} {fmt.num(c['target'])}{c['unit']}"

    def failures(self, result: Mapping[str, Any]) -> list[str]:
        """Each clause of the contract a metric result misses, with the value formatted for reading."""
        out = []
        for c in [self.contract, *self.contract.get("constraints", [])]:
            v = metric_contract.metric_value(result, c["name"])
            if not metric_contract.compare(v, c["operator"], c["target"]):
                shown = fmt.distinct(v, [c["target"]]) + c.get("unit", "") if fmt.is_number(v) else "n/a"
                out.append(f"{c.get('display_name', c['name'])} {shown} (needs {c['operator']} "
                           f"{fmt.num(c['target'])}{c.get('unit', '')})")
        return out

    def _stop_text(self) -> str:
        reason = (self.st or {}).get("stop_reason")
        return {"metric_met": "The loop stopped because the KPI was met.",
                "max_iterations": f"The loop stopped at max_iterations={self.st['config'].get('max_iterations')}.",
                "phase3_registered": "Phase 3 registered; the deliverable is the best of every phase."}.get(reason or "", "")

    # ------------------------------------------------------------------ the three figures (headline)
    def figures(self) -> dict[str, Any]:
        """Contract, calibrated and holdout figures of the deliverable (or the best so far), each said for
        what it is, with the threshold that ships and its margin."""
        if not self.best:
            return {}
        bm = sources.best_model(self.R)
        final = bm.ok and bm.get("iteration") == self.best
        mr = (bm.get("metric_result") if final else None) or (self.records.get(self.best) or {}).get("metric_result") or {}
        cal = (bm.get("calibrated") if final else None) or mr.get("calibrated") or {}
        rows = [("contract figure (KPI set, which also chose this model)", _far_recall(mr))]
        if cal.get("kpi"):
            rows.append(("calibrated (threshold chosen on the validation set, applied unchanged)", _far_recall(cal["kpi"])))
        else:
            rows.append(("calibrated", "not measured (no validation-set scores for this candidate)"))
        holdout = bm.get("holdout") if final else None
        if holdout:
            rows.append((f"holdout ({holdout.get('rows')} sealed rows, shipped threshold): what to expect on the line",
                         _far_recall(holdout)))
        out: dict[str, Any] = {"label": self.best, "final": final, "rows": rows, "notes": []}
        contract = (f"Contract FAR {fmt.num(mr.get('far_pct'))}% at recall {fmt.num(mr.get('recall_pct'))}% on the KPI "
                    f"set")
        out["headline"] = (f"{contract} · holdout FAR {fmt.num(holdout.get('far_pct'))}% at recall "
                           f"{fmt.num(holdout.get('recall_pct'))}% on {holdout.get('rows')} unseen rows: what to expect "
                           f"on the line" if holdout else
                           f"{contract}, the set that also chose this model (no holdout: expect worse on the line)")
        if not holdout:
            out["notes"].append("No holdout: the KPI figure was measured on the set that chose the deliverable, so it is "
                                "optimistic; run_pipeline.py --holdout-csv CSV measures what to expect on the line.")
        note = (bm.get("resolution_note") if final else None) or _resolution_note(self.contract, mr)
        if note:
            out["notes"].append(f"Resolution: {note}.")
        if cal.get("note"):
            out["notes"].append(f"Calibration: {cal['note']}.")
        dep = (bm.get("deployment") if final else None) or {}
        if dep:
            m = dep.get("margin") or {}
            out["ships"] = (f"Ships threshold {fmt.exact(dep.get('threshold'))} (eval_margin): margin "
                            f"{fmt.num(m.get('to_defect'))} to the nearest defect, {fmt.num(m.get('to_pass'))} to the "
                            f"nearest PASS ({dep.get('placed')}).")
            out["warning"] = dep.get("warning")
        return out

    # ------------------------------------------------------------------ trajectory
    def durations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for e in self.run.events:
            if e.get("kind") == "commit" and e.get("iter") in self.records:
                out[e["iter"]] = out.get(e["iter"], 0.0) + float(e.get("duration_sec") or 0.0)
        return out

    def _known_row_counts(self) -> dict[str, int]:
        """Row counts the assembly already reported (combined and previous CSVs), by resolved path."""
        known: dict[str, int] = {}
        for lb, files in self.datasets.items():
            val = files["validation"]
            for path, key in ((self.R.combined_csv(iteration_number(lb)), "combined_rows"),
                              (val.get("previous_csv"), "previous_rows")):
                if path and fmt.is_number(val.get(key)):
                    known[str(Path(path).resolve())] = val.get(key)
        return known

    def training_rows(self, label: str) -> Any:
        """Rows of the CSV the iteration trained on: from the validation reports, else counted once."""
        rec = self.records.get(label) or {}
        if label.startswith("iter"):
            path = str(self.R.combined_csv(iteration_number(label)))
        else:
            path = (rec.get("artifacts") or {}).get("train_csv") or ((self.st or {}).get("config") or {}).get("training_csv")
        if not path:
            return None
        key = str(Path(path).resolve())
        if key in self._known_rows:
            return self._known_rows[key]
        if key not in self._row_counts:
            self._row_counts[key] = sources.row_count(key)
        doc = self._row_counts[key]
        return doc.data if doc.ok else None

    def new_rows(self, label: str) -> dict[str, Any]:
        val = self.datasets.get(label, {}).get("validation")
        by = (val.get("new_by_source") if val else None) or {}
        return {"sdg": by.get("sdg"), "mined": by.get("mined"), "new": val.get("new_rows") if val else None}

    def trajectory(self) -> dict[str, Any]:
        if not self.st:
            return {"rows": [], "chart": None}
        base = self.value("baseline")
        dur = self.durations()
        rows, points, prev = [], [], None
        for lb in self.labels:
            rec = self.records[lb]
            mr = rec.get("metric_result") or {}
            v = mr.get("value")
            new = self.new_rows(lb)
            notes, cls = [], []
            if lb == self.best:
                notes.append("deliverable" if (self.st["status"] == "complete") else "best so far")
                cls.append("best")
            if mr.get("passed"):
                notes.append("KPI met")
            elif mr:
                notes.append("not met: " + "; ".join(self.failures(mr)))
            if fmt.is_number(v) and fmt.is_number(prev) and metric_contract.better(self.contract, prev, v):
                cls.append("regress")
                notes.append("regressed vs the previous phase")
            study = self.studies.get({"baseline": "phase1", "final_automl": "phase3"}.get(lb, ""))
            if study is not None and study.ok and (lb == "final_automl" or rec.get("source") == "automl_phase1"):
                b = study.data["best"]
                notes.append(f"AutoML trial {cell(b['id'])}: {study.data['metric'] or 'objective'} "
                             f"{fmt.num(b['value'])} on the validation set")
            if lb == "final_automl" and fmt.is_number(v) and self.best and self.best != lb:
                notes.append(f"did not improve on the contract; {self.best} stays the deliverable")
            notes += [f"{k} {cell(c.get('from'))} -> {cell(c.get('to'))} from here (changed on resume)"
                      for e in self.st.get("config_changes") or [] for k, c in (e.get("changes") or {}).items()
                      if c.get("applies_from") == lb]
            failure = self.st.get("failure") or {}
            if failure.get("iter") == lb and self.st["status"] == "failed":
                notes.append(f"failed at {failure.get('stage')}: {failure.get('summary')}")
                cls.append("failed")
            elif rec.get("status") != "complete":
                notes.append(f"in progress (last stage done: {rec.get('stage_completed') or 'none'})")
            rows.append({
                "label": lb, "phase": phase_name(lb, rec), "status": rec.get("status"),
                "value": v, "value_text": self.metric_text(v) if fmt.is_number(v) else "n/a",
                "delta": fmt.signed(v - base, self.unit) if fmt.is_number(v) and fmt.is_number(base) and lb != "baseline"
                else ("" if lb == "baseline" else "n/a"),
                "threshold": mr.get("threshold"), "far": mr.get("far_pct"), "recall": mr.get("recall_pct"),
                **trustworthiness_cells(mr),
                "training_rows": self.training_rows(lb), "sdg": new["sdg"], "mined": new["mined"],
                "duration": dur.get(lb), "notes": notes, "cls": " ".join(cls),
            })
            if fmt.is_number(v):
                points.append({"label": lb, "value": float(v), "text": self.metric_text(v), "best": lb == self.best})
                prev = v
        c = self.contract
        chart = svg.trajectory(points, target=c["target"], unit=c["unit"], minimize=self.minimize,
                               target_label=f"target {c['operator']} {fmt.num(c['target'])}{c['unit']}",
                               title=f"{c['display_name']} per phase (KPI set)") if points else None
        return {"rows": rows, "chart": chart, "metric": c["display_name"], "unit": c["unit"]}

    def kpi_detail(self) -> dict[str, Any]:
        """The best iteration's KPI set per label and its FAR at other recall targets (metric_result.json)."""
        if not self.best:
            return {}
        doc = sources.metric_file(self.R, self.best, self.records.get(self.best))
        if not doc.ok:
            return {"label": self.best, "message": missing(doc, "metric_result.json", "ok")}
        per = doc.get("per_label") or {}
        sweep = doc.get("far_at_recall_pct") or {}
        return {"label": self.best,
                "per_label": table([v for v in per.values() if isinstance(v, Mapping)], first="label", keys=list(per),
                                   columns=("total", "misclassified", "missed")),
                "sweep": [(f"recall {k}%", f"FAR {fmt.num(v)}%") for k, v in sweep.items()]}

    # ------------------------------------------------------------------ training-set growth
    def growth(self) -> dict[str, Any]:
        if not self.st:
            return {"rows": [], "chart": None}
        bars, rows, prev_total = [], [], None
        series: list[str] = ["base_train", "sdg", "mined"]
        base_rows = self.training_rows("baseline") if "baseline" in self.records else None
        if fmt.is_number(base_rows):
            bars.append({"label": "baseline", "parts": {"base_train": base_rows}})
            rows.append({"label": "baseline", "total": base_rows, "delta": None, "parts": {"base_train": base_rows},
                         "new": {}, "share": "0%", "warn": False, "problem": ""})
            prev_total = base_rows
        for lb in (x for x in self.labels if x.startswith("iter")):
            files = self.datasets[lb]
            val, comp = files["validation"], files["composition"]
            total = val.get("combined_rows")
            if not val.ok and not comp.ok:
                rows.append({"label": lb, "problem": missing(val, "validation report", _stage_status(self.records[lb], "assemble"))})
                continue
            parts = dict(comp.data) if comp.ok else {}
            for k in parts:
                if k not in series:
                    series.append(k)
            if not fmt.is_number(total):
                total = sum(parts.values()) if parts else None
            syn = parts.get("sdg")
            share = syn / total if fmt.is_number(syn) and fmt.is_number(total) and total else None
            rows.append({"label": lb, "total": total, "parts": parts, "new": self.new_rows(lb),
                         "delta": total - prev_total if fmt.is_number(total) and fmt.is_number(prev_total) else None,
                         "share": fmt.share(syn, total) if share is not None else "n/a",
                         "warn": share is not None and share > SYNTHETIC_WARN_SHARE,
                         "dups": val.get("duplicates_dropped"),
                         "problem": "" if comp.ok else missing(comp, "provenance CSV", _stage_status(self.records[lb], "assemble"))})
            if parts:
                bars.append({"label": lb, "parts": parts})
            elif fmt.is_number(total):
                bars.append({"label": lb, "parts": {NO_PROVENANCE: total}})
                if NO_PROVENANCE not in series:
                    series.append(NO_PROVENANCE)
            prev_total = total if fmt.is_number(total) else prev_total
        chart = svg.stacked_bars(bars, series, title="Training rows by origin") if len(bars) > 0 else None
        return {"rows": rows, "chart": chart, "series": series}

    # ------------------------------------------------------------------ AutoML
    def automl(self) -> list[dict[str, Any]]:
        out = []
        for phase, title in sources.AUTOML_PHASES:
            doc = self.studies[phase]
            sec: dict[str, Any] = {"phase": phase, "title": title, "doc": doc}
            if doc.status == "absent":
                phases = ((sources.pipeline_state(self.R).get("options") or {}).get("phases"))
                if phases == "deft":
                    sec["message"] = "not part of this run (run_pipeline.py --phases deft)"
                else:
                    sec["message"] = "not run yet" if phase == "phase1" or not self.st or\
                        self.st["status"] != "complete" else "not run (no Phase 3 results in this folder)"
                out.append(sec)
                continue
            if not doc.ok:
                sec["message"] = missing(doc, "best_rec.json", None)
                out.append(sec)
                continue
            d = doc.data
            direction = d["direction"] or (self.contract or {}).get("direction") or "minimize"
            minimize = direction == "minimize"
            trials = d["trials"]
            done = [t for t in trials if t["state"] == "COMPLETE" and t["feasible"] and fmt.is_number(t["value"])]
            ranked = sorted(done, key=lambda t: t["value"] if minimize else -t["value"])[:TOP_TRIALS]
            best_id = d["best"]["id"]
            params = list(dict.fromkeys(k for t in ranked for k in t["params"]))[:PARAM_COLUMNS]
            values = [t["value"] for t in done]
            sec.update(
                metric=d["metric"] or "objective", direction=direction, direction_recorded=bool(d["direction"]),
                algorithm=d["algorithm"], n_trials=len(trials), n_complete=len(done),
                states={s: sum(1 for t in trials if t["state"] == s) for s in dict.fromkeys(t["state"] for t in trials)},
                infeasible=sum(1 for t in trials if t["state"] == "COMPLETE" and not t["feasible"]),
                best={"id": cell(best_id) if best_id is not None else "not recorded",
                      "value": fmt.distinct(d["best"]["value"], values, 4),
                      "checkpoint": d["best"]["checkpoint"] or "",
                      "params": [(k, cell(v)) for k, v in d["best"]["params"].items()]},
                params=params,
                top=[{"id": cell(t["id"]), "value": fmt.distinct(t["value"], values, 4),
                      "is_best": best_id is not None and str(t["id"]) == str(best_id),
                      "duration": fmt.duration(t["duration"]) if t["duration"] is not None else "",
                      "params": [cell(t["params"].get(p)) for p in params]} for t in ranked],
                tie=ties.tie_text(d.get("ties")),
                chart=svg.automl(trials, minimize=minimize, best_id=best_id,
                                 title=f"{d['metric'] or 'objective'} per trial ({direction})") if done else None,
            )
            out.append(sec)
        return out

    # ------------------------------------------------------------------ RCA
    def rca(self) -> list[dict[str, Any]]:
        out = []
        for lb in self.labels:
            rec = self.records[lb]
            files = sources.rca_files(self.R, lb, rec)
            status = _stage_status(rec, "rca")
            if status is None and not any(d.status != "absent" for d in files.values()):
                continue
            sec: dict[str, Any] = {"label": lb, "phase": phase_name(lb, rec)}
            if files["unreachable"].ok:
                sec["unreachable"] = files["unreachable"].data
            m = files["metrics"]
            if not m.ok:
                sec["message"] = missing(m, "metrics.json", status)
            else:
                md = m.data
                cm = md.get("confusion_matrix") or {}
                sec["summary"] = [
                    ("operating threshold (the contract's, as evaluate reports it)", fmt.exact(md.get("threshold"))),
                    ("NVIDIA's vcn_aoi threshold (threshold.txt, ranks the weak samples)",
                     fmt.exact(md.get("nvidia_threshold", md.get("threshold")))),
                    ("precision / recall / F1", " / ".join([fmt.ratio_pct(md.get("precision")),
                                                            fmt.ratio_pct(md.get("recall")), fmt.num(md.get("f1"))])),
                    ("FAR at the operating threshold", fmt.ratio_pct(md.get("far"))),
                    ("confusion (tp, fp, tn, fn)", ", ".join(cell(cm.get(k)) for k in ("tp", "fp", "tn", "fn"))),
                    ("weak samples kept", f"{cell(md.get('n_kept_samples'))} ({cell(md.get('n_gap_rows'))} rows x light)"),
                    ("possible label errors", cell((md.get("label_issues") or {}).get("flagged"))),
                ]
                per = md.get("per_label") or {}
                sec["per_label"] = table([v for v in per.values() if isinstance(v, Mapping)], first="label", keys=list(per),
                                         columns=("total", "misclassified", "mean_weakness", "median_weakness", "max_weakness"))
                sec["spots"] = self._spots(lb, md.get("rca_images") or [], files["report"])
                sec["headless"] = md.get("report_mode") == "headless"
                sec.update(self._limiting(md))
            if files["report"].ok:
                text = files["report"].data
                sec["verdict"] = sources.agent_text(text, sources.RCA_VERDICT_SECTION)
                sec["actions"] = sources.agent_text(text, sources.RCA_ACTIONS_SECTION)
                sec["todo"] = sources.TODO_MARK in text
            out.append(sec)
        return out

    @staticmethod
    def _limiting(md: Mapping[str, Any]) -> dict[str, Any]:
        """The defects that pin the threshold (metrics.json limiting*; absent in older RCA folders)."""
        head = md.get("limiting")
        if not isinstance(head, Mapping):
            return {}
        samples = [x for x in md.get("limiting_samples") or [] if isinstance(x, Mapping)]
        fams = {k: v for k, v in (md.get("limiting_families") or {}).items() if isinstance(v, Mapping)}
        return {"limiting_head": (f"At recall {fmt.ratio_pct(head.get('recall_target'))} the threshold sits just below "
                                  f"the lowest-scored defect the target needs: {cell(head.get('false_alarms'))} false "
                                  f"alarms (FAR {fmt.ratio_pct(head.get('far'))})."),
                "limiting_samples": {"columns": ["#", "label", "object_name", "input_path", "score", "pinned",
                                                 "false alarms if fixed", "FAR if fixed"],
                                     "rows": [[cell(x.get("rank")), cell(x.get("label")), cell(x.get("object_name")),
                                               cell(x.get("input_path")), fmt.num(x.get("siamese_score"), 6),
                                               cell(x.get("pinned_false_alarms")), cell(x.get("false_alarms_if_fixed")),
                                               fmt.ratio_pct(x.get("far_if_fixed"))] for x in samples]},
                "limiting_families": {"columns": ["family", "defects", "limiting samples", "pinned false alarms",
                                                  "FAR if every one fixed"],
                                      "rows": [[cell(k), cell(v.get("defects")), cell(v.get("limiting_samples")),
                                                fmt.num(v.get("pinned_false_alarms"), 4), fmt.ratio_pct(v.get("far_if_family_fixed"))]
                                               for k, v in sorted(fams.items())]}}

    def _spots(self, label: str, images: Iterable[Any], report: Doc) -> list[dict[str, Any]]:
        verdicts = sources.spot_verdicts(report.data) if report.ok else {}
        rca_dir = self.R.stage_dir(label, "rca")
        spots = []
        for i, s in enumerate(x for x in images if isinstance(x, Mapping)):
            uri, problem = sources.image_uri(rca_dir / str(s.get("file", "")), self.R.root)
            verdict, why = verdicts.get(i + 1, ("", ""))
            spots.append({"n": i + 1, "kind": cell(s.get("kind")), "label": cell(s.get("label")),
                          "object_name": cell(s.get("object_name")), "input_path": cell(s.get("input_path")),
                          "score": fmt.num(s.get("siamese_score"), 6), "weakness": fmt.num(s.get("weakness"), 4),
                          "image": uri, "image_problem": problem, "missing_files": len(s.get("missing_files") or []),
                          "verdict": verdict, "why": why})
        return spots

    # ------------------------------------------------------------------ routing / SDG / mining
    def stage_tables(self) -> list[dict[str, Any]]:
        out = []
        for lb in (x for x in self.labels if x.startswith("iter")):
            rec = self.records[lb]
            sec: dict[str, Any] = {"label": lb}
            rdoc = sources.routing_file(self.R, lb, rec)
            if rdoc.ok:
                per = rdoc.get("per_label") or {}
                sec["routing"] = table([v for v in per.values() if isinstance(v, Mapping)], first="label", keys=list(per),
                                       columns=("route", "rows", "samples", "limiting_samples", "pinned_false_alarms",
                                                "relabel_samples", "sdg_pool_samples", "mining_pool_rows", "reason"))
                sec["routing_totals"] = [(k, cell(v)) for k, v in (rdoc.get("rows_by_route") or {}).items()]
                sec["routing_dropped"] = [cell(x) for x in rdoc.get("dropped_labels") or []]
            else:
                sec["routing_message"] = missing(rdoc, "routing_summary.json", _stage_status(rec, "routing"))
            sdg = sources.sdg_files(self.R, lb, rec)
            alloc = sdg["allocation"]
            if alloc.ok:
                per = alloc.get("per_label") or {}
                ingested = alloc.get("ingested") or {}
                recs = [dict(v, ingested=ingested.get(k)) if isinstance(v, Mapping) else {"allocated": v}
                        for k, v in per.items()]
                sec["sdg"] = table(recs, first="label", keys=list(per))
                sec["sdg_totals"] = [("num_sdg", cell(alloc.get("num_sdg"))), ("ingested", cell(alloc.get("total_ingested")))]
            else:
                sec["sdg_message"] = missing(alloc, "allocation.json", _stage_status(rec, "sdg"))
            sec["sdg_rows"] = per_label_counts(sdg["rows"])
            mining = sources.mining_files(self.R, lb, rec)
            if mining["mined"].ok:
                sec["mined_rows"] = per_label_counts(mining["mined"])
                sec["mined_total"] = len(mining["mined"].data)
            else:
                sec["mining_message"] = missing(mining["mined"], "mined_rows.csv", _stage_status(rec, "mining"))
            if mining["summary"].ok:
                ms = mining["summary"]
                sec["mining_summary"] = [(k, cell(ms.get(k))) for k in sources.MINING_SUMMARY_KEYS if k in ms.data]
            if mining["knn"].ok:
                sec["knn"] = csv_table(mining["knn"].data)
            elif mining["knn"].status == "unreadable":
                sec["knn_message"] = missing(mining["knn"], "knn_summary.csv", None)
            out.append(sec)
        return out

    # ------------------------------------------------------------------ deliverable + log
    def deliverable(self) -> dict[str, Any]:
        bm, spec = sources.best_model(self.R), sources.inference_spec(self.R)
        out: dict[str, Any] = {"best_model": bm, "spec": spec}
        if bm.ok:
            mr = bm.get("metric_result") or {}
            it = bm.get("iteration")
            out["rows"] = [("iteration", cell(it)), ("checkpoint", cell(bm.get("checkpoint"))),
                           ("operating threshold on the KPI set (score > threshold = defect)",
                            fmt.exact(bm.get("threshold"))),
                           ("metric", self.metric_text(mr.get("value")) if fmt.is_number(mr.get("value")) else "n/a"),
                           ("KPI passed", cell(bm.get("passed"))), ("training spec", cell(bm.get("training_spec"))),
                           ("selection rule", cell(bm.get("selection_rule")))]
            out["rows"] += shipped_rows(bm)
            out["margin_warning"] = (bm.get("deployment") or {}).get("warning")
            out["note"] = cell(bm.get("phase3_note"))
            if self.st and self.st["status"] == "complete" and it != self.st.get("best_iteration"):
                out["warning"] = (f"best_model.json names {it!r} but the run state says {self.st.get('best_iteration')!r}; "
                                  f"rerun prepare_inference_spec.py and finalize")
        else:
            out["message"] = missing(bm, "best_model.json", "ok" if (self.st or {}).get("final_artifacts") else None)
            if self.best:
                rec = self.records[self.best]
                out["interim"] = [("best so far", self.best),
                                  ("checkpoint", cell((rec.get("artifacts") or {}).get("checkpoint"))),
                                  ("threshold", fmt.exact((rec.get("metric_result") or {}).get("threshold")))]
        return out

    def events(self) -> dict[str, Any]:
        ev = self.run.events[-EVENTS_SHOWN:]
        return {"total": len(self.run.events), "rows": [
            {"seq": e.get("seq"), "ts": cell(e.get("ts")), "iter": cell(e.get("iter")), "stage": cell(e.get("stage")),
             "status": cell(e.get("status")), "kind": cell(e.get("kind")),
             "duration": fmt.duration(e.get("duration_sec")) if e.get("duration_sec") else "",
             "summary": cell(e.get("summary"))} for e in reversed(ev)]}

    def faults(self) -> dict[str, Any]:
        """The run's ``retry`` events (backends/faults.py): jobs an infrastructure fault ended, run again."""
        rows = [{"seq": e.get("seq"), "ts": cell(e.get("ts")), "iter": cell(e.get("iter")),
                 "summary": cell(e.get("summary"))} for e in self.run.events if e.get("stage") == "retry"]
        n = len(rows)
        headline = (f"{n} infrastructure fault{'' if n == 1 else 's'} retried: the jobs ran again in fresh folders "
                    f"(each failed attempt is kept beside its job's folder as <folder>.attemptN)") if n else ""
        return {"headline": headline, "rows": rows}

    def pipeline(self) -> dict[str, Any]:
        doc = sources.pipeline_state(self.R)
        if not doc.ok:
            return {"message": "" if doc.status == "absent" else missing(doc, "pipeline_state.json", None)}
        flat = sources.flatten(doc.data)
        return {"rows": [(k, cell(v)) for k, v in list(flat.items())[:40]]}

    def context(self) -> dict[str, Any]:
        return {"run": self.header(), "banner": self.banner(), "figures": self.figures(), "trajectory": self.trajectory(),
                "growth": self.growth(), "kpi": self.kpi_detail(), "automl": self.automl(), "rca": self.rca(), "stages": self.stage_tables(),
                "deliverable": self.deliverable(), "events": self.events(), "faults": self.faults(),
                "pipeline": self.pipeline(),
                "best": self.best, "warn_share": fmt.num(100 * SYNTHETIC_WARN_SHARE) + "%"}
