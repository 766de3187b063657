"""What a generated workspace offers DEFT, measured for tests and benchmarks (the pipeline never
calls these): whether the mining floor separates the families, and every pool row of the families
base training lacks (the headroom DEFT can reach from the pools).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tao_aoi import defaults
from tao_aoi.layout import Workspace
from tao_aoi.tao import train_spec


def similarity_check(workspace: str | Path, floor: float | None = None, k: int = defaults.TOP_K_PER_TARGET):
    """Is the mining floor meaningful on this workspace? For every KPI row (the weak samples DEFT
    mines for come from there), its ``k`` nearest mining-pool rows by the local embedder's cosine,
    compared as mining compares them (``mining.comparable``; floor None = the embedder's own):
    one line per (label, severity) with the share of targets that find a same-label row at or above
    ``floor``, the share of kept neighbours (>= floor) that have the target's label, and how many
    other-label pool rows per target clear the floor."""
    import pandas as pd

    from tao_aoi.data import changenet_csv
    from tao_aoi.deft import mining
    from tao_aoi.model import features

    ws = Workspace.at(workspace)
    spec = train_spec.load(ws.baseline_spec)
    lights, ext = train_spec.lights(spec), train_spec.image_ext(spec)
    kpi = changenet_csv.read(ws.kpi_csv)
    pool = changenet_csv.read(ws.mining_pool_csv)
    cfg = features.config_for(pool, ws.images, lights, ext)
    settings = features.embedder_settings(lights, ext, cfg)
    floor = mining.floor_for(settings) if floor is None else floor
    t_emb, p_emb = mining.comparable(features.embeddings(kpi, ws.images, lights, ext, cfg),
                                     features.embeddings(pool, ws.images, lights, ext, cfg), settings)
    sim = mining.unit_rows(t_emb) @ mining.unit_rows(p_emb).T
    truth = changenet_csv.read(ws.root / "demo_truth.csv", (), what="generator truth", canonicalize=False)
    severity = kpi.merge(truth[truth["split"] == "kpi"], on=["input_path", "object_name"], how="left",
                         suffixes=("", "_t"))["severity"].fillna("").to_numpy()
    pool_labels = pool["label"].to_numpy()
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    top_sim = np.take_along_axis(sim, top, axis=1)
    rows = []
    for (label, sev), idx in kpi.groupby([kpi["label"], severity]).indices.items():
        kept = top_sim[idx] >= floor
        same = (pool_labels[top[idx]] == label) & kept
        other = (sim[idx][:, pool_labels != label] >= floor).sum(axis=1)
        rows.append({"label": label, "severity": sev, "targets": len(idx),
                     "with_same_label_hit": float(same.any(axis=1).mean()),
                     "kept_same_label_share": float(same.sum() / max(int(kept.sum()), 1)),
                     "other_label_rows_above_floor": float(other.mean())})
    return pd.DataFrame(rows)


def pool_rows_for_missing_families(workspace: str | Path):
    """Every pool row of the families the base training set lacks or nearly lacks, as ChangeNet
    rows: mining-pool rows as they are, AnomalyGen pairs with absolute paths (NG as input, its OK
    source as golden). Base + these rows is the upper bound DEFT can reach from the pools."""
    import json

    import pandas as pd

    from tao_aoi.data import changenet_csv

    ws = Workspace.at(workspace)
    fam = json.loads((ws.root / "demo_manifest.json").read_text(encoding="utf-8"))["families"]
    wanted = set(fam["missing_from_base_train"]) | set(fam["rare_in_base_train"])
    pool = changenet_csv.read(ws.mining_pool_csv)
    manifest = changenet_csv.read(ws.sdg_pool / "SDG_result.csv", (), what="SDG manifest", canonicalize=False)
    manifest = manifest[manifest["label"].isin(wanted)].drop_duplicates("index")
    stems = [Path(name).stem.rsplit("_", 1)[0] for name in manifest["image_name"]]  # drop _<light>
    sdg = pd.DataFrame({"input_path": str(ws.sdg_pool / "reconstructed_image"),
                        "golden_path": str(ws.sdg_pool / "original_image"),
                        "label": manifest["label"].to_numpy(), "object_name": stems})
    return pd.concat([pool[pool["label"].isin(wanted)], sdg], ignore_index=True)
