"""The checks a training CSV must pass before any job trains on it.

Every image exists for every light (input and golden), labels are canonical exactly as written
(TAO's dataloader compares labels case-sensitively, so ``pass`` would silently become a defect
class), both classes are present, no sample repeats, and nothing leaks into the validation or KPI
sets. The anchor accepted a merge on file existence alone; here the report carries the numbers and
the commit refuses anything but zeros.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tao_aoi import labels
from tao_aoi.data import changenet_csv, leakage

EXAMPLES = 10


def noncanonical_labels(raw: pd.Series) -> list[tuple[int, str, str]]:
    """(CSV line, raw, canonical) for labels not written in canonical form."""
    uniq = pd.unique(raw)
    canon = {u: labels.canonical_label(u) for u in uniq}
    bad_values = [u for u, c in canon.items() if u != c]
    if not bad_values:
        return []
    idx = np.flatnonzero(raw.isin(bad_values).to_numpy())
    return [(int(i) + 2, str(raw.iat[i]), canon[raw.iat[i]]) for i in idx]


def check(df_raw: pd.DataFrame, csv_path: str | Path, images_root: str | Path, lights: list[str], ext: str,
          against: list[tuple[str, pd.DataFrame]] = ()) -> dict:
    """Run every check on a CSV read with canonicalize=False; returns a JSON-able report."""
    bad_labels = noncanonical_labels(df_raw["label"])
    invalid = [(ln, raw) for ln, raw, c in bad_labels if not labels.is_valid_canonical(c)]
    df = df_raw.copy()
    df["label"] = df_raw["label"].map(labels.canonical_label)
    missing = changenet_csv.missing_images(df, images_root, lights, ext)
    keys = leakage.sample_keys(df, images_root, csv_path)
    dup_mask = keys.duplicated(keep="first").to_numpy()
    leaks = leakage.find_leaks(df, csv_path, list(against), images_root)
    classes = set(df["label"])
    report = {
        "csv": str(csv_path),
        "rows": int(len(df)),
        "labels": {str(k): int(v) for k, v in df["label"].value_counts().sort_index().items()},
        "missing_file_count": len(missing),
        "missing_examples": [f"line {ln}: {p}" for ln, p in missing[:EXAMPLES]],
        "bad_label_count": len(bad_labels),
        "bad_label_examples": [f"line {ln}: {raw!r} (write {c!r})" for ln, raw, c in bad_labels[:EXAMPLES]],
        "invalid_label_count": len(invalid),
        "duplicate_count": int(dup_mask.sum()),
        "duplicate_examples": [f"line {int(i) + 2}: {keys.iat[i]}" for i in np.flatnonzero(dup_mask)[:EXAMPLES]],
        "leakage_count": int(len(leaks)),
        "leakage_examples": [f"line {r.line}: {r.key} also in {r.against}" for r in leaks.head(EXAMPLES).itertuples()],
        "has_pass": labels.PASS in classes,
        "has_defect": bool(classes - {labels.PASS}),
        "lights": list(lights),
        "image_ext": ext,
    }
    return report


def problems(report: dict) -> list[str]:
    """What blocks training (duplicates are reported but do not block: see warnings)."""
    out = []
    if report["missing_file_count"]:
        out.append(f"{report['missing_file_count']} missing image file(s), e.g. {report['missing_examples'][0]}")
    if report["bad_label_count"]:
        out.append(f"{report['bad_label_count']} non-canonical label(s), e.g. {report['bad_label_examples'][0]}")
    if report["leakage_count"]:
        out.append(f"{report['leakage_count']} row(s) leak into held-out sets, e.g. {report['leakage_examples'][0]}")
    if not report["has_pass"] or not report["has_defect"]:
        out.append("training needs both PASS and defect rows")
    return out


def warnings(report: dict) -> list[str]:
    if report["duplicate_count"]:
        return [f"{report['duplicate_count']} duplicate sample(s), e.g. {report['duplicate_examples'][0]}"]
    return []
