"""The compute estimate against real runs: run_pipeline.py --time-limit records the estimate it
derived from its own dry run (pipeline_state.json "budget"); the run's wall time is measured by the
same process, so both see the same host load. Prints estimate, wall time and their ratio per preset.

    python3 bench/estimate.py [--presets tiny,demo] [--trials 4] [--iterations 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                          env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,demo")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=2)
    a = ap.parse_args()
    print(f"{'preset':<8}{'trials':>7}{'iters':>6}{'estimate s':>12}{'wall s':>9}{'ratio':>7}{'dry run s':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in a.presets.split(","):
            ws, results = Path(tmp) / preset / "ws", Path(tmp) / preset / "run"
            run(str(ROOT / "scripts/make_demo_workspace.py"), "--out", str(ws), "--preset", preset)
            out = run(str(ROOT / "scripts/run_pipeline.py"), "--workspace", str(ws), "--results-dir", str(results),
                      "--max-iterations", str(a.iterations), "--trials", str(a.trials), "--time-limit", "24h",
                      "--kpi-target", "FAR < 0.1% at Recall=100%", "--yes", "--quiet", "--json")
            wall = json.loads(out.stdout)["wall_sec"]
            budget = json.loads((results / "pipeline_state.json").read_text())["budget"]
            est = budget["estimate"]["total_sec"]
            print(f"{preset:<8}{a.trials:>7}{a.iterations:>6}{est:>12.1f}{wall:>9.1f}{est / wall:>7.2f}"
                  f"{budget['dry_run_sec']:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
