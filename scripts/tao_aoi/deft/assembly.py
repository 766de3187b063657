"""Assemble an iteration's training set: previous rows unchanged, plus this iteration's new rows.

iter1 = base training set + new rows; iterN = iter(N-1)'s combined set + new rows (monotonic: the
previous rows keep their order and content). New rows = the SDG rows and the mined rows of the
iteration, minus any sample already present (compared on resolved identity). A provenance CSV,
aligned row by row, says where each row came from (``source`` relative to this iteration:
base_train / previous_iter / sdg / mined; ``origin`` and ``added_in``: where it first entered;
``limiting_rank``: the limiting sample it was added for, 0 if none) and the row's training
``weight`` in this iteration's fine-tune: ``defaults.LIMITING_ROW_WEIGHT`` for the rows this
iteration added for a limiting sample (its targeted SDG pairs, its mined neighbours), 1 otherwise
(``train.py --row-weights`` reads it; a weight, never a repeated row).
Gates (hard stops): zero new rows; any missing image for any light; non-canonical labels; any leak
into the validation or KPI sets. The validation report is always written (it is the evidence); the
combined and provenance CSVs only when every gate passes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tao_aoi import atomic, defaults, labels
from tao_aoi.data import changenet_csv, dataset_checks, leakage
from tao_aoi.errors import HardStop, UserError
from tao_aoi.layout import Results
from tao_aoi.state import deft_state
from tao_aoi.tao import train_spec

REPORT_FILE = "validation_report.json"
PROVENANCE_COLUMNS = ["row", "source", "origin", "added_in", "detail", "limiting_rank", "weight"]


def _new_rows(path: Path, source: str, iteration: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ChangeNet rows, provenance) of one producer's output; a missing file is a stage order error."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; run the {source} stage of {iteration} first")
    df = changenet_csv.read(path, what=f"{source} rows", allow_empty=True)
    if source == "sdg":
        detail = df.get("sdg_sample", pd.Series([""] * len(df), index=df.index)).astype(str)
        if "target" in df.columns:  # a pair picked for a limiting sample: which, and how similar
            aimed = df["target"].astype(str) != ""
            detail = detail.where(~aimed, detail + " sim=" + df["similarity"].astype(str) + " target=" + df["target"])
    else:
        sim = df.get("similarity", pd.Series([""] * len(df), index=df.index)).astype(str)
        tgt = df.get("target", pd.Series([""] * len(df), index=df.index)).astype(str)
        detail = "sim=" + sim + " target=" + tgt
    rank = pd.to_numeric(df.get("limiting_rank", pd.Series(["0"] * len(df), index=df.index)), errors="coerce")
    prov = pd.DataFrame({"origin": source, "added_in": iteration, "detail": detail.astype(str).to_numpy(),
                         "limiting_rank": rank.fillna(0).astype(int).clip(lower=0).to_numpy()})
    return df[list(changenet_csv.REQUIRED)], prov


def _refuse_label_conflicts(previous: pd.DataFrame, new: pd.DataFrame, root: Path,
                            sources: list[tuple[Path, int]]) -> None:
    """A new row whose training key the set already holds (or another new row holds) with another label: hard stop
    naming both rows in their own files (the run cannot tell which label is right)."""
    both = pd.concat([previous[list(changenet_csv.REQUIRED)], new[list(changenet_csv.REQUIRED)]], ignore_index=True)
    conflicts = dataset_checks.label_conflicts(both, dataset_checks.training_keys(both, root))
    if not conflicts:
        return

    def where(line: int) -> str:
        i = line - 2
        for path, rows in sources:
            if i < rows:
                return f"{path} line {i + 2}"
            i -= rows
        return f"row {line - 1}"

    a, b, key, la, lb = conflicts[0]
    raise HardStop(f"{where(a)} ({la}) and {where(b)} ({lb}) are the same training sample ({key}) with two labels "
                   f"({len(conflicts)} such sample(s)); fix the label at its source (the pool or the training set), "
                   f"then retry this iteration's stages")


def assemble(results_dir: str | Path, n: int) -> dict:
    R = Results.at(results_dir)
    st = deft_state.load(R.root)
    cfg = st["config"]
    label = f"iter{n}"
    if n < 1:
        raise UserError(f"--iter must be >= 1, got {n}")
    root = Path(cfg["images_root"])
    spec = train_spec.load(cfg["train_spec"])
    lights, ext = train_spec.lights(spec, cfg["train_spec"]), train_spec.image_ext(spec, cfg["train_spec"])

    if n == 1:
        prev_path = Path(cfg["training_csv"])
        prev_raw = changenet_csv.read(prev_path, what="base training CSV", canonicalize=False)
        prev_prov = pd.DataFrame({"origin": "base_train", "added_in": "base", "detail": "", "limiting_rank": 0},
                                 index=prev_raw.index)
        prev_source = "base_train"
    else:
        prev_path = R.combined_csv(n - 1)
        if not prev_path.is_file():
            raise UserError(f"{prev_path} does not exist; iter{n - 1} must be assembled before iter{n}")
        prev_raw = changenet_csv.read(prev_path, what="previous combined CSV", canonicalize=False)
        prev_prov = changenet_csv.read(R.provenance_csv(n - 1), ("row", "origin", "added_in"),
                                       what="previous provenance CSV")
        if len(prev_prov) != len(prev_raw):
            raise HardStop(f"{R.provenance_csv(n - 1)} has {len(prev_prov)} rows but {prev_path} has "
                           f"{len(prev_raw)}; the previous iteration's outputs were edited")
        prev_prov = prev_prov.reindex(columns=["origin", "added_in", "detail", "limiting_rank"]).fillna("")
        prev_prov["limiting_rank"] = pd.to_numeric(prev_prov["limiting_rank"], errors="coerce").fillna(0).astype(int)
        prev_source = "previous_iter"

    previous = prev_raw.copy()
    relabelled = int((previous["label"] != previous["label"].map(labels.canonical_label)).sum())
    previous["label"] = changenet_csv.canonical_labels(previous["label"], prev_path)
    # One row per training key (NVIDIA's rule): a repeated base row is dropped, keeping the first, so it never
    # weighs twice; a key labelled twice is refused.
    try:
        kept, repeated = dataset_checks.dedupe(previous, root, prev_path, "previous training CSV")
    except UserError as exc:
        raise HardStop(str(exc)) from None
    if repeated:
        mask = previous.index.isin(kept.index)
        previous, prev_prov = kept.reset_index(drop=True), prev_prov[mask].reset_index(drop=True)

    sdg_path, mined_path = R.stage_dir(label, "sdg") / "sdg_rows.csv", R.stage_dir(label, "mining") / "mined_rows.csv"
    sdg, sdg_prov = _new_rows(sdg_path, "sdg", label)
    mined, mined_prov = _new_rows(mined_path, "mined", label)
    new = pd.concat([sdg, mined], ignore_index=True)
    new_prov = pd.concat([sdg_prov, mined_prov], ignore_index=True)
    _refuse_label_conflicts(previous, new, root, [(prev_path, len(previous)), (sdg_path, len(sdg)),
                                                  (mined_path, len(mined))])

    prev_keys = set(leakage.sample_keys(previous, root, prev_path))
    new_keys = leakage.sample_keys(new, root) if len(new) else pd.Series([], dtype=str)
    keep = (~new_keys.isin(prev_keys) & ~new_keys.duplicated(keep="first")).to_numpy(dtype=bool)
    duplicates = int(len(new) - int(keep.sum()))
    new, new_prov = new[keep].reset_index(drop=True), new_prov[keep].reset_index(drop=True)

    extra = [c for c in previous.columns if c not in changenet_csv.REQUIRED]
    combined = pd.concat([previous, new.reindex(columns=list(previous.columns), fill_value="")], ignore_index=True)
    combined = combined[list(changenet_csv.REQUIRED) + extra]
    weight = np.where(new_prov["limiting_rank"].to_numpy() > 0, defaults.LIMITING_ROW_WEIGHT, 1.0)
    prov = pd.concat([prev_prov.assign(source=prev_source, weight=1.0).reset_index(drop=True),
                      new_prov.assign(source=new_prov["origin"], weight=weight)], ignore_index=True)
    prov.insert(0, "row", range(len(prov)))
    prov = prov[PROVENANCE_COLUMNS]

    out_csv, out_prov = R.combined_csv(n), R.provenance_csv(n)
    against = [(cfg["validation_csv"], changenet_csv.read(cfg["validation_csv"], what="validation CSV")),
               (cfg["kpi_csv"], changenet_csv.read(cfg["kpi_csv"], what="KPI CSV"))]
    if cfg.get("holdout_csv"):  # the sealed holdout must stay unseen by everything the run trains on
        against.append((cfg["holdout_csv"], changenet_csv.read(cfg["holdout_csv"], what="holdout CSV")))
    checks = dataset_checks.check(combined, out_csv, root, lights, ext, against)
    report = {
        **checks,
        "iteration": label,
        "previous_csv": str(prev_path),
        "previous_rows": int(len(previous)),
        "new_rows": int(len(new)),
        "new_by_source": {"sdg": int((new_prov["origin"] == "sdg").sum()),
                          "mined": int((new_prov["origin"] == "mined").sum())},
        "new_labels": {str(k): int(v) for k, v in new["label"].value_counts().sort_index().items()},
        "for_limiting": {"rows": int((new_prov["limiting_rank"] > 0).sum()), "weight": defaults.LIMITING_ROW_WEIGHT},
        "combined_rows": int(len(combined)),
        "duplicates_dropped": duplicates,
        "previous_repeats_dropped": repeated,
        "previous_labels_canonicalized": relabelled,
    }
    dataset_dir = out_csv.parent
    atomic.write_json(dataset_dir / REPORT_FILE, report)
    if report["new_rows"] == 0:
        raise HardStop(f"{label} adds zero new rows (sdg {len(sdg)}, mined {len(mined)}, {duplicates} already "
                       f"present): retraining on the same data cannot help; widen mining (on the rerun, run_pipeline.py "
                       f"--min-similarity lower or --top-k-per-target higher; the same flags of init_deft_state.py "
                       f"stage by stage) or the SDG pool, then retry sdg/mining")
    bad = dataset_checks.problems(report)
    if bad:
        raise HardStop(f"{label} training set fails validation: " + "; ".join(bad)
                       + f" (details in {dataset_dir / REPORT_FILE})")
    changenet_csv.write(prov, out_prov)
    changenet_csv.write(combined, out_csv)
    return report
