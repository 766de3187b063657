"""SDG supply over a whole run: pre-flight's forecast is exact without limiting families and the earliest
possible stop with them, and the documented fix for a pool that runs short (a lower --num-sdg on the
rerun) completes the run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_script
from hypothesis import given, settings
from hypothesis import strategies as st

from tao_aoi.deft import sdg
from tao_aoi.state import deft_state

KPI = "FAR < 0% at Recall=100%"  # never met (FAR is never below 0): every iteration runs
LABELS = ("PASS", "BRIDGE", "MISSING", "EXCESS_SOLDER", "SHIFT")


def simulate(weak: dict[str, int], pool: dict[str, int], num_sdg: int, iterations: int,
             pinned: list[dict[str, float]] | None = None) -> int | None:
    """The iteration at which ingest would stop, by running the allocation iteration by iteration
    (``pinned[i]``: the limiting families' pinned false alarms the RCA found before iteration i+1)."""
    left = dict(pool)
    for i in range(1, iterations + 1):
        alloc = sdg.allocate(num_sdg, weak, pinned[i - 1] if pinned else None)
        if any(alloc[k] > left.get(k, 0) for k in alloc):
            return i
        for k, n in alloc.items():
            left[k] -= n
    return None


counts = st.dictionaries(st.sampled_from(LABELS), st.integers(0, 80), min_size=1)
DEFECTS = [k for k in LABELS if k != "PASS"]
# What an RCA may find before each iteration: no limiting family, or any set of them with their pinned alarms.
pinned_sets = st.lists(st.dictionaries(st.sampled_from(DEFECTS), st.floats(0.5, 40)), min_size=12, max_size=12)


@settings(max_examples=300, deadline=None)
@given(kpi=counts, pool=counts, num_sdg=st.integers(0, 60), iterations=st.integers(1, 12), top_k=st.integers(1, 60),
       pinned=pinned_sets)
def test_forecast_bounds_running_the_allocation(kpi, pool, num_sdg, iterations, top_k, pinned):
    f = sdg.forecast(kpi, pool, sdg_labels=("PASS", "BRIDGE", "MISSING", "EXCESS_SOLDER"),
                            top_k_per_label=top_k, num_sdg=num_sdg, max_iterations=iterations)
    weak = sdg.weak_counts(kpi, pool, ("PASS", "BRIDGE", "MISSING", "EXCESS_SOLDER"), top_k)
    assert "SHIFT" not in weak and all(pool[k] > 0 and v == min(top_k, kpi[k]) for k, v in weak.items())
    # exact when no family ever pins the threshold
    plain = simulate(weak, pool, num_sdg, iterations)
    assert (f["short_without_priority"][0]["at_iteration"] if f["short_without_priority"] else None) == plain
    # never later than any run with limiting families: 'short' is the earliest possible stop
    stop = simulate(weak, pool, num_sdg, iterations, pinned)
    earliest = f["short"][0]["at_iteration"] if f["short"] else None
    for got in (plain, stop):
        assert got is None or (earliest is not None and earliest <= got)
    # the bound is reached: some label runs out at 'earliest' when it is the only limiting family throughout
    if earliest is not None:
        first = f["short"][0]["label"]
        worst = [{} if first == "PASS" else {first: 1.0}] * 12
        assert simulate(weak, pool, num_sdg, iterations, worst) == earliest
    n = f["num_sdg_lasting"]
    assert 0 <= n <= num_sdg
    if n:
        assert simulate(weak, pool, n, iterations) is None and simulate(weak, pool, n, iterations, pinned) is None
    if earliest is not None:
        assert all(any(simulate(weak, pool, m, iterations, [{} if k == "PASS" else {k: 1.0}] * 12) is not None
                       for k in weak) for m in range(n + 1, num_sdg + 1))
        assert sdg.warning(f, "POOL").startswith(f"SDG pool runs short within {iterations} iterations ")
        assert f"iter{earliest}" in sdg.warning(f, "POOL")
    else:
        assert sdg.warning(f, "POOL") is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tiny") / "ws"
    run_script("make_demo_workspace.py", "--out", ws, "--preset", "tiny", "--seed", "3", check=True)
    return ws


def pipeline(ws: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(ROOT / "scripts/run_pipeline.py"), "--workspace", str(ws), "--results-dir",
            str(results), "--phases", "deft", "--kpi-target", KPI, "--yes", "--quiet", "--json", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))


def test_pool_exhausted_at_iteration_k_then_the_documented_fix_completes_the_run(tiny, tmp_path, script):
    pre = script("preflight.py", "--workspace", tiny, "--max-iterations", "8", "--kpi-target", KPI, "--json")
    supply = json.loads(pre.stdout)["sections"]["6_phase2"]["sdg_supply"]
    earliest = int(supply["runs_short_at"][4:])
    assert 1 < earliest <= int(supply["runs_short_without_priority_at"][4:]) <= 8, supply
    assert any("SDG pool runs short within 8 iterations" in w for w in json.loads(pre.stdout)["warnings"])
    # 8 x num_sdg=20 > the pool's 150 pairs: whichever families the RCAs give priority, some iteration k runs short
    results = tmp_path / "run"
    first = pipeline(tiny, results, "--max-iterations", "8")
    assert first.returncode == 2, first.stderr[-2000:]
    assert "allocation mismatch" in first.stderr and "--num-sdg" in first.stderr
    st = deft_state.load(results)
    assert st["failure"]["stage"] == "sdg", st["failure"]
    k = int(st["failure"]["iter"][4:])
    assert earliest <= k <= 8
    fits = int(re.search(r"at most (\d+) fits what is left", first.stderr).group(1))
    assert 0 < fits < 20
    # The hard-stops reference says: rerun the same command with a lower --num-sdg.
    # (with --max-iterations k the run ends at the stopped iteration; both options may change on a resume)
    second = pipeline(tiny, results, "--max-iterations", str(k), "--num-sdg", str(fits))
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout)
    assert summary["deft_status"] == "complete" and summary["trajectory"][-1]["iteration"] == f"iter{k}"
    st = deft_state.load(results)
    (change,) = st["config_changes"]
    assert change["changes"]["num_sdg"] == {"from": 20, "to": fits, "applies_from": f"iter{k}"}
    assert change["changes"]["max_iterations"]["to"] == k
    alloc = json.loads((results / f"iter{k}" / "sdg" / "allocation.json").read_text())
    assert alloc["num_sdg"] == fits and alloc["total_ingested"] == fits
    assert json.loads((results / "iter1" / "sdg" / "allocation.json").read_text())["num_sdg"] == 20
    ps = json.loads((results / "pipeline_state.json").read_text())
    assert ps["options"]["num_sdg"] == fits and ps["option_changes"][0]["changes"]["num_sdg"]["applies_from"] == f"iter{k}"
    html = (results / "DEFT_Loop_Report.html").read_text()
    assert f"num_sdg 20 -&gt; {fits} from iter{k}" in html
    # Anything that defines the run still may not change on a rerun.
    other = pipeline(tiny, tmp_path / "run", "--max-iterations", str(k), "--num-sdg", str(fits), "--seed", "9")
    assert other.returncode == 2 and "seed" in other.stderr
