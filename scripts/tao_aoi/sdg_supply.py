"""What the pre-generated SDG pool can supply over a whole DEFT run, known before the run starts.

The RCA keeps the top-K weakest samples of every label whatever their scores, so a label's weak
count is min(top_k_per_label, its KPI samples) in every iteration; routing sends the label to SDG
when it is SDG-supported and the pool has it; ingest splits num_sdg by those counts
(``sdg_ingest.allocate``) and never takes a sample twice. Each label's demand per iteration is
therefore fixed, and the iteration at which the pool runs short is exact (if the loop gets there).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

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


def largest_num_sdg(weak: Mapping[str, int], available: Mapping[str, int], iterations: int, ceiling: int) -> int:
    """The largest num_sdg <= ceiling whose allocation the pool supplies for ``iterations`` iterations."""
    for n in range(int(ceiling), 0, -1):
        alloc = allocate(n, dict(weak))
        if all(alloc[k] * iterations <= available.get(k, 0) for k in alloc):
            return n
    return 0


def forecast(kpi_label_counts: Mapping[str, int], pool_samples: Mapping[str, int], *, sdg_labels: Iterable[str],
             top_k_per_label: int, num_sdg: int, max_iterations: int) -> dict[str, Any]:
    """Per-label demand vs supply over ``max_iterations``; ``short`` lists what runs out, and when."""
    weak = weak_counts(kpi_label_counts, pool_samples, sdg_labels, top_k_per_label)
    alloc = allocate(num_sdg, weak) if weak else {}
    labels = {}
    short = []
    for k, n in alloc.items():
        span = pool_samples.get(k, 0) // n if n else None
        labels[k] = {"weak": weak[k], "per_iteration": n, "pool_samples": int(pool_samples.get(k, 0)),
                     "needed": n * max_iterations, "lasts_iterations": span}
        if span is not None and span < max_iterations:
            short.append({"label": k, "at_iteration": span + 1, "per_iteration": n,
                          "pool_samples": int(pool_samples.get(k, 0)),
                          "missing": n * max_iterations - int(pool_samples.get(k, 0))})
    short.sort(key=lambda r: (r["at_iteration"], r["label"]))
    return {"num_sdg": num_sdg, "max_iterations": max_iterations, "labels": labels, "short": short,
            "lasts_iterations": lasts(alloc, pool_samples),
            "num_sdg_lasting": largest_num_sdg(weak, pool_samples, max_iterations, num_sdg) if short else num_sdg}


def warning(f: Mapping[str, Any], pool: str) -> str | None:
    """One line for pre-flight, with the fixes that work before the run and after a stop."""
    if not f["short"]:
        return None
    first = f["short"][0]
    at = first["at_iteration"]
    what = "; ".join(f"{r['label']} takes {r['per_iteration']} per iteration and the pool has {r['pool_samples']}"
                     for r in f["short"])
    add = ", ".join(f"{r['missing']} {r['label']}" for r in f["short"])
    fixes = [f"--num-sdg {f['num_sdg_lasting']} lasts all {f['max_iterations']} iterations" if f["num_sdg_lasting"]
             else "no --num-sdg above 0 lasts them all", f"--max-iterations {at - 1}" if at > 1 else None,
             f"add {add} samples to {pool}"]
    return (f"SDG pool runs short at iter{at} of {f['max_iterations']} with num_sdg={f['num_sdg']} ({what}): "
            f"iter{at}/sdg would stop with 'allocation mismatch'. Before the run: "
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
    return lasts(allocate(num_sdg, weak), pool) if weak else None
