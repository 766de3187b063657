"""Cold-start latency of the state scripts vs a bare interpreter start (same run, same python).

Target: median `python3 scripts/log_stage.py ...` within 100 ms of `python3 -c pass`, on a fresh run
and on a long one (LONG events, about the log of a 100-iteration run with notes): log_stage.py
appends a hash-chained line reading only the log's tail, so the log's length must not show.
Prints the medians, the differences, and commit_stage.py / next_stage.py (which read and verify
the whole log and check deft_state.json against it) for context.
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
LONG = 5000


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
        log_cmd = [py, str(ROOT / "scripts/log_stage.py"), "--results-dir", str(results), "--iter", "baseline",
                   "--stage", "note", "--status", "ok", "--summary", "bench"]
        nxt_cmd = [py, str(ROOT / "scripts/next_stage.py"), "--results-dir", str(results)]
        log = median_ms(log_cmd)
        nxt = median_ms(nxt_cmd)
        bad_commit = [py, str(ROOT / "scripts/commit_stage.py"), "--results-dir", str(results), "--iter", "baseline",
                      "--stage", "evaluate"]
        times = []
        for _ in range(N):  # a refused commit still pays for the locks + log read + checks
            t = time.perf_counter()
            subprocess.run(bad_commit, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append((time.perf_counter() - t) * 1000)
        commit = statistics.median(times)
        sys.path.insert(0, str(ROOT / "scripts"))
        from tao_aoi import state

        for i in range(LONG):
            state.log(results, label="baseline", stage="note", status="ok", summary=f"note {i} " + "x" * 100)
        size_kb = (results / "loop_log.jsonl").stat().st_size / 1024
        log_long = median_ms(log_cmd)
        nxt_long = median_ms(nxt_cmd)
    print(f"python -c pass                    median {bare:7.1f} ms  (n={N})")
    print(f"log_stage.py   (fresh run)        median {log:7.1f} ms  -> +{log - bare:.1f} ms over bare (target <= +100 ms)")
    print(f"log_stage.py   ({LONG} events, {size_kb:.0f} KB) median {log_long:7.1f} ms  -> +{log_long - bare:.1f} ms "
          f"(target <= +100 ms)")
    print(f"next_stage.py  (fresh run)        median {nxt:7.1f} ms  -> +{nxt - bare:.1f} ms")
    print(f"next_stage.py  ({LONG} events)     median {nxt_long:7.1f} ms  -> +{nxt_long - bare:.1f} ms (reads and "
          f"verifies the whole log)")
    print(f"commit_stage.py (refused)         median {commit:7.1f} ms  -> +{commit - bare:.1f} ms")
    print("verdict:", "OK" if max(log, log_long) - bare <= 100 else "OVER TARGET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
