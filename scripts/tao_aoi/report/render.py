"""Fill the jinja2 template and write <results>/DEFT_Loop_Report.html atomically.

Autoescape is on for the whole template, so every value read from a file is text in the page;
charts arrive as Markup that svg.py escaped itself. Optional keys (a section with nothing to show)
are simply absent from the context, so the default Undefined is used; tests check the content.
"""
from __future__ import annotations

import time
from pathlib import Path

from tao_aoi import atomic, fmt
from tao_aoi.report import build, sources

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"


def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt.num, exact=fmt.exact, dur=fmt.duration)
    return env


def render_html(run: sources.Run) -> str:
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return environment().get_template(TEMPLATE).render(**build.Report(run, now).context())


def render(results_dir: str | Path) -> tuple[Path, sources.Run]:
    """Write the report; returns (its path, the run it shows). UserError if the state cannot be read."""
    run = sources.load_run(results_dir)
    atomic.write_text(run.results.report, render_html(run))
    return run.results.report, run
