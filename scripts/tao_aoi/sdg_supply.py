"""What the pre-generated SDG pool can supply over a whole DEFT run, known before the run starts.

The RCA keeps the top-K weakest samples of every label whatever their scores, so a label's weak
count is min(top_k_per_label, its KPI samples) in every iteration; routing sends the label to SDG
when it is SDG-supported and the pool has it. Ingest splits num_sdg by those counts, except that
when defects pin the KPI threshold (limiting samples) ``defaults.LIMITING_SHARE`` of it goes to their
families first (``sdg_ingest.allocate``); which family pins the threshold is known only after each
RCA. So a label's demand per iteration lies between fixed bounds: at most what it gets as the only
limiting family (a defect) or with none (PASS, whose share only shrinks when a family has priority).
The forecast gives the iteration at which the pool runs short with no limiting family (exact if no
family ever pins the threshold) and the earliest iteration it can run short (the bound above).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from tao_aoi.labels import PASS
from tao_aoi.sdg_ingest import allocate


def weak_counts(kpi_label_counts: Mapping[str, int], pool_samples: Mapping[str, int], sdg_labels: Iterable[str],
                top_k_per_label: int) -> dict[str, int]:
    """Weak samples per label that routing will send to SDG in every iteration."""
    supported = set(sdg_labels)
    return {k: min(int(top_k_per_label), int(n)) for k, n in sorted(kpi_label_counts.items())
            if k in supported and pool_samples.get(k, 0) > 0 and n > 0}


def lasts(per_iteration: Mapping[str, int], pool_samples: Mapping[str, int]) -> int | None:
    """Iterations the pool can feed at this allocation (None = for ever: nothing is taken)."""
    spans = [pool_samples.get(k, 0) // n for k, n in per_iteration.items() if n > 0]
    return min(spans) if spans else None


def most_per_iteration(num_sdg: int, weak: Mapping[str, int]) -> dict[str, int]:
    """Each label's largest possible share of num_sdg in one iteration: a defect's as the only limiting
    family, PASS's with none (a non-empty limiting set only lowers the others' rows: the priority rows
    are split among its families, the rest by weak counts whatever the set)."""
    plain = allocate(num_sdg, dict(weak))
    return {k: n if k == PASS else max(n, allocate(num_sdg, dict(weak), {k: 1.0})[k]) for k, n in plain.items()}


def largest_num_sdg(weak: Mapping[str, int], available: Mapping[str, int], iterations: int, ceiling: int,
                    pinned: Mapping[str, float] | None = None, worst_case: bool = False) -> int:
    """The largest num_sdg <= ceiling whose allocation the pool supplies for ``iterations`` iterations:
    at the limiting families ``pinned`` (one iteration's exact split), or for any of them (``worst_case``)."""
    for n in range(int(ceiling), 0, -1):
        alloc = most_per_iteration(n, weak) if worst_case else allocate(n, dict(weak), dict(pinned or {}))
        if all(alloc[k] * iterations <= available.get(k, 0) for k in alloc):
            return n
    return 0


def _short(per_iteration: Mapping[str, int], pool_samples: Mapping[str, int], max_iterations: int) -> list[dict]:
    out = []
    for k, n in per_iteration.items():
        span = pool_samples.get(k, 0) // n if n else None
        if span is not None and span < max_iterations:
            out.append({"label": k, "at_iteration": span + 1, "per_iteration": n,
                        "pool_samples": int(pool_samples.get(k, 0)),
                        "missing": n * max_iterations - int(pool_samples.get(k, 0))})
    return sorted(out, key=lambda r: (r["at_iteration"], r["label"]))


def forecast(kpi_label_counts: Mapping[str, int], pool_samples: Mapping[str, int], *, sdg_labels: Iterable[str],
             top_k_per_label: int, num_sdg: int, max_iterations: int) -> dict[str, Any]:
    """Per-label demand vs supply over ``max_iterations``. ``short`` lists what can run out, and how early
    (each label at its largest share); ``short_without_priority`` the same if no family ever pins the KPI."""
    weak = weak_counts(kpi_label_counts, pool_samples, sdg_labels, top_k_per_label)
    plain = allocate(num_sdg, weak) if weak else {}
    most = most_per_iteration(num_sdg, weak) if weak else {}
    labels = {k: {"weak": weak[k], "per_iteration": n, "at_most_per_iteration": most[k],
                  "pool_samples": int(pool_samples.get(k, 0)), "needed": most[k] * max_iterations,
                  "lasts_iterations": pool_samples.get(k, 0) // most[k] if most[k] else None}
              for k, n in plain.items()}
    short = _short(most, pool_samples, max_iterations)
    return {"num_sdg": num_sdg, "max_iterations": max_iterations, "labels": labels, "short": short,
            "short_without_priority": _short(plain, pool_samples, max_iterations),
            "lasts_iterations": lasts(most, pool_samples),
            "num_sdg_lasting": (largest_num_sdg(weak, pool_samples, max_iterations, num_sdg, worst_case=True)
                                if short else num_sdg)}


def warning(f: Mapping[str, Any], pool: str) -> str | None:
    """One line for pre-flight, with the fixes that work before the run and after a stop."""
    if not f["short"]:
        return None
    first = f["short"][0]
    at = first["at_iteration"]
    what = "; ".join(f"{r['label']} takes up to {r['per_iteration']} per iteration and the pool has "
                     f"{r['pool_samples']}" for r in f["short"])
    plain = f["short_without_priority"]
    when = (f"at iter{plain[0]['at_iteration']} if no defect family pins the KPI threshold, as early as iter{at} "
            f"if one does (it gets priority rows)" if plain and plain[0]["at_iteration"] != at
            else f"at iter{at}" if plain else f"as early as iter{at} if a defect family pins the KPI threshold "
            f"(it gets priority rows; with none the pool lasts)")
    add = ", ".join(f"{r['missing']} {r['label']}" for r in f["short"])
    fixes = [f"--num-sdg {f['num_sdg_lasting']} lasts all {f['max_iterations']} iterations" if f["num_sdg_lasting"]
             else "no --num-sdg above 0 lasts them all", f"--max-iterations {at - 1}" if at > 1 else None,
             f"add {add} samples to {pool}"]
    return (f"SDG pool runs short within {f['max_iterations']} iterations with num_sdg={f['num_sdg']}: {when} "
            f"({what}); that iteration's sdg stage would stop with 'allocation mismatch'. Before the run: "
            + ", or ".join(x for x in fixes if x)
            + ". After such a stop: rerun with a lower --num-sdg; it applies from that iteration on")


def lasts_for_workspace(ws, num_sdg: int, top_k_per_label: int | None = None) -> int | None:
    """Iterations the workspace's SDG pool feeds at ``num_sdg`` (None: no label takes from it)."""
    from tao_aoi import changenet_csv, defaults, sdg_pool

    if not ws.sdg_pool.is_dir() or not ws.kpi_csv.is_file():
        return None
    files, _ = sdg_pool.scan(ws.sdg_pool)
    pool = sdg_pool.samples_per_label(files)
    counts = {str(k): int(v) for k, v in changenet_csv.read(ws.kpi_csv, what="KPI set")["label"].value_counts().items()}
    weak = weak_counts(counts, pool, defaults.SDG_LABELS, top_k_per_label or defaults.TOP_K_PER_LABEL)
    return lasts(most_per_iteration(num_sdg, weak), pool) if weak else None
