"""Render <results-dir>/DEFT_Loop_Report.html: one self-contained page for the whole run.

Reads deft_state.json, loop_log.jsonl and whatever stage outputs exist (AutoML, RCA, routing,
SDG, mining, datasets, deliverable); a stage not run yet shows as such, so it works after any
stage, on a failed run and at the end. No request leaves the file (inline CSS and SVG, images as
data URIs). Exit 0 with the path on stdout; 2 if the folder or its run state cannot be read.
"""
from __future__ import annotations

from typing import Sequence

from tao_aoi import cli


@cli.command("render_report.py", __doc__, next_step="open the printed DEFT_Loop_Report.html in a browser (it works "
             "offline); rerun after any later stage to refresh it")
@cli.option("--results-dir", help="the run's results folder (RESULTS_DIR)")
@cli.option("--json", help="print {report, status, best_iteration} as JSON")
def command(args) -> int:
    from tao_aoi.report import render

    path, run = render.render(args.results_dir)
    if args.json:
        st = run.state or {}
        cli.emit_json({"report": str(path), "status": st.get("status", "not_started"),
                       "best_iteration": st.get("best_iteration")})
    else:
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
