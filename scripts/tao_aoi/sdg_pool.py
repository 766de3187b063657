"""The pre-generated synthetic pool in AnomalyGen's output layout (DESIGN.md section 4).

``<pool>/reconstructed_image/`` holds synthetic NG images and ``<pool>/original_image/`` their OK
goldens under identical names ``<T>+<LABEL>_<idx><ext>`` or ``<T>+<LABEL>_<idx>_<light><ext>``.
An optional ``SDG_result.csv`` manifest overrides the label of the files it names (it needs a
``label`` column and a file column). Callers may pass the pool directory or the manifest itself.
One sample = one (T, LABEL, idx); it is *paired* when every NG file of it has its OK twin.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from tao_aoi import labels
from tao_aoi.errors import UserError

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
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df.columns = [str(c).strip() for c in df.columns]
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
    for name in sorted(os.listdir(ng_dir)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTS:
            continue
        parsed = parse_name(stem)
        if parsed is None:
            unparsed.append(name)
            continue
        parsed["label"] = override.get(name, parsed["label"])
        rows.append({"name": name, **parsed, "ng_file": str(ng_dir / name),
                     "ok_file": str(ok_dir / name), "paired": name in ok_names})
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
