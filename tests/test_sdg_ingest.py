"""SDG ingest: proportional allocation, staging per light, hard stops with numbers, no re-ingest."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mini_workspace
from tao_aoi.deft import sdg


@given(st.integers(0, 500), st.dictionaries(st.sampled_from(["PASS", "MISSING", "BRIDGE", "EXCESS_SOLDER"]),
                                             st.integers(0, 1000), max_size=4))
def test_allocation_is_proportional_and_exact(num, weights):
    alloc = sdg.allocate(num, weights)
    assert set(alloc) == set(weights)
    total = sum(weights.values())
    if total == 0 or num == 0:
        assert all(v == 0 for v in alloc.values())
        return
    assert sum(alloc.values()) == num
    for k, w in weights.items():
        assert abs(alloc[k] - num * w / total) < 1
    assert alloc == sdg.allocate(num, dict(reversed(list(weights.items()))))  # order-independent


def routed(tmp: Path, counts: dict[str, int], pinned: dict[str, float] | None = None) -> Path:
    """A routing folder whose sdg_gaps.parquet holds counts[label] weak samples (2 light rows each);
    the first sample of each label in ``pinned`` is a limiting sample pinning that many false alarms
    (a KPI row of the mini workspace, so its images exist for the targeted picks' embedder)."""
    rows = []
    rank = 0
    for label, n in counts.items():
        for i in range(n):
            lim = (pinned or {}).get(label) if i == 0 else None
            rank += bool(lim)
            where = ({"input_path": f"kpi/board{rank % 3}", "object_name": f"C{rank % 3}@1"} if lim else
                     {"input_path": f"kpi/{label}", "object_name": f"{label}{i}"})
            for light in mini_workspace.LIGHTS:
                rows.append({"filepath": f"x/{label}{i}_{light}.png", **where, "golden_path": f"golden/board{rank % 3}",
                             "label": label, "light": light, "limiting_rank": rank if lim else 0,
                             "pinned_share": float(lim or 0.0)})
    d = tmp / "routing"
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(d / "sdg_gaps.parquet")
    return d


@pytest.fixture
def ws(tmp_path):
    return mini_workspace.build(tmp_path / "ws", pool_samples={"MISSING": 4, "BRIDGE": 3, "PASS": 3})


def ingest(script, ws, routing, out, num, iteration="iter1", history=None):
    return script("ingest_sdg.py", "--routing", routing, "--sdg-pool", ws / "augmentation/anomalygen",
                  "--num-sdg", str(num), "--results-dir", out, "--images-root", ws / "images",
                  "--train-spec", ws / "specs/baseline_spec.yaml",
                  "--history", history or (out.parent / "sdg_history.json"), "--iteration", iteration, "--json")


def test_ingest_stages_every_light_and_rows_validate(ws, tmp_path, script):
    routing = routed(tmp_path, {"MISSING": 3, "BRIDGE": 1})
    out = tmp_path / "run" / "iter1" / "sdg"
    proc = ingest(script, ws, routing, out, 4)
    assert proc.returncode == 0, proc.stderr
    alloc = json.loads(proc.stdout)
    assert alloc["allocated"] == {"BRIDGE": 1, "MISSING": 3} and alloc["total_ingested"] == 4
    rows = pd.read_csv(out / "sdg_rows.csv")
    assert sorted(rows["label"]) == ["BRIDGE", "MISSING", "MISSING", "MISSING"]
    assert (out / "allocation.json").exists()
    check = script("validate_training_csv.py", "--csv", out / "sdg_rows.csv", "--images-root", ws / "images",
                   "--train-spec", ws / "specs/baseline_spec.yaml")
    # only defect rows here, so the two-class rule fails; but no file may be missing
    assert "missing image" not in check.stderr


def test_a_limiting_family_with_one_weak_sample_gets_its_share(ws, tmp_path, script):
    # By weak counts alone BRIDGE (1 of 17 weak samples) would get 0 of 6 rows; it pins the threshold, so
    # LIMITING_SHARE of the rows go to it first and the rest are split by weak counts as before.
    routing = routed(tmp_path, {"PASS": 8, "MISSING": 8, "BRIDGE": 1}, pinned={"BRIDGE": 20.0})
    assert sdg.allocate(6, {"PASS": 8, "MISSING": 8, "BRIDGE": 1})["BRIDGE"] == 0
    proc = ingest(script, ws, routing, tmp_path / "run" / "iter1" / "sdg", 6)
    assert proc.returncode == 0, proc.stderr
    alloc = json.loads(proc.stdout)
    assert alloc["allocated"] == {"BRIDGE": 3, "MISSING": 2, "PASS": 1} and alloc["total_ingested"] == 6
    assert alloc["per_label"]["BRIDGE"]["for_limiting"] == 3 and alloc["pinned_false_alarms"] == {"BRIDGE": 20.0}
    assert alloc["limiting_share"] == 0.5


def test_rerun_of_same_iteration_is_identical_and_next_iteration_takes_fresh_samples(ws, tmp_path, script):
    routing = routed(tmp_path, {"MISSING": 2})
    hist = tmp_path / "run" / "sdg_history.json"
    out1 = tmp_path / "run" / "iter1" / "sdg"
    assert ingest(script, ws, routing, out1, 2, history=hist).returncode == 0
    first = pd.read_csv(out1 / "sdg_rows.csv")
    assert ingest(script, ws, routing, out1, 2, history=hist).returncode == 0  # retry after a crash
    assert pd.read_csv(out1 / "sdg_rows.csv").equals(first)
    out2 = tmp_path / "run" / "iter2" / "sdg"
    assert ingest(script, ws, routing, out2, 2, iteration="iter2", history=hist).returncode == 0
    second = pd.read_csv(out2 / "sdg_rows.csv")
    assert not set(first["object_name"]) & set(second["object_name"])
    used = json.loads(hist.read_text())["used"]
    assert sorted(used.values()) == ["iter1", "iter1", "iter2", "iter2"]


def test_allocation_mismatch_is_a_hard_stop_with_numbers(ws, tmp_path, script):
    routing = routed(tmp_path, {"BRIDGE": 5})
    out = tmp_path / "run" / "iter1" / "sdg"
    proc = ingest(script, ws, routing, out, 5)
    assert proc.returncode == 2
    assert "allocation mismatch" in proc.stderr and "BRIDGE was allocated 5" in proc.stderr
    assert "only 3 unused" in proc.stderr
    assert not out.exists() and not (tmp_path / "run" / "sdg_history.json").exists()


def test_exhausted_pool_after_earlier_iterations_is_a_mismatch(ws, tmp_path, script):
    routing = routed(tmp_path, {"BRIDGE": 2})
    hist = tmp_path / "run" / "sdg_history.json"
    assert ingest(script, ws, routing, tmp_path / "run/iter1/sdg", 2, history=hist).returncode == 0
    proc = ingest(script, ws, routing, tmp_path / "run/iter2/sdg", 2, iteration="iter2", history=hist)
    assert proc.returncode == 2 and "2 used by earlier iterations" in proc.stderr


@pytest.mark.parametrize("remove", ["original_image/tmpl+MISSING_1_UniformLight.png",
                                    "reconstructed_image/tmpl+MISSING_2_SolderLight.png"])
def test_unpaired_or_missing_light_is_a_silent_drop_hard_stop(ws, tmp_path, script, remove):
    (ws / "augmentation/anomalygen" / remove).unlink()
    routing = routed(tmp_path, {"MISSING": 2})
    out = tmp_path / "run" / "iter1" / "sdg"
    proc = ingest(script, ws, routing, out, 2)
    assert proc.returncode == 2 and "silent drop" in proc.stderr and "1 of 4 MISSING samples" in proc.stderr
    assert not out.exists()


def test_failed_ingest_succeeds_after_fixing_the_pool(ws, tmp_path, script):
    routing = routed(tmp_path, {"BRIDGE": 5})
    out = tmp_path / "run" / "iter1" / "sdg"
    assert ingest(script, ws, routing, out, 5).returncode == 2
    mini_workspace.add_sdg_pool(ws / "augmentation/anomalygen", {"BRIDGE": 6})
    proc = ingest(script, ws, routing, out, 5)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total_ingested"] == 5


def test_no_label_routed_to_sdg_writes_empty_outputs(ws, tmp_path, script):
    routing = routed(tmp_path, {})
    out = tmp_path / "run" / "iter1" / "sdg"
    proc = ingest(script, ws, routing, out, 20)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(out / "sdg_rows.csv")) == 0
    assert json.loads((out / "allocation.json").read_text())["total_ingested"] == 0


def test_missing_routing_output_is_named(ws, tmp_path, script):
    proc = ingest(script, ws, tmp_path / "nowhere", tmp_path / "o", 3)
    assert proc.returncode == 2 and "sdg_gaps.parquet" in proc.stderr
