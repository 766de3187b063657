"""Time to render DEFT_Loop_Report.html for a finished demo-sized run (target: under 2 s).

The run is built with tests/support/report_run.py through the real state machine, the real KPI,
gap analysis (128 px thumbnails, two lights) and routing: a 4000-row KPI set, 20000 base training
rows, three DEFT iterations that miss a 1% FAR target (so every stage of every iteration exists),
Phase 3, and 40 + 20 AutoML trials. TODO(issue 7): when make_demo_workspace.py --preset demo and
run_pipeline.py work end to end, time a genuine demo run as well.
Prints the median in-process render time, the median wall and CPU time of the CLI (interpreter
start included), and the page size.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]
TARGET_SEC = 2.0
N = 5


def build(root: Path, *, n_pass: int = 3200, n_defect: int = 800, train_rows: int = 20_000, max_iterations: int = 3,
          trials: tuple[int, int] = (40, 20), last_commit: bool = True):
    """A finished run (RunBuilder) missing the 1% target in every iteration; ``last_commit=False`` stops
    before the final run/finalize (its outputs and commit are left to the caller: bench/scale.py times them)."""
    import contextlib
    import io

    from support.report_run import RunBuilder

    b = RunBuilder(root, n_pass=n_pass, n_defect=n_defect, train_rows=train_rows, image_px=128)
    with contextlib.redirect_stdout(io.StringIO()):
        b.init(kpi="FAR < 1% at Recall=100%", max_iterations=max_iterations)
        b.automl("phase1", trials[0])
        while last_commit or not (b.expected(True) == ("run", "finalize") and "final_automl" in b.state()["iterations"]):
            if b.step(phase3=True) is None:
                break
            if b.expected(True) == ("final_automl", "train"):
                b.automl("phase3", trials[1])
    return b


def main() -> int:
    from tao_aoi.report import render

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        results = build(Path(tmp)).results
        built = time.perf_counter() - t
        render.render(results)  # warm the page cache like a rerun would
        inproc = []
        for _ in range(N):
            t = time.perf_counter()
            render.render(results)
            inproc.append(time.perf_counter() - t)
        cli_wall, cli_cpu = [], []
        env = dict(os.environ, TAO_AOI_NO_REEXEC="1")
        for _ in range(N):
            before = os.times()
            t = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "scripts" / "render_report.py"), "--results-dir", str(results)],
                           check=True, stdout=subprocess.DEVNULL, env=env)
            cli_wall.append(time.perf_counter() - t)
            after = os.times()
            cli_cpu.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
        size = (results / "DEFT_Loop_Report.html").stat().st_size
    cli = statistics.median(cli_wall)
    print(f"demo-sized run built in {built:.1f} s (4000 KPI rows, 20000 train rows, 3 iterations + Phase 3, 60 trials)")
    print(f"render (in-process)     median {statistics.median(inproc):6.3f} s  (n={N})")
    print(f"render_report.py (CLI)  median {cli:6.3f} s wall, {statistics.median(cli_cpu):6.3f} s CPU  (n={N})")
    print(f"page size               {size / 1e6:.2f} MB")
    print(f"target < {TARGET_SEC:g} s: {'OK' if cli < TARGET_SEC else 'OVER TARGET'} ({cli / TARGET_SEC:.0%} of budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
