"""The run's spot-check verdicts per sample, so a later RCA asks only about samples not reviewed yet.

An agent reviewing an RCA (``gap_analysis.py --agent-review``) gives each of its sheets (the 5
weakest PASS and 5 weakest defect samples) a verdict. ``gap_analysis.py --check-report REPORT
--verdicts LEDGER`` records the verdicts of a complete report in the run's ledger
(``layout.Results.spot_check_verdicts``), keyed by the sample: its input_path (normalised) and object_name
as the KPI CSV names them, the same in every iteration. The RCA of a later iteration given the same
ledger fills in the verdict of each sheet whose sample the ledger holds with the same label, says
where it came from, and leaves TODO(agent) only on the sheets not reviewed yet (iterations share
most of their weakest samples). An agent may still change a reused verdict: the ledger keeps the
latest. Pure Python (no pandas): --check-report stays fast.
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Any, Sequence

from tao_aoi import atomic
from tao_aoi.analysis import rca_report
from tao_aoi.errors import UserError
from tao_aoi.path_keys import sample_key

SCHEMA_VERSION = 1


def key(input_path: str, object_name: str) -> str:
    """One KPI sample, whatever the spelling of its folder (``./a//b`` = ``a/b``)."""
    return sample_key(posixpath.normpath(str(input_path).strip().replace("\\", "/")), object_name)


def load(path: str | Path) -> dict[str, dict[str, Any]]:
    """Sample key -> {verdict, why, label, from}; an absent ledger is empty (the first review)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"gap_analysis.py --verdicts {p} is not a JSON file ({exc}); it is written by gap_analysis.py "
                        f"--check-report: delete it to review every sheet again") from None
    verdicts = doc.get("verdicts") if isinstance(doc, dict) else None
    if not isinstance(verdicts, dict):
        raise UserError(f"gap_analysis.py --verdicts {p} has no 'verdicts' object; delete it to review every sheet again")
    return verdicts


def reuse(spots: Sequence[dict[str, Any]], ledger: str | Path) -> int:
    """Fill ``verdict``, ``why`` and ``reused_from`` of the sheets an earlier review judged (same sample,
    same label) in place; returns how many."""
    known = load(ledger)
    n = 0
    for s in spots:
        v = known.get(key(s["input_path"], s["object_name"]))
        if v and v.get("label") == s["label"] and v.get("verdict") in rca_report.VERDICTS:
            s.update(verdict=v["verdict"], why=v.get("why", ""), reused_from=v.get("from", "an earlier review"))
            n += 1
    return n


def _source(report: Path, ledger: Path) -> str:
    """Where a verdict came from: the iteration of <R>/<iteration>/rca/RCA_Report.md, else the report."""
    try:
        parts = report.resolve().relative_to(ledger.resolve().parent).parts
    except ValueError:
        return str(report)
    return parts[0] if len(parts) >= 3 else str(report)


def record(report: str | Path, ledger: str | Path) -> dict[str, int]:
    """Add the verdicts of a complete agent-reviewed report to the ledger (atomically; rerunning records
    the same). The sheets' samples come from the metrics.json beside the report."""
    report, ledger = Path(report), Path(ledger)
    metrics_path = report.with_name("metrics.json")
    try:
        sheets = json.loads(metrics_path.read_text(encoding="utf-8"))["rca_images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{metrics_path} has no rca_images list ({exc}); rerun gap_analysis.py --agent-review "
                        f"into {report.parent}") from None
    rows = rca_report.spot_rows(report.read_text(encoding="utf-8"))
    known = load(ledger)
    source = _source(report, ledger)
    new = 0
    for n, (verdict, why) in sorted(rows.items()):
        if not 1 <= n <= len(sheets):
            raise UserError(f"{report}: spot check #{n} has no sheet in {metrics_path}; rerun gap_analysis.py")
        s = sheets[n - 1]
        k = key(s["input_path"], s["object_name"])
        verdict = verdict.lower().strip("`* ")
        mark = rca_report.REUSED.format(s.get("reused_from")) if s.get("reused_from") else None
        if mark and why.endswith(mark):
            why = why[: -len(mark)]
        before = known.get(k)
        if before and before.get("verdict") == verdict and before.get("why") == why and before.get("label") == s["label"]:
            continue  # reused unchanged: it keeps the review it came from
        new += int(before is None)
        known[k] = {"verdict": verdict, "why": why, "label": s["label"], "from": source}
    atomic.write_json(ledger, {"schema_version": SCHEMA_VERSION, "verdicts": dict(sorted(known.items()))})
    return {"sheets": len(rows), "new": new, "total": len(known)}


def review_state(review: dict[str, Any]) -> dict[str, Any] | None:
    """Where an agent's review of an RCA stands (``review``: stage_plan's rca review of this stage).

    None while its analysis has not run (no report, or one not written for an agent from this
    stage's inference.csv); else the open items, and the sheets still to look at (their verdict not
    given yet: a reused one counts as given)."""
    report = Path(review["report"])
    try:
        text = report.read_text(encoding="utf-8")  # written last: present = the analysis finished
        m = json.loads(report.with_name("metrics.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if m.get("report_mode") != "agent" or (m.get("inputs") or {}).get("inference_csv") != review["inference_csv"]:
        return None
    sheets = m.get("rca_images") or []
    rows = rca_report.spot_rows(text)
    left = [n for n, (verdict, _) in sorted(rows.items()) if verdict.lower().strip("`* ") not in rca_report.VERDICTS]
    return {"report": str(report), "open": rca_report.report_problems(text), "sheets": len(sheets),
            "reused": sum(bool(s.get("reused_from")) for s in sheets),
            "to_look_at": [str(report.parent / sheets[n - 1]["file"]) for n in left if 1 <= n <= len(sheets)]}
