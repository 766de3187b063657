"""Cold-start latency of the state scripts vs a bare interpreter start (same run, same python).

Target (issue 2): median `python3 scripts/log_stage.py ...` within 60 ms of `python3 -c pass`.
Prints both medians, the difference, and commit_stage.py / next_stage.py for context.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N = 30


def median_ms(cmd: list[str]) -> float:
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    py = sys.executable
    # as setup_env.py does: byte-compiled sources (this sandbox sets PYTHONDONTWRITEBYTECODE=1)
    subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "scripts")], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        (ws / "images").mkdir(parents=True)
        for rel in ("specs/baseline_spec.yaml", "train/base/training_set.csv", "train/base/validation_set.csv",
                    "kpi/testing_set.csv"):
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            (ws / rel).write_text("x\n")
        results = Path(tmp) / "run"
        subprocess.run([py, str(ROOT / "scripts/init_deft_state.py"), "--results-dir", str(results), "--workspace",
                        str(ws), "--max-iterations", "3", "--kpi-target", "FAR < 2% at Recall=100%"],
                       check=True, stdout=subprocess.DEVNULL)
        bare = median_ms([py, "-c", "pass"])
        log = median_ms([py, str(ROOT / "scripts/log_stage.py"), "--results-dir", str(results), "--iter", "baseline",
                         "--stage", "note", "--status", "ok", "--summary", "bench"])
        nxt = median_ms([py, str(ROOT / "scripts/next_stage.py"), "--results-dir", str(results)])
        bad_commit = [py, str(ROOT / "scripts/commit_stage.py"), "--results-dir", str(results), "--iter", "baseline",
                      "--stage", "evaluate"]
        times = []
        for _ in range(N):  # a refused commit still pays for lock + log read + validation
            t = time.perf_counter()
            subprocess.run(bad_commit, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append((time.perf_counter() - t) * 1000)
        commit = statistics.median(times)
    print(f"python -c pass            median {bare:7.1f} ms  (n={N})")
    print(f"log_stage.py              median {log:7.1f} ms  -> +{log - bare:.1f} ms over bare (target <= +60 ms)")
    print(f"next_stage.py             median {nxt:7.1f} ms  -> +{nxt - bare:.1f} ms")
    print(f"commit_stage.py (refused) median {commit:7.1f} ms  -> +{commit - bare:.1f} ms")
    print("verdict:", "OK" if log - bare <= 60 else "OVER TARGET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
