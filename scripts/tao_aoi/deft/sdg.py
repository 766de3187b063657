"""Synthetic defects (SDG): the pre-generated AnomalyGen pool, its ingest into an iteration, and what
it can supply over a whole run.

**The pool.** The pre-generated synthetic pool in AnomalyGen's output layout (DESIGN.md section 4).

``<pool>/reconstructed_image/`` holds synthetic NG images and ``<pool>/original_image/`` their OK
goldens under identical names ``<T>+<LABEL>_<idx><ext>`` or ``<T>+<LABEL>_<idx>_<light><ext>``.
An optional ``SDG_result.csv`` manifest overrides the label of the files it names (it needs a
``label`` column and a file column). Callers may pass the pool directory or the manifest itself.
One sample = one (T, LABEL, idx); it is *paired* when every NG file of it has its OK twin.

**Ingest.** Take pre-generated synthetic defects (AnomalyGen output) into an iteration as ChangeNet rows.

``num_sdg`` rows are allocated across the labels routed to SDG: ``defaults.LIMITING_SHARE`` of them
to the families whose samples pin the KPI threshold, by the false alarms they pin, the rest in
proportion to the weak-sample counts (priority.priority_split; largest remainder, ties by label).
The priority rows are *targeted*: within a family they are split over its limiting samples by the
false alarms each pins, and each takes the pool pairs nearest to it (cosine over the run's
embedder, the same one mining uses; the pool is embedded once and cached, ``pool_embeddings``);
a pair near several goes to the most similar (``nearest_pairs``). The rest of each label's rows are
filled in the pool's fixed hash order, as before. ``sdg_rows.csv`` (``target``, ``similarity``,
``limiting_rank``), ``allocation.json`` (``targeted``) and the history (``picked_for``) say which pair
was picked for which sample, with its similarity. Two gates the anchor documented but never enforced are
hard stops here, with numbers: a label whose pool holds fewer unused samples than allocated
(allocation mismatch), and a routed label whose samples lack an OK golden or a light (silent
drop). Samples used by an earlier iteration are never taken again (ledger keyed by sample name;
rerunning the same iteration replaces its own entries, so a retry after a crash is identical).

**Supply.** What the pre-generated SDG pool can supply over a whole DEFT run, known before the run starts.

The RCA keeps the top-K weakest samples of every label whatever their scores, so a label's weak
count is min(top_k_per_label, its KPI samples) in every iteration; routing sends the label to SDG
when it is SDG-supported and the pool has it. Ingest splits num_sdg by those counts, except that
when defects pin the KPI threshold (limiting samples) ``defaults.LIMITING_SHARE`` of it goes to their
families first (``allocate``); which family pins the threshold is known only after each
RCA. So a label's demand per iteration lies between fixed bounds: at most what it gets as the only
limiting family (a defect) or with none (PASS, whose share only shrinks when a family has priority).
The forecast gives the iteration at which the pool runs short with no limiting family (exact if no
family ever pins the threshold) and the earliest iteration it can run short (the bound above).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from tao_aoi import atomic, defaults, labels
from tao_aoi.data import changenet_csv
from tao_aoi.deft import priority
from tao_aoi.errors import HardStop, UserError
from tao_aoi.labels import PASS
from tao_aoi.layout import comes_before
from tao_aoi.tao import train_spec

# ---- the pool (AnomalyGen's output layout)

NG_DIR = "reconstructed_image"
OK_DIR = "original_image"
MANIFEST = "SDG_result.csv"
MANIFEST_FILE_COLUMNS = ("reconstructed_image", "image", "image_name", "image_path", "filename", "file_name", "file")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# Label is non-greedy so EXCESS_SOLDER_3_SolderLight -> EXCESS_SOLDER, 3, SolderLight.
_NAME = re.compile(r"^(?P<template>[^+]+)\+(?P<label>.+?)_(?P<idx>\d+)(?:_(?P<light>[^+]+))?$")


def parse_name(stem: str) -> dict[str, str] | None:
    m = _NAME.match(stem)
    if not m:
        return None
    return {"template": m["template"], "label": labels.canonical_label(m["label"]), "idx": m["idx"],
            "light": m["light"] or ""}


def _root_and_manifest(path: str | Path) -> tuple[Path, Path | None]:
    p = Path(path)
    if p.is_dir():
        return p, (p / MANIFEST if (p / MANIFEST).is_file() else None)
    if p.is_file() and p.suffix.lower() == ".csv":
        return p.parent, p
    raise UserError(f"SDG pool {p} is neither a pool directory ({NG_DIR}/ + {OK_DIR}/) nor its {MANIFEST}; "
                    f"point it at the AnomalyGen output folder")


def _manifest_labels(manifest: Path) -> tuple[dict[str, str], str]:
    """basename -> canonical label from the manifest, and a note on how it was used."""
    df = changenet_csv.read(manifest, (), what="SDG manifest", allow_empty=True, canonicalize=False)
    cols = {c.lower(): c for c in df.columns}
    file_col = next((cols[c] for c in MANIFEST_FILE_COLUMNS if c in cols), None)
    if "label" not in cols or file_col is None:
        return {}, (f"{manifest.name} ignored: it needs a 'label' column and one of "
                    f"{', '.join(MANIFEST_FILE_COLUMNS)}; labels come from file names")
    names = df[file_col].map(lambda s: os.path.basename(str(s).strip()))
    lab = df[cols["label"]].map(labels.canonical_label)
    bad = [i for i, v in enumerate(lab) if not labels.is_valid_canonical(v)]
    if bad:
        raise UserError(f"{manifest} line {bad[0] + 2}: label {df[cols['label']].iat[bad[0]]!r} is not a label")
    return dict(zip(names, lab)), f"labels from {manifest.name} ({len(df)} rows)"


def scan(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per NG file (name, template, label, idx, light, ng_file, ok_file, paired) + pool facts."""
    root, manifest = _root_and_manifest(path)
    ng_dir, ok_dir = root / NG_DIR, root / OK_DIR
    if not ng_dir.is_dir():
        raise UserError(f"SDG pool {root} has no {NG_DIR}/ folder; point it at the AnomalyGen output folder")
    ok_names = set(os.listdir(ok_dir)) if ok_dir.is_dir() else set()
    override, note = _manifest_labels(manifest) if manifest else ({}, f"no {MANIFEST}; labels come from file names")
    rows, unparsed = [], []
    ng_str, ok_str = str(ng_dir), str(ok_dir)
    for name in sorted(os.listdir(ng_dir)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTS:
            continue
        parsed = parse_name(stem)
        if parsed is None:
            unparsed.append(name)
            continue
        parsed["label"] = override.get(name, parsed["label"])
        rows.append({"name": name, **parsed, "ng_file": os.path.join(ng_str, name),  # str joins: 4x Path's
                     "ok_file": os.path.join(ok_str, name), "paired": name in ok_names})
    df = pd.DataFrame(rows, columns=["name", "template", "label", "idx", "light", "ng_file", "ok_file", "paired"])
    facts = {"path": str(root), "manifest": note, "files": len(df), "unpaired_files": int((~df["paired"]).sum()),
             "unparsed_files": len(unparsed), "unparsed_examples": unparsed[:5]}
    return df, facts


def samples_per_label(files: pd.DataFrame) -> dict[str, int]:
    """Paired samples per label: a sample counts only if all its light files have their golden."""
    if files.empty:
        return {}
    ok = files.groupby(["template", "label", "idx"], sort=True)["paired"].all()
    ok = ok[ok]
    return {str(k): int(v) for k, v in ok.groupby(level="label").size().items()}


# ---- ingest into one iteration

ROWS_FILE = "sdg_rows.csv"
ALLOCATION_FILE = "allocation.json"
ROW_COLUMNS = ["input_path", "golden_path", "label", "object_name", "source", "sdg_sample", "iteration", "target",
               "similarity", "limiting_rank"]
VIEW_DIR = "pool_view"  # pool pairs renamed <sample>_<light><ext> for the embedder, when their names differ


def routed_counts(routing_dir: str | Path) -> tuple[dict[str, int], dict[str, float]]:
    """(weak samples, false alarms pinned by limiting samples) per label routed to SDG."""
    p = Path(routing_dir) / "sdg_gaps.parquet"
    if not p.is_file():
        raise UserError(f"--routing {routing_dir} has no sdg_gaps.parquet; run route_samples.py first")
    df = pd.read_parquet(p)
    if df.empty:
        return {}, {}
    df["label"] = df["label"].map(labels.canonical_label)
    per = pd.DataFrame({"label": df["label"], "id": priority.sample_ids(df)}).drop_duplicates()
    return {str(k): int(v) for k, v in per.groupby("label").size().items()}, priority.limiting_weights(df)


def allocate(num: int, weights: dict[str, int], pinned: dict[str, float] | None = None) -> dict[str, int]:
    """Rows per label: by weak counts, after the limiting families' share when ``pinned`` has any."""
    lim, rest = priority.priority_split(num, weights, pinned or {})
    return {k: lim.get(k, 0) + rest.get(k, 0) for k in sorted(weights)}


def _read_history(path: Path) -> tuple[dict[str, str], dict[str, dict]]:
    """(sample -> iteration that used it, sample -> what it was picked for: iteration, target, similarity)."""
    if not path.exists():
        return {}, {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"--history {path} is not valid JSON ({exc.msg}); restore it or remove it") from None
    used = data.get("used") if isinstance(data, dict) else None
    picked = data.get("picked_for", {}) if isinstance(data, dict) else None
    if not isinstance(used, dict) or not isinstance(picked, dict):
        raise UserError(f"--history {path} has no 'used' mapping; it is written only by ingest_sdg.py")
    return {str(k): str(v) for k, v in used.items()}, {str(k): v for k, v in picked.items() if isinstance(v, dict)}


def _samples(files: pd.DataFrame, lights: list[str]) -> pd.DataFrame:
    """One row per pool sample with its per-light NG/OK files and completeness, sorted by sample.

    A light's file is the sample's file of that light (the last in file-name order if there are several),
    else, with one light only, its file without a light suffix. Column operations, not a loop over
    samples: a 50k-sample pool took ~50 s per ingest that way (bench/scale.py).
    """
    files = files.assign(sample=files["template"] + "+" + files["label"] + "_" + files["idx"])
    files = files.drop_duplicates(["sample", "label", "light"], keep="last")
    out = files[["sample", "label"]].drop_duplicates().sort_values(["sample", "label"]).reset_index(drop=True)
    key = pd.MultiIndex.from_frame(out)

    def of_light(light: str) -> pd.DataFrame:
        cols = ["name", "ng_file", "ok_file", "paired"]
        return files.loc[files["light"] == light].set_index(["sample", "label"])[cols].reindex(key)

    per_light, problems = [], []
    for light in lights:
        r = of_light(light)
        if len(lights) == 1:
            r = r.combine_first(of_light(""))
        found = r["name"].notna().to_numpy()
        paired = found & r["paired"].fillna(False).to_numpy(dtype=bool)
        per_light.append([(ng, ok) if both else None for ng, ok, both in zip(r["ng_file"], r["ok_file"], paired)])
        problems.append(np.where(~found, f"no {light} image",
                                 np.where(paired, "", r["name"].astype(str) + f" has no OK golden in {OK_DIR}/")))
    none: list[tuple] = [()] * len(out)  # no light: nothing to pair, nothing missing
    out["files"] = [{lt: f for lt, f in zip(lights, fs) if f is not None} for fs in (zip(*per_light) if lights else none)]
    out["problems"] = [[p for p in ps if p] for ps in (zip(*problems) if lights else none)]
    out["complete"] = [not p for p in out["problems"]]
    out["order"] = [hashlib.sha1(s.encode()).hexdigest() for s in out["sample"]]
    return out[["sample", "label", "files", "problems", "complete", "order"]]


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


# ---- targeted picks: the pool pairs nearest each limiting sample


def limiting_targets(routing_dir: str | Path | None, images_root: Path) -> pd.DataFrame:
    """The limiting samples routed to SDG, one row each (ChangeNet columns, ``key``, ``pinned_share``,
    ``limiting_rank``), best rank first; empty when none pins the threshold (or ``routing_dir`` None)."""
    from tao_aoi.deft import mining

    if routing_dir is None:
        return pd.DataFrame(columns=[*changenet_csv.REQUIRED, "key", "pinned_share", "limiting_rank"])
    rows, keys, pinned, rank = mining.targets_from_gaps(Path(routing_dir) / "sdg_gaps.parquet", images_root,
                                                        where="--routing: its")
    sel = rank > 0
    out = rows[sel].assign(key=keys[sel].to_numpy(), pinned_share=pinned[sel], limiting_rank=rank[sel])
    return out.sort_values("limiting_rank", kind="stable").reset_index(drop=True)


def target_quotas(for_limiting: Mapping[str, int], targets: pd.DataFrame) -> list[int]:
    """Rows per limiting sample: its family's priority rows split by the false alarms each pins
    (largest remainder; ties to the better rank)."""
    quota = [0] * len(targets)
    for label, n in for_limiting.items():
        idx = [i for i, lb in enumerate(targets["label"]) if lb == label]
        weights = {f"{int(targets['limiting_rank'].iat[i]):09d}": float(targets["pinned_share"].iat[i]) for i in idx}
        got = priority.split(n, {k: w for k, w in weights.items() if w > 0})
        for i in idx:
            quota[i] = got.get(f"{int(targets['limiting_rank'].iat[i]):09d}", 0)
    return quota


def nearest_pairs(targets, pool, quotas) -> list[tuple[int, int, float]]:
    """(target, pool row, cosine) picks: every (target, pair) by cosine, best first (ties: the target
    listed first, then the lower pool row); a pair goes to the first target that still needs one.
    ``targets``, ``pool``: unit float32 rows. Only a target's ``sum(quotas)`` nearest rows can be
    reached (others take at most the rest), so the exact top-k of that size is all it looks at."""
    import numpy as np

    from tao_aoi.deft import mining

    need = np.asarray(quotas, dtype=np.int64).copy()
    want = np.flatnonzero(need > 0)
    k = min(int(need.sum()), len(pool))
    if k == 0 or not len(want):
        return []
    sims, idx = mining.knn_exact(np.ascontiguousarray(targets[want]), pool, k, unit=True)
    t = np.repeat(want, idx.shape[1])
    order = np.lexsort((idx.ravel(), t, -sims.ravel().astype(np.float64)))
    taken: set[int] = set()
    picks = []
    for j in order.tolist():
        ti, pi = int(t[j]), int(idx.ravel()[j])
        if need[ti] > 0 and pi not in taken:
            need[ti] -= 1
            taken.add(pi)
            picks.append((ti, pi, float(sims.ravel()[j])))
    return picks


def _embedding_rows(samples: pd.DataFrame, lights: list[str], ext: str, view: Path) -> pd.DataFrame:
    """One ChangeNet row per pool sample (NG as test, OK as golden, absolute folders) the embedder can
    read as ``<folder>/<sample>_<light><ext>``; a sample whose files are named otherwise (no light
    suffix, another extension) is linked or converted into ``view`` under that name first."""
    rows = []
    for smp in samples.itertuples():
        dirs = []
        for side, pos in (("ng", 0), ("ok", 1)):
            files = [smp.files[light][pos] for light in lights]
            folders = {os.path.dirname(f) for f in files}
            if len(folders) == 1 and all(os.path.basename(f) == f"{smp.sample}_{light}{ext}"
                                         for f, light in zip(files, lights)):
                dirs.append(folders.pop())
                continue
            dst = view / side
            dst.mkdir(parents=True, exist_ok=True)
            for f, light in zip(files, lights):
                target = dst / f"{smp.sample}_{light}{ext}"
                if not target.exists():
                    _link_or_stage(f, target, ext)
            dirs.append(str(dst))
        rows.append({"input_path": dirs[0], "golden_path": dirs[1], "label": smp.label, "object_name": smp.sample})
    return pd.DataFrame(rows, columns=list(changenet_csv.REQUIRED))


def _link_or_stage(src: str, dst: Path, ext: str) -> None:
    if os.path.splitext(src)[1].lower() == ext.lower():
        try:
            os.link(src, dst)  # the same bytes; a container sees a hard link where a symlink would dangle
            return
        except OSError:
            pass
    _stage(src, dst, ext)


def _listing(samples: pd.DataFrame, lights: list[str]) -> str:
    """Digest of the pool's complete samples: names, labels and every file's size and mtime."""
    digest = hashlib.sha256()
    for smp in samples.itertuples():
        digest.update(f"{smp.sample}\0{smp.label}".encode())
        for light in lights:
            for f in smp.files[light]:
                st = os.stat(f)
                digest.update(f"\0{f}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def pick_for_limiting(targets: pd.DataFrame, quotas: list[int], fresh: pd.DataFrame, every: pd.DataFrame,
                      backend, images_root: Path, spec_path: Path, cache_dir: Path | None, workdir: Path,
                      lights: list[str], ext: str, pool_root: str, reference: tuple[Path, Path | None] | None = None
                      ) -> tuple[list[dict], dict]:
    """The targeted picks: [{target index, sample, similarity}], and what the embedding was (embedder,
    pool embeddings cached or embedded). ``every``: the pool's complete samples (what is embedded and
    cached); ``fresh``: those not used by an earlier iteration, in the fill order. ``reference``: (the
    mining pool CSV, its embedding cache): an embedder that standardises (the local one) is
    standardised by those real production rows, not by the SDG pool's clean pairs (on the field
    workspace the nearest pairs of a hard tongue of solder were then hard tongues; by the SDG pool's
    own spread, easy fillets), and mining later finds that embedding in its cache."""
    import numpy as np

    from tao_aoi.deft import mining

    every = every.sort_values("sample").reset_index(drop=True)
    view = (cache_dir or workdir) / VIEW_DIR
    source = {"sdg_pool": pool_root, "listing_sha256": _listing(every, lights),
              **mining.spec_source(images_root, spec_path)}
    p_rows = _embedding_rows(every, lights, ext, view)
    p_emb, p_set, pool_from = mining.pool_embeddings(backend, p_rows, source, images_root, spec_path, cache_dir,
                                                     workdir)
    t_emb, t_set = mining.embed_rows(backend, targets, images_root, spec_path, workdir / "target_embeddings.parquet")
    mining.require_same_embedder(t_emb, t_set, p_emb, p_set, pool_from, cache_dir, backend, "sdg")
    ref_emb, standardised_by = None, "sdg pool"
    if t_set.get("standardise") == "pool" and reference is not None and reference[0].is_file():
        _, ref_rows = mining.read_pool(reference[0], images_root)
        if len(ref_rows):
            ref_emb, r_set, r_from = mining.pool_embeddings(backend, ref_rows, reference[0], images_root, spec_path,
                                                            reference[1], workdir / "reference")
            mining.require_same_embedder(t_emb, t_set, ref_emb, r_set, r_from, reference[1], backend, "sdg")
            standardised_by = f"mining pool {reference[0]} ({r_from})"
    t_emb, p_emb = mining.comparable(t_emb, p_emb, t_set, reference=ref_emb)
    t_unit, p_unit = mining.unit_rows(t_emb, inplace=True), mining.unit_rows(p_emb, inplace=True)
    row_of = {name: i for i, name in enumerate(every["sample"])}
    picks = []
    for label in dict.fromkeys(targets["label"]):
        t_idx = np.flatnonzero((targets["label"] == label).to_numpy())
        cand = fresh[fresh["label"] == label]["sample"].to_numpy()  # in the fill order: ties go the same way
        rows = np.array([row_of[c] for c in cand], dtype=np.int64)
        got = nearest_pairs(t_unit[t_idx], np.ascontiguousarray(p_unit[rows]), [quotas[i] for i in t_idx])
        picks += [{"target": int(t_idx[ti]), "sample": str(cand[pi]), "similarity": round(min(max(sim, -1.0), 1.0), 6)}
                  for ti, pi, sim in got]
    return picks, {"embedder": t_set, "pool_embeddings": pool_from, "pool_samples_embedded": int(len(every)),
                   **({"standardised_by": standardised_by} if t_set.get("standardise") == "pool" else {})}


def ingest(routing_dir: str | Path, pool: str | Path, num_sdg: int, results_dir: str | Path,
           images_root: str | Path, spec_path: str | Path, history: str | Path, iteration: str, *,
           backend=None, cache_dir: str | Path | None = None, reference_pool: str | Path | None = None,
           reference_cache: str | Path | None = None) -> dict:
    """The sdg stage. ``backend``: where the embedder runs for the targeted picks (None: the local
    one); ``cache_dir``: where the pool's embeddings are kept across iterations; ``reference_pool``
    (the mining pool CSV) and ``reference_cache`` (mining's embedding cache): what a standardising
    embedder is standardised by (``pick_for_limiting``)."""
    if num_sdg < 0:
        raise UserError(f"--num-sdg must be >= 0, got {num_sdg}")
    spec = train_spec.load(spec_path)
    lights, ext = train_spec.lights(spec, spec_path), train_spec.image_ext(spec, spec_path)
    out = Path(results_dir).resolve()
    root = Path(images_root).resolve()
    weak, pinned = routed_counts(routing_dir)
    for_limiting, _ = priority.priority_split(num_sdg, weak, pinned)
    alloc = allocate(num_sdg, weak, pinned)
    hist_path = Path(history)
    used, picked_for = _read_history(hist_path)
    earlier = {s for s, it in used.items() if comes_before(it, iteration)}

    files, facts = scan(pool) if weak else (pd.DataFrame(columns=["template", "label", "idx", "light"]), {})
    samples = _samples(files, lights) if len(files) else pd.DataFrame(
        columns=["sample", "label", "files", "problems", "complete", "order"])

    per_label: dict[str, dict] = {}
    fresh_of: dict[str, pd.DataFrame] = {}
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
        fresh_of[label] = fresh
    short = [k for k, v in per_label.items() if v["allocated"] > v["available"]]
    if short:
        v = per_label[short[0]]
        fits = largest_num_sdg(weak, {k: r["available"] for k, r in per_label.items()}, 1, num_sdg, pinned)
        raise HardStop(
            f"allocation mismatch: {short[0]} was allocated {v['allocated']} of num_sdg={num_sdg} rows but the pool has "
            f"only {v['available']} unused samples ({v['pool_samples']} in total, {v['used_earlier']} used by earlier "
            f"iterations); add samples to {pool}, or lower --num-sdg (at most {fits} fits what is left; the new "
            f"value applies from {iteration} on), then retry sdg")

    rows = []
    ng_rel = os.path.relpath(out / "images" / "ng", root)
    ok_rel = os.path.relpath(out / "images" / "ok", root)
    with atomic.atomic_dir(out) as tmp:
        targets = limiting_targets(routing_dir, root) if any(for_limiting.values()) else limiting_targets(None, root)
        quotas = target_quotas(for_limiting, targets)
        targeted: list[dict] = []
        embedding: dict = {}
        if sum(quotas):
            from tao_aoi.backends import get_backend

            targeted, embedding = pick_for_limiting(
                targets, quotas, pd.concat(fresh_of.values()), samples[samples["complete"]],
                backend or get_backend("local"), root, Path(spec_path), Path(cache_dir) if cache_dir else None, tmp,
                lights, ext, str(facts.get("path", pool)),
                (Path(reference_pool), Path(reference_cache) if reference_cache else None) if reference_pool else None)
        by_sample = {p["sample"]: p for p in targeted}
        chosen = []  # each label: its targeted picks first, then the rest in the pool's hash order
        for label, n in alloc.items():
            fresh = fresh_of[label]
            first = fresh[fresh["sample"].isin(by_sample)]
            chosen.append(pd.concat([first, fresh[~fresh["sample"].isin(by_sample)].head(n - len(first))]))
            per_label[label]["targeted"] = int(len(first))
        picked = pd.concat(chosen) if chosen else samples.head(0)
        (tmp / "images" / "ng").mkdir(parents=True)
        (tmp / "images" / "ok").mkdir(parents=True)
        for s in picked.itertuples():
            for light, (ng, ok) in s.files.items():
                _stage(ng, tmp / "images" / "ng" / f"{s.sample}_{light}{ext}", ext)
                _stage(ok, tmp / "images" / "ok" / f"{s.sample}_{light}{ext}", ext)
            hit = by_sample.get(s.sample)
            tgt = targets.iloc[hit["target"]] if hit else None
            rows.append({"input_path": ng_rel, "golden_path": ok_rel, "label": s.label, "object_name": s.sample,
                         "source": "sdg", "sdg_sample": s.sample, "iteration": iteration,
                         "target": tgt["key"] if hit else "", "similarity": hit["similarity"] if hit else "",
                         "limiting_rank": int(tgt["limiting_rank"]) if hit else 0})
        df = pd.DataFrame(rows, columns=ROW_COLUMNS)
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
            "targeted": [{"target": t.key, "label": t.label, "limiting_rank": int(t.limiting_rank),
                          "pinned_share": float(t.pinned_share), "rows": int(q),
                          "picked": [{"sample": p["sample"], "similarity": p["similarity"]}
                                     for p in targeted if p["target"] == i]}
                         for i, (t, q) in enumerate(zip(targets.itertuples(), quotas))],
            **embedding,
        }
        atomic.write_json(tmp / ALLOCATION_FILE, allocation)
    new_used = {s: it for s, it in used.items() if it != iteration}
    new_used.update({s: iteration for s in picked["sample"]})
    new_picked = {s: v for s, v in picked_for.items() if v.get("iteration") != iteration}
    new_picked.update({p["sample"]: {"iteration": iteration, "target": targets["key"].iat[p["target"]],
                                     "similarity": p["similarity"]} for p in targeted})
    atomic.write_json(hist_path, {"used": dict(sorted(new_used.items())), "picked_for": dict(sorted(new_picked.items()))})
    return allocation


# ---- supply over a run

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
    if not ws.sdg_pool.is_dir() or not ws.kpi_csv.is_file():
        return None
    files, _ = scan(ws.sdg_pool)
    pool = samples_per_label(files)
    counts = {str(k): int(v) for k, v in changenet_csv.read(ws.kpi_csv, what="KPI set")["label"].value_counts().items()}
    weak = weak_counts(counts, pool, defaults.SDG_LABELS, top_k_per_label or defaults.TOP_K_PER_LABEL)
    return lasts(most_per_iteration(num_sdg, weak), pool) if weak else None
