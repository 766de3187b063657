"""Route the weak samples of an RCA to synthetic generation (SDG), real-image mining, both, or nowhere.

Decided per label (DESIGN.md section 5): ``sdg`` when the label is one AnomalyGen can make and the
pre-generated pool holds paired samples of it; ``mining`` when the mining pool has rows of it;
``both``; else ``dropped``, written to dropped.csv with the reason. Rows that look mislabelled
(``label_issue`` from gap analysis, else computed here) carry ``relabel = True`` for the user;
with ``exclude_relabel`` they leave the routes for a ``relabel`` bucket instead. Every input row
is counted in exactly one bucket and the summary proves the counts add up. The limiting samples'
priority in the later stages is ``priority``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from tao_aoi import defaults, labels
from tao_aoi.analysis import label_noise
from tao_aoi.data import changenet_csv
from tao_aoi.deft import priority, sdg
from tao_aoi.errors import HardStop, UserError

ROUTES = ("sdg", "mining", "both", "dropped", "relabel")
OUTPUTS = ("mining_gaps.parquet", "sdg_gaps.parquet", "dropped.csv", "relabel_review.csv", "routing_summary.json")
REQUIRED = ("filepath", "label")


def read_gaps(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--gaps {p} does not exist; run gap_analysis.py first (it writes kpi_gaps.parquet)")
    try:
        df = pd.read_parquet(p)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"--gaps {p} cannot be read as parquet: {' '.join(str(exc).split())[:200]}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"--gaps {p} is missing column {missing[0]!r} (has: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise UserError(f"--gaps {p} has no rows: there are no weak samples to route")
    df["label"] = changenet_csv.canonical_labels(df["label"].astype(str), p, what="gaps parquet")
    blank = np.flatnonzero((df["label"] == "").to_numpy())
    if blank.size:
        raise UserError(f"--gaps {p} row {int(blank[0])}: empty label")
    return df


def mining_labels(path: str | Path) -> dict[str, int]:
    """Rows per canonical label in the mining pool CSV (a header-only pool is allowed: no mining)."""
    df = changenet_csv.read(path, ("label",), what="mining pool CSV", allow_empty=True)
    return {str(k): int(v) for k, v in df["label"].value_counts(sort=False).items()}


def relabel_flags(df: pd.DataFrame, ids: pd.Series, pass_label: str) -> tuple[np.ndarray, str]:
    """Per-row ``relabel`` flag and how it was obtained."""
    if "label_issue" in df.columns:
        return df["label_issue"].fillna(False).to_numpy(dtype=bool), "label_issue column of the gaps parquet"
    if "siamese_score" not in df.columns:
        return np.zeros(len(df), dtype=bool), "not assessed: the gaps parquet has no siamese_score"
    first = ~ids.duplicated().to_numpy()
    scores = pd.to_numeric(df["siamese_score"], errors="coerce").to_numpy(dtype=np.float64)[first]
    positive = (df["label"] != pass_label).to_numpy()[first]
    if not np.isfinite(scores).all() or positive.all() or not positive.any():
        return np.zeros(len(df), dtype=bool), "not assessed: needs finite scores and both PASS and defect samples"
    issue, _ = label_noise.find(scores, positive)
    flagged = set(ids.to_numpy()[first][issue])
    return ids.isin(flagged).to_numpy(), f"{label_noise.METHOD}, on the weak samples only"


def decide(label: str, sdg_labels: Iterable[str], sdg_counts: dict[str, int], mining_counts: dict[str, int]) -> tuple[str, str]:
    """(route, reason) for one label."""
    supported = label in set(sdg_labels)
    in_sdg = supported and sdg_counts.get(label, 0) > 0
    in_mining = mining_counts.get(label, 0) > 0
    if in_sdg and in_mining:
        return "both", ""
    if in_sdg:
        return "sdg", ""
    if in_mining:
        return "mining", ""
    why = ["AnomalyGen cannot synthesise it" if not supported else "the SDG pool has no paired sample of it",
           "the mining pool has no row of it"]
    return "dropped", "; ".join(why)


def route(gaps: pd.DataFrame, sdg_labels: Sequence[str], sdg_counts: dict[str, int], mining_counts: dict[str, int],
          *, pass_label: str = labels.PASS, exclude_relabel: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Adds ``route``, ``relabel``, ``drop_reason`` columns; returns (rows, per-label summary)."""
    df = gaps.copy()
    ids = priority.sample_ids(df)
    df["relabel"], relabel_method = relabel_flags(df, ids, pass_label)
    decisions = {lbl: decide(lbl, sdg_labels, sdg_counts, mining_counts) for lbl in pd.unique(df["label"])}
    pinned = priority.limiting_weights(df)
    limiting = (pd.to_numeric(df["limiting_rank"], errors="coerce").fillna(0).to_numpy() > 0
                if "limiting_rank" in df.columns else np.zeros(len(df), dtype=bool))
    df["route"] = df["label"].map({k: v[0] for k, v in decisions.items()})
    df["drop_reason"] = df["label"].map({k: v[1] for k, v in decisions.items()})
    if exclude_relabel:
        df.loc[df["relabel"].to_numpy(), "route"] = "relabel"
    per_label: dict[str, Any] = {}
    for lbl in sorted(decisions):
        sel = (df["label"] == lbl).to_numpy()
        counts = df.loc[sel, "route"].value_counts()
        per_label[lbl] = {
            "route": decisions[lbl][0],
            "reason": decisions[lbl][1] or None,
            "rows": int(sel.sum()),
            "samples": int(ids[sel].nunique()),
            "rows_by_route": {r: int(counts.get(r, 0)) for r in ROUTES},
            "relabel_samples": int(ids[sel & df["relabel"].to_numpy()].nunique()),
            "limiting_samples": int(ids[sel & limiting].nunique()),
            "pinned_false_alarms": pinned.get(lbl, 0.0),
            "sdg_supported": lbl in set(sdg_labels),
            "sdg_pool_samples": int(sdg_counts.get(lbl, 0)),
            "mining_pool_rows": int(mining_counts.get(lbl, 0)),
        }
    return df, {"per_label": per_label, "relabel_method": relabel_method, "pinned": pinned}


def run(gaps_path: str | Path, sdg_pool_path: str | Path, mining_pool_path: str | Path, results_dir: str | Path,
        *, sdg_labels: Sequence[str], pass_label: str = labels.PASS, exclude_relabel: bool = False) -> dict[str, Any]:
    """Everything route_samples.py writes; returns routing_summary.json. HardStop if both routes are empty."""
    from tao_aoi import atomic

    out = Path(results_dir)
    sdg_set = [labels.canonical_label(s) for s in sdg_labels if str(s).strip()]
    bad = [s for s in sdg_set if not labels.is_valid_canonical(s)]
    if bad:
        raise UserError(f"--sdg-labels: {bad[0]!r} is not a label; pass e.g. PASS,EXCESS_SOLDER,MISSING,BRIDGE")
    gaps = read_gaps(gaps_path)
    files, pool_facts = sdg.scan(sdg_pool_path)
    sdg_counts = sdg.samples_per_label(files)
    mining_counts = mining_labels(mining_pool_path)
    df, info = route(gaps, sdg_set, sdg_counts, mining_counts, pass_label=labels.canonical_label(pass_label),
                     exclude_relabel=exclude_relabel)
    to_mining = df["route"].isin(("mining", "both")).to_numpy()
    to_sdg = df["route"].isin(("sdg", "both")).to_numpy()
    dropped = (df["route"] == "dropped").to_numpy()
    totals = {r: int((df["route"] == r).sum()) for r in ROUTES}
    if sum(totals.values()) != len(gaps):  # a bug, not a user error: every row has exactly one route
        raise AssertionError(f"routing lost rows: {totals} vs {len(gaps)}")
    if not to_mining.any() and not to_sdg.any():
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
        why = "; ".join(f"{lbl}: {v['reason'] or 'all rows flagged relabel'}" for lbl, v in info["per_label"].items())
        raise HardStop(f"no weak sample can be routed to SDG or mining ({why}); add those labels to the mining pool "
                       f"or the SDG pool, or widen --sdg-labels, then rerun route_samples.py")
    ids = priority.sample_ids(df)
    review_cols = [c for c in ("input_path", "object_name", "label", "siamese_score", "weakness", "label_quality",
                               "filepath", "route") if c in df.columns]
    review = df.loc[df["relabel"].to_numpy() & ~ids.duplicated().to_numpy(), review_cols]
    summary: dict[str, Any] = {
        "total_rows": len(df),
        "total_samples": int(ids.nunique()),
        "rows_by_route": totals,
        "check": {"input_rows": len(gaps), "accounted_rows": sum(totals.values()),
                  "ok": sum(totals.values()) == len(gaps)},
        "per_label": info["per_label"],
        "routed_labels": sorted(k for k, v in info["per_label"].items() if v["route"] != "dropped"),
        "dropped_labels": sorted(k for k, v in info["per_label"].items() if v["route"] == "dropped"),
        "outputs": {"mining_gaps.parquet": int(to_mining.sum()), "sdg_gaps.parquet": int(to_sdg.sum()),
                    "dropped.csv": int(dropped.sum()), "relabel_review.csv": len(review)},
        # the parquets hold one row per sample and light: the same outputs counted in samples
        "output_samples": {"mining_gaps.parquet": int(ids[to_mining].nunique()),
                           "sdg_gaps.parquet": int(ids[to_sdg].nunique()), "dropped.csv": int(ids[dropped].nunique()),
                           "relabel_review.csv": len(review)},
        "lights": int(df["light"].nunique()) if "light" in df.columns else 1,
        "relabel": {"method": info["relabel_method"], "samples": len(review), "excluded_from_routes": exclude_relabel},
        "priority": {"share": defaults.LIMITING_SHARE, "pinned_false_alarms": info["pinned"],
                     "sdg_labels": sorted(k for k in info["pinned"] if info["per_label"][k]["route"] in ("sdg", "both")),
                     "mining_labels": sorted(k for k in info["pinned"]
                                             if info["per_label"][k]["route"] in ("mining", "both"))},
        "sdg_labels": sdg_set,
        "sdg_pool": {**pool_facts, "samples_per_label": sdg_counts},
        "mining_pool": {"path": str(mining_pool_path), "rows_per_label": mining_counts},
        "gaps": str(gaps_path),
    }
    with atomic.atomic_path(out / "mining_gaps.parquet") as tmp:
        df[to_mining].to_parquet(tmp, index=False)
    with atomic.atomic_path(out / "sdg_gaps.parquet") as tmp:
        df[to_sdg].to_parquet(tmp, index=False)
    changenet_csv.write(df[dropped], out / "dropped.csv")
    changenet_csv.write(review, out / "relabel_review.csv")
    atomic.write_json(out / "routing_summary.json", summary)
    return summary
