"""route_samples: per-label routes, counts that add up, dropped/relabel reporting, pools, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rca_data import call
from tao_aoi.commands import route_samples
from tao_aoi.deft import priority, routing, sdg

LIGHTS = ("SolderLight", "UniformLight")


def make_gaps(path, counts: dict[str, int], *, label_issue: bool = True, lights=LIGHTS):
    rows = []
    for lbl, n in counts.items():
        for i in range(n):
            for light in lights:
                rows.append({"filepath": f"/img/{lbl}/C{i}_{light}.png", "input_path": f"{lbl.lower()}/t",
                             "object_name": f"C{i}", "label": lbl, "light": light,
                             "siamese_score": 0.9 - 0.01 * i if lbl.upper() == "PASS" else 0.1 + 0.01 * i,
                             "weakness": 0.5 - 0.01 * i, "label_issue": label_issue and i == 0})
    df = pd.DataFrame(rows)
    if not label_issue:
        df = df.drop(columns=["label_issue"])
    df.to_parquet(path, index=False)
    return df


def make_pool(root, samples: dict[str, int], lights=LIGHTS, unpaired: str | None = None):
    ng, ok = root / sdg.NG_DIR, root / sdg.OK_DIR
    ng.mkdir(parents=True), ok.mkdir(parents=True)
    for lbl, n in samples.items():
        for i in range(n):
            for light in lights:
                name = f"tmpl{i}+{lbl}_{i}_{light}.png"
                (ng / name).write_bytes(b"x")
                if not (unpaired == lbl and light == lights[-1]):
                    (ok / name).write_bytes(b"x")
    return root


def make_mining(path, counts: dict[str, int]):
    rows = [{"input_path": "m/t", "golden_path": "m/g", "label": lbl, "object_name": f"{lbl}{i}"}
            for lbl, n in counts.items() for i in range(n)]
    pd.DataFrame(rows, columns=["input_path", "golden_path", "label", "object_name"]).to_csv(path, index=False)
    return path


@pytest.fixture
def setup(tmp_path):
    gaps = make_gaps(tmp_path / "kpi_gaps.parquet", {"PASS": 4, "MISSING": 3, "BRIDGE": 2, "SHIFT": 2, "SCRATCH": 1})
    pool = make_pool(tmp_path / "anomalygen", {"MISSING": 2, "excess_solder": 1, "BRIDGE": 1}, unpaired="BRIDGE")
    mining = make_mining(tmp_path / "mining_pool.csv", {"pass": 5, "missing": 2, "SHIFT": 3})
    return tmp_path, gaps, pool, mining


def _argv(tmp, pool, mining, out="routing", *extra):
    return ["--gaps", tmp / "kpi_gaps.parquet", "--sdg-pool", pool, "--mining-pool", mining,
            "--results-dir", tmp / out, *extra]


def test_routes_per_label_and_counts_add_up(setup, capsys):
    tmp, gaps, pool, mining = setup
    code, out, err = call(route_samples.main, _argv(tmp, pool, mining), capsys)
    assert code == 0, err
    s = json.loads((tmp / "routing" / "routing_summary.json").read_text())
    routes = {k: v["route"] for k, v in s["per_label"].items()}
    # PASS: supported but no SDG sample -> mining; MISSING: both; BRIDGE: its only SDG sample lacks a golden
    # and the mining pool has none -> dropped; SHIFT: mining; SCRATCH: neither.
    assert routes == {"PASS": "mining", "MISSING": "both", "BRIDGE": "dropped", "SHIFT": "mining",
                      "SCRATCH": "dropped"}
    assert s["check"] == {"input_rows": len(gaps), "accounted_rows": len(gaps), "ok": True}
    assert sum(s["rows_by_route"].values()) == len(gaps) == s["total_rows"]
    for v in s["per_label"].values():
        assert sum(v["rows_by_route"].values()) == v["rows"]
    mining_rows = pd.read_parquet(tmp / "routing" / "mining_gaps.parquet")
    sdg_rows = pd.read_parquet(tmp / "routing" / "sdg_gaps.parquet")
    dropped = pd.read_csv(tmp / "routing" / "dropped.csv")
    assert set(mining_rows["label"]) == {"PASS", "MISSING", "SHIFT"} and set(sdg_rows["label"]) == {"MISSING"}
    assert len(mining_rows) == 2 * (4 + 3 + 2) and len(sdg_rows) == 2 * 3
    assert set(dropped["label"]) == {"BRIDGE", "SCRATCH"} and dropped["drop_reason"].str.len().min() > 10
    assert "cannot synthesise" in s["per_label"]["SCRATCH"]["reason"]
    assert "no paired sample" in s["per_label"]["BRIDGE"]["reason"]
    assert s["sdg_pool"]["samples_per_label"] == {"EXCESS_SOLDER": 1, "MISSING": 2}
    assert s["sdg_pool"]["unpaired_files"] == 1
    assert {"filepath", "light", "weakness", "route", "relabel"} <= set(mining_rows.columns)
    assert "SCRATCH" in out and "dropped" in out


def test_relabel_flags_and_exclusion(setup, capsys):
    tmp, gaps, pool, mining = setup
    assert call(route_samples.main, _argv(tmp, pool, mining), capsys)[0] == 0
    review = pd.read_csv(tmp / "routing" / "relabel_review.csv")
    assert len(review) == 5  # the first sample of every label, once (not once per light)
    s = json.loads((tmp / "routing" / "routing_summary.json").read_text())
    assert s["relabel"]["samples"] == 5 and s["rows_by_route"]["relabel"] == 0
    code, _, err = call(route_samples.main, _argv(tmp, pool, mining, "r2", "--exclude-relabel"), capsys)
    assert code == 0, err
    s2 = json.loads((tmp / "r2" / "routing_summary.json").read_text())
    assert s2["rows_by_route"]["relabel"] == 5 * len(LIGHTS) and s2["check"]["ok"]
    assert not pd.read_parquet(tmp / "r2" / "mining_gaps.parquet")["relabel"].any()


def test_relabel_computed_when_the_parquet_lacks_the_column(tmp_path, capsys):
    gaps = make_gaps(tmp_path / "kpi_gaps.parquet", {"PASS": 30, "MISSING": 30}, label_issue=False)
    # One PASS sample scoring like the defects, one defect scoring like PASS.
    gaps.loc[gaps["object_name"] == "C5", "siamese_score"] = np.where(
        gaps.loc[gaps["object_name"] == "C5", "label"] == "PASS", 0.05, 0.95)
    gaps.to_parquet(tmp_path / "kpi_gaps.parquet", index=False)
    pool = make_pool(tmp_path / "pool", {"MISSING": 1})
    mining = make_mining(tmp_path / "m.csv", {"PASS": 1})
    code, _, err = call(route_samples.main, _argv(tmp_path, pool, mining), capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "routing" / "routing_summary.json").read_text())
    assert "weak samples only" in s["relabel"]["method"]
    review = pd.read_csv(tmp_path / "routing" / "relabel_review.csv")
    assert set(review["object_name"]) >= {"C5"}


def test_both_routes_empty_stops(tmp_path, capsys):
    make_gaps(tmp_path / "kpi_gaps.parquet", {"SCRATCH": 2})
    pool = make_pool(tmp_path / "pool", {"MISSING": 1})
    mining = make_mining(tmp_path / "m.csv", {"PASS": 1})
    (tmp_path / "routing").mkdir()
    (tmp_path / "routing" / "routing_summary.json").write_text("{}")  # stale from an earlier attempt
    code, _, err = call(route_samples.main, _argv(tmp_path, pool, mining), capsys)
    assert code == 2 and "SCRATCH" in err and "no weak sample can be routed" in err
    assert not any((tmp_path / "routing").iterdir())


def test_sdg_pool_manifest_and_names(tmp_path):
    assert sdg.parse_name("board7+EXCESS_SOLDER_12_SolderLight") == {
        "template": "board7", "label": "EXCESS_SOLDER", "idx": "12", "light": "SolderLight"}
    assert sdg.parse_name("b+missing_3") == {"template": "b", "label": "MISSING", "idx": "3", "light": ""}
    assert sdg.parse_name("no_plus_sign_3") is None
    root = make_pool(tmp_path / "pool", {"MISSING": 2}, lights=LIGHTS)
    (root / sdg.NG_DIR / "readme.txt").write_text("not an image")
    (root / sdg.NG_DIR / "garbage.png").write_bytes(b"x")
    manifest = root / sdg.MANIFEST
    pd.DataFrame({"image": [f"tmpl0+MISSING_0_{lt}.png" for lt in LIGHTS], "label": ["bridge"] * 2}).to_csv(
        manifest, index=False)
    for path in (root, manifest):  # the folder or the manifest itself
        files, facts = sdg.scan(path)
        assert sdg.samples_per_label(files) == {"BRIDGE": 1, "MISSING": 1}
        assert facts["unparsed_files"] == 1 and "labels from" in facts["manifest"]
    pd.DataFrame({"label": ["BRIDGE"]}).to_csv(manifest, index=False)
    files, facts = sdg.scan(root)
    assert sdg.samples_per_label(files) == {"MISSING": 2} and "ignored" in facts["manifest"]


def test_label_case_everywhere(tmp_path, capsys):
    make_gaps(tmp_path / "kpi_gaps.parquet", {"pass": 2, "Missing": 2})
    pool = make_pool(tmp_path / "pool", {"missing": 1})
    mining = make_mining(tmp_path / "m.csv", {"Pass": 1})
    code, _, err = call(route_samples.main, _argv(tmp_path, pool, mining, "routing", "--sdg-labels", "pass,missing"),
                        capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "routing" / "routing_summary.json").read_text())
    assert {k: v["route"] for k, v in s["per_label"].items()} == {"MISSING": "sdg", "PASS": "mining"}


@pytest.mark.parametrize("case,needle", [
    ("no_gaps", "run gap_analysis.py first"),
    ("gaps_not_parquet", "cannot be read as parquet"),
    ("gaps_no_label", "missing column 'label'"),
    ("gaps_empty", "no rows"),
    ("gaps_bad_label", "is not a label"),
    ("no_pool_dir", "no reconstructed_image/"),
    ("no_mining", "mining pool CSV"),
    ("mining_no_label", "column 'label'"),
    ("bad_sdg_labels", "--sdg-labels"),
])
def test_bad_input_exits_2(tmp_path, capsys, case, needle):
    gaps = tmp_path / "kpi_gaps.parquet"
    make_gaps(gaps, {"MISSING": 1})
    pool = make_pool(tmp_path / "pool", {"MISSING": 1})
    mining = make_mining(tmp_path / "m.csv", {"MISSING": 1})
    extra: list[str] = []
    if case == "no_gaps":
        gaps.unlink()
    elif case == "gaps_not_parquet":
        gaps.write_text("a,b\n1,2\n")
    elif case == "gaps_no_label":
        pd.read_parquet(gaps).drop(columns=["label"]).to_parquet(gaps)
    elif case == "gaps_empty":
        pd.read_parquet(gaps).iloc[:0].to_parquet(gaps)
    elif case == "gaps_bad_label":
        pd.read_parquet(gaps).assign(label="???").to_parquet(gaps)
    elif case == "no_pool_dir":
        pool = tmp_path / "m.csv"  # a CSV whose folder is not an AnomalyGen output
    elif case == "no_mining":
        mining = tmp_path / "absent.csv"
    elif case == "mining_no_label":
        mining.write_text("input_path,object_name\na,b\n")
    elif case == "bad_sdg_labels":
        extra = ["--sdg-labels", "MISSING,??"]
    code, out, err = call(route_samples.main, _argv(tmp_path, pool, mining, "routing", *extra), capsys)
    assert code == 2 and needle in err, (out, err)
    assert err.count("\n") == 1


def test_decide_table():
    sdg_counts = {"MISSING": 3, "SCRATCH": 2}
    mine = {"MISSING": 1, "SHIFT": 4}
    labels_ = ["MISSING", "SCRATCH"]
    assert routing.decide("MISSING", labels_, sdg_counts, mine)[0] == "both"
    assert routing.decide("SCRATCH", labels_, sdg_counts, mine)[0] == "sdg"
    assert routing.decide("SCRATCH", ["MISSING"], sdg_counts, mine)[0] == "dropped"  # pool has it, AnomalyGen cannot
    assert routing.decide("SHIFT", labels_, sdg_counts, mine)[0] == "mining"


# --------------------------------------------------------------------------- priority of the limiting samples

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st

from tao_aoi import defaults  # noqa: E402

LABELS = ["PASS", "MISSING", "BRIDGE", "EXCESS_SOLDER", "SHIFT"]


@settings(max_examples=300, deadline=None)
@given(num=st.integers(0, 400), weak=st.dictionaries(st.sampled_from(LABELS), st.integers(0, 200), max_size=5),
       pinned=st.dictionaries(st.sampled_from(LABELS + ["TOMBSTONE"]), st.floats(0, 500), max_size=4),
       share=st.sampled_from([0.0, 0.25, 0.5, 0.9]))
def test_priority_split_gives_the_limiting_families_their_share(num, weak, pinned, share):
    lim, rest = priority.priority_split(num, weak, pinned, share)
    assert set(lim) == set(rest) == set(weak)
    eligible = {k: v for k, v in pinned.items() if k in weak and v > 0}
    n_lim = sum(lim.values())
    assert n_lim == (int(num * share + 0.5) if eligible and num else 0)
    assert sum(rest.values()) == (num - n_lim if sum(weak.values()) else 0)
    total = sum(eligible.values())
    for k in weak:
        assert lim[k] == 0 if k not in eligible else abs(lim[k] - n_lim * eligible[k] / total) < 1


def test_a_limiting_family_with_few_weak_rows_still_gets_its_share():
    # Issue 11: SHIFT has 1 weak sample (it alone pins 30 false alarms), PASS and MISSING have 50 each.
    weak, pinned = {"PASS": 50, "MISSING": 50, "SHIFT": 1}, {"SHIFT": 30.0}
    by_weak = priority.split(20, weak)
    lim, rest = priority.priority_split(20, weak, pinned)
    assert by_weak["SHIFT"] == 0  # what weak counts alone would give it
    assert lim["SHIFT"] == 10 and lim["SHIFT"] + rest["SHIFT"] >= defaults.LIMITING_SHARE * 20
    assert sum(lim.values()) + sum(rest.values()) == 20


@settings(max_examples=200, deadline=None)
@given(pinned=st.lists(st.one_of(st.just(0.0), st.floats(0, 100)), min_size=0, max_size=40),
       top_k=st.integers(1, 10), share=st.sampled_from([0.25, 0.5, 0.75]))
def test_extra_neighbours_hold_the_share_of_all_slots(pinned, top_k, share):
    pinned = np.array(pinned)
    extra = priority.extra_neighbours(pinned, top_k, share)
    assert (extra >= 0).all() and (extra[pinned <= 0] == 0).all()
    if not (pinned > 0).any():
        assert extra.sum() == 0
        return
    slots = top_k * pinned.size + extra.sum()
    assert abs(extra.sum() / slots - share) <= 1 / slots + 1e-12
    lim = pinned > 0
    np.testing.assert_allclose(extra[lim], extra.sum() * pinned[lim] / pinned[lim].sum(), atol=1)


def test_routing_summary_reports_the_limiting_samples(tmp_path, capsys):
    gaps = make_gaps(tmp_path / "kpi_gaps.parquet", {"PASS": 3, "MISSING": 3, "SHIFT": 1})
    gaps["limiting_rank"] = 0
    gaps["pinned_share"] = 0.0
    gaps.loc[(gaps["label"] == "SHIFT"), ["limiting_rank", "pinned_share"]] = [1, 30.0]
    gaps.loc[(gaps["label"] == "MISSING") & (gaps["object_name"] == "C0"), ["limiting_rank", "pinned_share"]] = [2, 4.0]
    gaps.to_parquet(tmp_path / "kpi_gaps.parquet", index=False)
    pool = make_pool(tmp_path / "anomalygen", {"MISSING": 2})
    mining = make_mining(tmp_path / "mining_pool.csv", {"SHIFT": 3, "pass": 2})
    code, out, err = call(route_samples.main, ["--gaps", tmp_path / "kpi_gaps.parquet", "--sdg-pool", pool,
                                               "--mining-pool", mining, "--results-dir", tmp_path / "r", "--json"], capsys)
    assert code == 0, err
    s = json.loads(out)
    assert (s["per_label"]["SHIFT"]["limiting_samples"], s["per_label"]["SHIFT"]["pinned_false_alarms"]) == (1, 30.0)
    assert (s["per_label"]["MISSING"]["limiting_samples"], s["per_label"]["MISSING"]["pinned_false_alarms"]) == (1, 4.0)
    assert s["per_label"]["PASS"]["limiting_samples"] == 0
    assert s["priority"] == {"share": defaults.LIMITING_SHARE, "pinned_false_alarms": {"MISSING": 4.0, "SHIFT": 30.0},
                             "sdg_labels": ["MISSING"], "mining_labels": ["SHIFT"]}
    sdg_gaps = pd.read_parquet(tmp_path / "r" / "sdg_gaps.parquet")
    assert priority.limiting_weights(sdg_gaps) == {"MISSING": 4.0}  # the columns travel with the rows
