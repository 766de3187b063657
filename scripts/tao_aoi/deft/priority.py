"""Priority of the limiting samples (the defects that pin the KPI threshold; gap analysis marks them
``limiting_rank`` > 0 with their ``pinned_share`` of false alarms): ``LIMITING_SHARE`` of what the
later stages hand out goes to them, in proportion to the false alarms they pin, and the rest is
split as before. SDG ingest: that share of ``num_sdg`` to their families (the rest by weak counts);
mining: extra neighbour slots for those samples, that share of all slots (every target keeps its
``top_k``). So a family that pins the threshold gets its share even when it has few weak rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tao_aoi import defaults


def sample_ids(df: pd.DataFrame) -> pd.Series:
    """One id per sample of a gaps parquet (it has one row per light); SDG ingest counts with it too."""
    if {"input_path", "object_name"} <= set(df.columns):
        return df["input_path"].astype(str) + "\x00" + df["object_name"].astype(str)
    return df["filepath"].astype(str)


def limiting_weights(df: pd.DataFrame) -> dict[str, float]:
    """False alarms pinned per label by its limiting samples (sum of ``pinned_share``, one per sample)."""
    if not {"limiting_rank", "pinned_share"} <= set(df.columns) or df.empty:
        return {}
    first = ~sample_ids(df).duplicated().to_numpy()
    rank = pd.to_numeric(df["limiting_rank"], errors="coerce").fillna(0).to_numpy()
    share = pd.to_numeric(df["pinned_share"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    sel = first & (rank > 0) & (share > 0)
    sums = pd.Series(share[sel]).groupby(df["label"].to_numpy()[sel]).sum()
    return {str(k): float(v) for k, v in sums.sort_index().items()}


def split(num: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``num`` proportional to ``weights`` (ties: larger weight, then name)."""
    total = sum(weights.values())
    if num <= 0 or total <= 0:
        return {k: 0 for k in sorted(weights)}
    exact = {k: num * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    rest = num - sum(out.values())
    order = sorted(weights, key=lambda k: (-(exact[k] - out[k]), -weights[k], k))
    for k in order[:rest]:
        out[k] += 1
    return dict(sorted(out.items()))


def priority_split(num: int, weak: dict[str, int], pinned: dict[str, float],
                   share: float = defaults.LIMITING_SHARE) -> tuple[dict[str, int], dict[str, int]]:
    """(for the limiting families, for the weak counts): ``share`` of ``num`` by pinned false alarms
    among the labels in ``weak``, the rest by weak counts; both keyed by every label of ``weak``."""
    pinned = {k: v for k, v in pinned.items() if k in weak and v > 0}
    n_lim = int(num * share + 0.5) if pinned and num > 0 else 0
    lim = {k: 0 for k in weak} | split(n_lim, pinned)
    return dict(sorted(lim.items())), split(num - n_lim, weak)


def extra_neighbours(pinned: np.ndarray, top_k: int, share: float = defaults.LIMITING_SHARE) -> np.ndarray:
    """Extra k-NN slots per mining target: ``share`` of all slots to the limiting ones (``pinned`` > 0),
    split by the false alarms they pin; every target keeps ``top_k``."""
    pinned = np.asarray(pinned, dtype=np.float64)
    extra = np.zeros(pinned.size, dtype=np.int64)
    lim = np.flatnonzero(pinned > 0)
    if lim.size == 0 or not 0 < share < 1:
        return extra
    n_extra = int(share / (1 - share) * top_k * pinned.size + 0.5)
    got = split(n_extra, {f"{i:012d}": float(pinned[i]) for i in lim})
    extra[lim] = [got[f"{i:012d}"] for i in lim]
    return extra
