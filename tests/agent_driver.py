"""An agent driving a DEFT run through the CLIs, simulated: every call it makes is real and counted.

Two ways through a run, both as skill tao-run-deft-aoi describes them:
- ``stepwise``: next_stage.py, then each printed command, the review and its check (rca), the commit;
- ``with_run``: next_stage.py --run until it stops; at a review, read the sheets it lists, fill the
  report, call it again.
Only the agent's judgement is simulated: each spot-check sheet still open gets a verdict (edge case
for PASS, systematic for a defect) and every other TODO(agent) a sentence. Used by
tests/test_agent_path.py and bench/agent_calls.py.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import run_script

from tao_aoi.analysis import rca_report


@dataclass
class Agent:
    """The tool calls of one agent: ``cli`` (a script run), ``read`` (a file or image), ``write``."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    sheets: list[list[str]] = field(default_factory=list)  # per review: the sheets it had to look at
    wall: float = 0.0

    def cli(self, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        self.calls.append(("cli", script))
        t = time.perf_counter()
        proc = run_script(script, *args, check=check, timeout=900)
        self.wall += time.perf_counter() - t
        return proc

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)

    def review(self, report: Path, sheets: list[str] | None = None) -> list[str]:
        """Read the report and the sheets still without a verdict, fill every TODO(agent), write it back."""
        self.calls.append(("read", str(report)))
        text = report.read_text()
        rows = rca_report.spot_rows(text)
        todo = [n for n, (verdict, _) in rows.items() if verdict == rca_report.TODO]
        meta = json.loads(report.with_name("metrics.json").read_text())["rca_images"]
        files = [str(report.parent / meta[n - 1]["file"]) for n in todo]
        if sheets is not None:
            assert sorted(sheets) == sorted(files), (sheets, files)
        for f in files:
            self.calls.append(("read", f))
        self.sheets.append(files)
        out = []
        for line in text.splitlines():
            cells = line.split(" | ")
            if line.startswith("| ") and rca_report.TODO in line and len(cells) >= 8:
                kind = meta[int(cells[0].strip("| ")) - 1]["kind"]
                verdict = "edge case" if kind == "PASS" else "systematic"
                line = line.replace(f"| {rca_report.TODO} | {rca_report.TODO} |",
                                    f"| {verdict} | simulated review of {cells[2]} |")
            out.append(re.sub(r"TODO\(agent\)[^|]*$", "simulated judgement.", line) if not line.startswith(">")
                       else line)
        report.write_text("\n".join(out) + "\n")
        self.calls.append(("write", str(report)))
        assert not rca_report.report_problems(report.read_text())
        return files


def init(agent: Agent, ws: Path, results: Path, iterations: int, kpi: str) -> None:
    agent.cli("init_deft_state.py", "--results-dir", str(results), "--workspace", str(ws),
              "--max-iterations", str(iterations), "--kpi-target", kpi)


def stepwise(agent: Agent, results: Path) -> dict:
    """next_stage.py -> each command -> (review, check) -> commit, until the run is complete."""
    while True:
        out = json.loads(agent.cli("next_stage.py", "--results-dir", str(results), "--json", check=True).stdout)
        if out["stage"] is None:
            return out
        plan = out["argv"]
        for argv in plan["run"]:
            agent.cli(*argv, check=True)
        if "review" in plan:
            agent.review(Path(plan["review"]["report"]))
            agent.cli(*plan["review"]["check"], check=True)
        agent.cli(*plan["commit"], "--summary", f"{out['iteration']}/{out['stage']} done", check=True)


def with_run(agent: Agent, results: Path, *, max_calls: int = 20) -> list[dict]:
    """next_stage.py --run until the run is complete; each stop for a review is reviewed as listed."""
    stops = []
    for _ in range(max_calls):
        proc = agent.cli("next_stage.py", "--results-dir", str(results), "--run", "--json", check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        stops.append(out)
        if out["stopped"] == "complete":
            return stops
        assert out["stopped"] == "review", out
        agent.review(Path(out["review"]["report"]), out["review"]["to_look_at"])
    raise AssertionError(f"no end after {max_calls} calls: {stops[-1]}")
