"""AutoML ties: several trials share the reported validation FAR (often 0% on a small set); which rule
picked the winner among them, in one line for the run summary and the report. Pure Python (the report
reads it)."""
from __future__ import annotations

from typing import Any

RULE = ("the objective: validation FAR averaged over the hardest 10% of defects (recall 90-100%), then the class "
        "margin (lowest defect score minus highest PASS score), then the earlier trial")


def _g(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "n/a"


def tie_text(ties: dict[str, Any] | None) -> str | None:
    """One line for the summary and the report: how many trials tied and what decided (None: no tie)."""
    if not ties or (ties.get("n_tied") or 0) < 2:
        return None
    res = ties.get("far_resolution_pct")
    step = f" (one false alarm there is {res:.3g}%)" if res else ""
    w, nxt = ties["winner"], ties.get("next") or {}
    detail = ""
    if ties["decided_by"] == "FAR averaged over recall 90-100%":
        detail = (f": trial {w['trial']} {_g(w.get('val_high_recall_far_pct'))}% vs trial {nxt.get('trial')} "
                  f"{_g(nxt.get('val_high_recall_far_pct'))}%")
    elif ties["decided_by"] == "class margin":
        detail = f": trial {w['trial']} margin {_g(w.get('val_margin'))} vs trial {nxt.get('trial')} {_g(nxt.get('val_margin'))}"
    return (f"{ties['n_tied']} of {ties['n_feasible']} trials tie at validation FAR {_g(ties.get('value'))}%{step}; "
            f"the tie was broken by {ties['decided_by']}{detail} (rule: {ties['rule']})")
