"""The agent's tool calls for a 2-iteration DEFT run on the tiny workspace, two ways, same run.

- stepwise: next_stage.py, each printed command, the review and its check, the commit (one call
  per command, as the skill described the path before next_stage.py --run);
- --run: init_deft_state.py, then next_stage.py --run until "run complete", reviewing at each stop.
Both are real CLI processes (tests/agent_driver.py); only the agent's verdicts are simulated. A
tool call is a CLI run, a file or sheet read, or a report written. Issue 19's target: at most 6 CLI
calls with --run. The KPI target is one no model meets, so the loop runs both iterations.

  python3 bench/agent_calls.py [--seed 0] [--preset tiny]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

import agent_driver  # noqa: E402

KPI = "FAR < 0% at Recall=100%"
TARGET_CLI = 6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="tiny")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run([sys.executable, str(ROOT / "scripts/make_demo_workspace.py"), "--out", str(ws), "--preset",
                        a.preset, "--seed", str(a.seed)], check=True, capture_output=True)
        rows = []
        for name, drive in (("stepwise", agent_driver.stepwise), ("--run", agent_driver.with_run)):
            agent = agent_driver.Agent()
            t = time.perf_counter()
            agent_driver.init(agent, ws, Path(tmp) / name.strip("-"), 2, KPI)
            drive(agent, Path(tmp) / name.strip("-"))
            rows.append((name, agent, time.perf_counter() - t))
    print(f"2 DEFT iterations, {a.preset} workspace seed {a.seed} (17 stages, 2 reviewed RCAs); host shared, wall "
          f"times are indicative")
    print(f"{'path':<10} {'CLI calls':>9} {'sheets read':>12} {'report r/w':>10} {'tool calls':>10} {'wall s':>7}")
    for name, agent, wall in rows:
        sheets = sum(len(s) for s in agent.sheets)
        reports = agent.count("read") - sheets + agent.count("write")
        total = agent.count("cli") + agent.count("read") + agent.count("write")
        print(f"{name:<10} {agent.count('cli'):>9} {sheets:>5} ({'+'.join(str(len(s)) for s in agent.sheets)})"
              f" {reports:>10} {total:>10} {wall:>7.1f}")
    cli_run = rows[1][1].count("cli")
    print(f"--run: {cli_run} CLI calls (target <= {TARGET_CLI}):", "OK" if cli_run <= TARGET_CLI else "OVER TARGET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
