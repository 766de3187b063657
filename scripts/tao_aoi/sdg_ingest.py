"""Take pre-generated synthetic defects (AnomalyGen output) into an iteration as ChangeNet rows.

``num_sdg`` rows are allocated across the labels routed to SDG: ``defaults.LIMITING_SHARE`` of them
to the families whose samples pin the KPI threshold, by the false alarms they pin, the rest in
proportion to the weak-sample counts (routing.priority_split; largest remainder, ties by label). Two gates the anchor documented but never enforced are
hard stops here, with numbers: a label whose pool holds fewer unused samples than allocated
(allocation mismatch), and a routed label whose samples lack an OK golden or a light (silent
drop). Samples used by an earlier iteration are never taken again (ledger keyed by sample name;
rerunning the same iteration replaces its own entries, so a retry after a crash is identical).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from tao_aoi import atomic, changenet_csv, defaults, labels, routing, sdg_pool, train_spec
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import comes_before

ROWS_FILE = "sdg_rows.csv"
ALLOCATION_FILE = "allocation.json"


def routed_counts(routing_dir: str | Path) -> tuple[dict[str, int], dict[str, float]]:
    """(weak samples, false alarms pinned by limiting samples) per label routed to SDG."""
    p = Path(routing_dir) / "sdg_gaps.parquet"
    if not p.is_file():
        raise UserError(f"--routing {routing_dir} has no sdg_gaps.parquet; run route_samples.py first")
    df = pd.read_parquet(p)
    if df.empty:
        return {}, {}
    df["label"] = df["label"].map(labels.canonical_label)
    per = pd.DataFrame({"label": df["label"], "id": routing.sample_ids(df)}).drop_duplicates()
    return {str(k): int(v) for k, v in per.groupby("label").size().items()}, routing.limiting_weights(df)


def allocate(num: int, weights: dict[str, int], pinned: dict[str, float] | None = None) -> dict[str, int]:
    """Rows per label: by weak counts, after the limiting families' share when ``pinned`` has any."""
    lim, rest = routing.priority_split(num, weights, pinned or {})
    return {k: lim.get(k, 0) + rest.get(k, 0) for k in sorted(weights)}


def _read_history(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"--history {path} is not valid JSON ({exc.msg}); restore it or remove it") from None
    used = data.get("used") if isinstance(data, dict) else None
    if not isinstance(used, dict):
        raise UserError(f"--history {path} has no 'used' mapping; it is written only by ingest_sdg.py")
    return {str(k): str(v) for k, v in used.items()}


def _samples(files: pd.DataFrame, lights: list[str]) -> pd.DataFrame:
    """One row per pool sample with its per-light NG/OK files and completeness."""
    files = files.copy()
    files["sample"] = files["template"] + "+" + files["label"] + "_" + files["idx"]
    multi = len(lights) > 1
    rows = []
    for (sample, label), grp in files.groupby(["sample", "label"], sort=True):
        by_light = {(r.light or ""): r for r in grp.itertuples()}
        per_light, problems = {}, []
        for light in lights:
            r = by_light.get(light) or (by_light.get("") if not multi else None)
            if r is None:
                problems.append(f"no {light} image")
            elif not r.paired:
                problems.append(f"{r.name} has no OK golden in {sdg_pool.OK_DIR}/")
            else:
                per_light[light] = (r.ng_file, r.ok_file)
        rows.append({"sample": sample, "label": label, "files": per_light, "problems": problems,
                     "complete": not problems,
                     "order": hashlib.sha1(sample.encode()).hexdigest()})
    return pd.DataFrame(rows, columns=["sample", "label", "files", "problems", "complete", "order"])


def _stage(src: str, dst: Path, ext: str) -> None:
    if os.path.splitext(src)[1].lower() == ext.lower():
        shutil.copyfile(src, dst)
        return
    from PIL import Image

    try:
        with Image.open(src) as im:
            im.load()
            im.save(dst)
    except OSError as exc:
        raise UserError(f"SDG image {src} cannot be read ({exc}); regenerate or remove that sample") from None


def ingest(routing_dir: str | Path, pool: str | Path, num_sdg: int, results_dir: str | Path,
           images_root: str | Path, spec_path: str | Path, history: str | Path, iteration: str) -> dict:
    if num_sdg < 0:
        raise UserError(f"--num-sdg must be >= 0, got {num_sdg}")
    spec = train_spec.load(spec_path)
    lights, ext = train_spec.lights(spec, spec_path), train_spec.image_ext(spec, spec_path)
    out = Path(results_dir).resolve()
    root = Path(images_root).resolve()
    weak, pinned = routed_counts(routing_dir)
    for_limiting, _ = routing.priority_split(num_sdg, weak, pinned)
    alloc = allocate(num_sdg, weak, pinned)
    hist_path = Path(history)
    used = _read_history(hist_path)
    earlier = {s for s, it in used.items() if comes_before(it, iteration)}

    files, facts = sdg_pool.scan(pool) if weak else (pd.DataFrame(columns=["template", "label", "idx", "light"]), {})
    samples = _samples(files, lights) if len(files) else pd.DataFrame(
        columns=["sample", "label", "files", "problems", "complete", "order"])

    per_label: dict[str, dict] = {}
    chosen = []
    for label, n in alloc.items():
        mine = samples[samples["label"] == label]
        broken = mine[~mine["complete"]]
        if len(broken):
            ex = broken.iloc[0]
            raise HardStop(
                f"silent drop: {len(broken)} of {len(mine)} {label} samples in {pool} are incomplete "
                f"(e.g. {ex['sample']}: {'; '.join(ex['problems'])}); every NG image needs its OK golden for "
                f"each light {lights} - fix the pool and retry sdg")
        fresh = mine[~mine["sample"].isin(earlier)].sort_values("order")
        per_label[label] = {"weak": weak[label], "pinned_false_alarms": pinned.get(label, 0.0),
                            "allocated": n, "for_limiting": for_limiting.get(label, 0), "pool_samples": int(len(mine)),
                            "used_earlier": int(mine["sample"].isin(earlier).sum()), "available": int(len(fresh))}
        chosen.append(fresh.head(n))
    short = [k for k, v in per_label.items() if v["allocated"] > v["available"]]
    if short:
        from tao_aoi.sdg_supply import largest_num_sdg

        v = per_label[short[0]]
        fits = largest_num_sdg(weak, {k: r["available"] for k, r in per_label.items()}, 1, num_sdg, pinned)
        raise HardStop(
            f"allocation mismatch: {short[0]} was allocated {v['allocated']} of num_sdg={num_sdg} rows but the pool has "
            f"only {v['available']} unused samples ({v['pool_samples']} in total, {v['used_earlier']} used by earlier "
            f"iterations); add samples to {pool}, or lower --num-sdg (at most {fits} fits what is left; the new "
            f"value applies from {iteration} on), then retry sdg")

    picked = pd.concat(chosen) if chosen else samples.head(0)
    rows = []
    ng_rel = os.path.relpath(out / "images" / "ng", root)
    ok_rel = os.path.relpath(out / "images" / "ok", root)
    with atomic.atomic_dir(out) as tmp:
        (tmp / "images" / "ng").mkdir(parents=True)
        (tmp / "images" / "ok").mkdir(parents=True)
        for s in picked.itertuples():
            for light, (ng, ok) in s.files.items():
                _stage(ng, tmp / "images" / "ng" / f"{s.sample}_{light}{ext}", ext)
                _stage(ok, tmp / "images" / "ok" / f"{s.sample}_{light}{ext}", ext)
            rows.append({"input_path": ng_rel, "golden_path": ok_rel, "label": s.label, "object_name": s.sample,
                         "source": "sdg", "sdg_sample": s.sample, "iteration": iteration})
        df = pd.DataFrame(rows, columns=["input_path", "golden_path", "label", "object_name", "source",
                                         "sdg_sample", "iteration"])
        changenet_csv.write(df, tmp / ROWS_FILE)
        allocation = {
            "iteration": iteration,
            "num_sdg": num_sdg,
            "weak_counts": weak,
            "pinned_false_alarms": pinned,
            "limiting_share": defaults.LIMITING_SHARE if any(for_limiting.values()) else 0.0,
            "allocated": alloc,
            "ingested": {k: int((df["label"] == k).sum()) for k in alloc},
            "total_ingested": int(len(df)),
            "per_label": per_label,
            "pool": {k: v for k, v in facts.items() if k != "unparsed_examples"},
            "lights": lights,
        }
        atomic.write_json(tmp / ALLOCATION_FILE, allocation)
    new_used = {s: it for s, it in used.items() if it != iteration}
    new_used.update({s: iteration for s in picked["sample"]})
    atomic.write_json(hist_path, {"used": dict(sorted(new_used.items()))})
    return allocation
