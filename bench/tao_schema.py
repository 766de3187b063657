"""What checking a spec against NVIDIA's TAO schema costs, next to a bare interpreter (same run).

Every docker/slurm job's spec goes through ``tao_schema.check`` before its container starts: the
first check in a process pays the nvidia-tao-core + omegaconf imports and builds the structured
schema; later checks (AutoML trials, DEFT stages run in-process) reuse it. Prints the median cold
process time vs ``python -c pass`` and the warm per-spec time, on the demo preset's spec.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
N = 7


def median_ms(cmd: list[str]) -> float:
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    from tao_aoi.tao import schema, train_spec
    from tao_aoi.workspace import presets

    with tempfile.TemporaryDirectory() as tmp:
        spec = presets.spec_dict("demo")
        spec["results_dir"] = tmp
        path = Path(tmp) / "spec.yaml"
        path.write_text(train_spec.dump(spec))
        rows = {"train": 1500, "val": 500}
        py = sys.executable
        bare = median_ms([py, "-c", "pass"])
        cold = median_ms([py, "-c", f"import sys; sys.path.insert(0, 'scripts'); from tao_aoi.tao import schema; "
                                    f"schema.check({str(path)!r}, 'train', {rows!r})"])
        schema.check(path, "train", rows)
        t = time.perf_counter()
        for _ in range(50):
            schema.check(path, "train", rows)
        warm = (time.perf_counter() - t) / 50 * 1000
    print(f"python -c pass: {bare:.0f} ms; one process checking one spec: {cold:.0f} ms "
          f"(+{cold - bare:.0f} ms, {cold / bare:.1f}x bare); warm check: {warm:.1f} ms per spec "
          f"(TAO {schema.tao_version()} schema)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
