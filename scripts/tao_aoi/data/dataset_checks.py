"""The checks a training CSV must pass before any job trains on it.

Every image exists for every light (input and golden), labels are canonical exactly as written
(TAO's dataloader compares labels case-sensitively, so ``pass`` would silently become a defect
class), both classes are present, no sample repeats, and nothing leaks into the validation or KPI
sets. The anchor accepted a merge on file existence alone; here the report carries the numbers and
the commit refuses anything but zeros.

Training rows (NVIDIA's skill bank rules): one row per training key (input_path, golden_path,
object_name), paths resolved as for leakage; a repeated key is dropped keeping the first
(``dedupe``), so a row repeated N times never weighs N times (the loss is a mean over rows: a
repeat is class weighting by the back door); a key written with two labels is refused naming both
rows (``label_conflicts``): which label is right is for a person to say.
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


TRAINING_KEY = ("input_path", "golden_path", "object_name")


def training_keys(df: pd.DataFrame, images_root: str | Path, csv_path: str | Path | None = None) -> pd.Series:
    """One string per row: resolved input folder | resolved golden folder | object_name."""
    csv_dir = Path(csv_path).parent if csv_path else None
    return (leakage.resolve_dirs(df["input_path"], images_root, csv_dir).str.rstrip("/") + "|"
            + leakage.resolve_dirs(df["golden_path"], images_root, csv_dir).str.rstrip("/") + "|"
            + df["object_name"].astype(str).str.strip())


def label_conflicts(df: pd.DataFrame, keys: pd.Series) -> list[tuple[int, int, str, str, str]]:
    """(line, line, key, label, label) for each training key written with two canonical labels: its first row
    and the first row disagreeing with it."""
    canon = df["label"].map(labels.canonical_label).to_numpy()
    k = keys.to_numpy()
    first_row = pd.Series(np.arange(len(k))).groupby(k, sort=False).transform("first").to_numpy()
    bad = np.flatnonzero(canon != canon[first_row])
    out, seen = [], set()
    for i in bad:
        if k[i] in seen:
            continue
        seen.add(k[i])
        j = int(first_row[i])
        out.append((j + 2, int(i) + 2, str(k[i]), str(canon[j]), str(canon[i])))
    return out


def conflict_text(csv_path: str | Path, conflicts: list[tuple[int, int, str, str, str]], what: str) -> str:
    a, b, key, la, lb = conflicts[0]
    return (f"{what} {csv_path} lines {a} and {b}: the same training sample (input_path|golden_path|object_name = "
            f"{key}) is labelled {la} and {lb} ({len(conflicts)} such sample(s)); keep one row with the right label")


def dedupe(df: pd.DataFrame, images_root: str | Path, csv_path: str | Path | None = None,
           what: str = "training CSV") -> tuple[pd.DataFrame, int]:
    """The rows to train on: one per training key, the first kept; refuses a key with two labels (UserError)."""
    from tao_aoi.errors import UserError

    keys = training_keys(df, images_root, csv_path)
    conflicts = label_conflicts(df, keys)
    if conflicts:
        raise UserError(conflict_text(csv_path, conflicts, what))
    dup = keys.duplicated(keep="first").to_numpy()
    return (df[~dup] if dup.any() else df), int(dup.sum())


def check(df_raw: pd.DataFrame, csv_path: str | Path, images_root: str | Path, lights: list[str], ext: str,
          against: list[tuple[str, pd.DataFrame]] = ()) -> dict:
    """Run every check on a CSV read with canonicalize=False; returns a JSON-able report."""
    bad_labels = noncanonical_labels(df_raw["label"])
    invalid = [(ln, raw) for ln, raw, c in bad_labels if not labels.is_valid_canonical(c)]
    df = df_raw.copy()
    df["label"] = df_raw["label"].map(labels.canonical_label)
    missing = changenet_csv.missing_images(df, images_root, lights, ext)
    keys = training_keys(df, images_root, csv_path)
    dup_mask = keys.duplicated(keep="first").to_numpy()
    conflicts = label_conflicts(df, keys)
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
        "duplicate_key": "input_path|golden_path|object_name (resolved)",
        "label_conflict_count": len(conflicts),
        "label_conflict_examples": [f"lines {a} and {b}: {k} labelled {la} and {lb}"
                                    for a, b, k, la, lb in conflicts[:EXAMPLES]],
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
    if report.get("label_conflict_count"):
        out.append(f"{report['label_conflict_count']} training sample(s) labelled twice, e.g. "
                   f"{report['label_conflict_examples'][0]}: keep one row with the right label")
    if not report["has_pass"] or not report["has_defect"]:
        out.append("training needs both PASS and defect rows")
    return out


def warnings(report: dict) -> list[str]:
    if report["duplicate_count"]:
        return [f"{report['duplicate_count']} repeated training sample(s) (same input_path, golden_path, object_name), "
                f"e.g. {report['duplicate_examples'][0]}: training keeps the first of each (a repeat is never a "
                f"weight)"]
    return []
