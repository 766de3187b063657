"""Root-cause gap analysis of a scored KPI set (DESIGN.md section 5), natively and exactly.

Two thresholds, each under its own name. ``threshold`` in metrics.json (with precision, recall,
F1, FAR and the confusion matrix at it) is the contract's operating point computed by the rule every
evaluate uses (``kpi.operating_point``; the ``--kpi-target``'s ``at`` clause, else recall
``min_recall``), so one model has one threshold in analyze_kpi.py, here, the report and
best_model.json. ``nvidia_threshold`` (threshold.txt, and the weak set) is NVIDIA's vcn_aoi rule:
among the candidates (each unique score and one just below the lowest) whose defect
recall >= min_recall, the best F1, ties by precision, then the higher threshold - all candidates
scored at once from ``kpi.Curve`` (one sort), not one pass per candidate. Signed weakness per row:
PASS ``score - t``, defect ``t - score``; > 0 means misclassified except that a defect scoring
exactly t is missed too (predicted defect iff score > t), so ``misclassified`` is stored as its own
column. The top-K weakest rows per label are kept and expanded to one row per light.
tests/test_gap_analysis_nvidia.py holds all of this to NVIDIA's own vcn_aoi on the same CSVs.

On top of NVIDIA's outputs: the defects that pin the KPI threshold (limiting.py) in metrics.json
and as ``limiting_rank`` / ``pinned_share`` columns of the kept rows (routing weights them first),
label-issue flags, spot-check thumbnails, and RCA_Report.md (rca_report.py).

No pandas: the CSV comes in as numpy columns (changenet_csv.read_columns) and the parquet goes out
through pyarrow, because importing pandas costs more than the whole analysis of a small KPI set
(bench/gaps.py, against NVIDIA's pandas script).
"""
from __future__ import annotations

import functools
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tao_aoi import atomic, defaults, labels
from tao_aoi.analysis import binomial, deployment, kpi, label_noise, limiting, metric_contract, rca_report, spot_check
from tao_aoi.analysis import pinning as pinning_mod
from tao_aoi.data import changenet_csv
from tao_aoi.errors import HardStop, UserError
from tao_aoi.tao import train_spec

GAPS_COLUMNS = ("filepath", "input_path", "object_name", "label", "siamese_score", "weakness", "light")
SPOT_CHECK_PER_CLASS = 5
THUMB = 128
_RECALL_TOL = 1e-12


@dataclass(frozen=True)
class Selection:
    point: kpi.Point
    n_candidates: int
    n_feasible: int
    best_reachable_recall: float
    fixed: bool


class Unreachable(HardStop):
    """No threshold keeps recall >= min_recall; carries the best recall that is reachable."""

    def __init__(self, min_recall: float, best_recall: float, fixed: float | None):
        self.min_recall, self.best_recall, self.fixed = min_recall, best_recall, fixed
        where = f"at the fixed threshold {fixed!r}" if fixed is not None else "at any threshold"
        super().__init__(f"recall target {100 * min_recall:g}% is unreachable: the best recall {where} is "
                         f"{100 * best_recall:.6g}%; see unreachable_kpi.txt")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def choose_threshold(scores: np.ndarray, positive: np.ndarray, min_recall: float,
                     fixed_threshold: float | None = None) -> Selection:
    """Best-F1 candidate with recall >= min_recall (ties: precision, then the higher threshold).

    ``fixed_threshold`` replaces the search by one given threshold (e.g. the deployed one); only
    then can the recall target be out of reach. Raises HardStop with the best reachable recall.
    """
    if not 0.0 <= min_recall <= 1.0 or math.isnan(min_recall):
        hint = f" (did you mean {min_recall / 100:g}?)" if 1.0 < min_recall <= 100.0 else ""
        raise UserError(f"gap_analysis.py --min-recall {min_recall:g} must be a fraction in [0, 1]{hint}")
    curve = kpi.Curve(scores, positive)
    if fixed_threshold is None:
        thr, tp, fp = curve.thresholds, curve.tp, curve.fp
    else:
        thr = np.array([float(fixed_threshold)])
        tp = np.array([int(np.count_nonzero(scores[positive] > thr[0]))])
        fp = np.array([int(np.count_nonzero(scores[~positive] > thr[0]))])
    fn = curve.n_defect - tp
    recall = tp / curve.n_defect
    precision = _ratio(tp, tp + fp)
    # F1 as NVIDIA's vcn_aoi computes it (2pr / (p + r), same float operations in the same order), not as
    # 2tp / (2tp + fp + fn): the two are equal in exact arithmetic, but where two candidates tie exactly
    # their rounding decides which one wins, and the threshold must be the one NVIDIA's tool picks.
    f1 = _ratio(2.0 * precision * recall, precision + recall)
    feasible = np.flatnonzero(recall >= min_recall - _RECALL_TOL)
    best_recall = float(recall.max())
    if feasible.size == 0:
        raise Unreachable(min_recall, best_recall, fixed_threshold)
    # lexsort: last key is primary; the maximum sits at the end. With F1 equal, precision falls as the
    # threshold falls, so both tie-breaks agree; equal F1 and precision would mean equal counts.
    i = int(feasible[np.lexsort((thr[feasible], precision[feasible], f1[feasible]))[-1]])
    point = kpi.Point(float(thr[i]), int(tp[i]), int(fp[i]), curve.n_pass - int(fp[i]), int(fn[i]))
    return Selection(point, int(thr.size), int(feasible.size), best_recall, fixed_threshold is not None)


def contract_point(scores: np.ndarray, positive: np.ndarray, name: str, target: float) -> kpi.Point:
    """The contract's operating point as evaluate computes it (analyze_kpi.py); recall >= 0 flags nothing."""
    if name == "recall_pct" and target == 0:
        return kpi.Point(float(scores.max()), 0, 0, int((~positive).sum()), int(positive.sum()))
    return kpi.operating_point(scores, positive, name, target)


def _point_figures(p: kpi.Point) -> dict[str, Any]:
    """precision, recall, f1, far (ratios, as NVIDIA's metrics.json), the confusion matrix of a point, and the
    FAR's resolution and 95% interval (percent, as every FAR carries them)."""
    return {"precision": p.precision_pct / 100, "recall": p.recall_pct / 100, "f1": p.f1, "far": p.fp / p.n_pass,
            "confusion_matrix": {"tp": p.tp, "fp": p.fp, "tn": p.tn, "fn": p.fn},
            **binomial.far_figures(p.fp, p.n_pass)}


def weakness(scores: np.ndarray, positive: np.ndarray, threshold: float) -> np.ndarray:
    """PASS: score - t; defect: t - score (> 0 = on the wrong side, magnitude = margin)."""
    return np.where(positive, threshold - scores, scores - threshold)


def top_k_per_label(label_codes: np.ndarray, weak: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k weakest rows of each label, grouped by label, weakest first (stable)."""
    order = np.argsort(-weak, kind="stable")
    order = order[np.argsort(label_codes[order], kind="stable")]
    codes = label_codes[order]
    starts = np.searchsorted(codes, codes, side="left")
    rank = np.arange(codes.size) - starts
    return order[rank < k]


def label_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(code per row, labels): codes numbered in sorted label order, like pd.factorize(sort=True)."""
    codes, uniq = changenet_csv.factorize(values)
    order = sorted(range(len(uniq)), key=uniq.__getitem__)
    remap = np.empty(len(uniq), dtype=np.int64)
    remap[order] = np.arange(len(uniq))
    return remap[codes], [uniq[i] for i in order]


def per_label_stats(codes: np.ndarray, names: Sequence[str], weak: np.ndarray, wrong: np.ndarray
                    ) -> dict[str, dict[str, Any]]:
    """total, mean/median/max weakness and misclassified count of every label (one sort)."""
    total = np.bincount(codes, minlength=len(names))
    order = np.lexsort((weak, codes))
    sw = weak[order]
    starts = np.concatenate(([0], np.cumsum(total)[:-1]))
    median = (sw[starts + (total - 1) // 2] + sw[starts + total // 2]) / 2
    mean = np.bincount(codes, weights=weak, minlength=len(names)) / total
    wrong_n = np.bincount(codes, weights=wrong, minlength=len(names))
    return {str(lbl): {"total": int(total[i]), "mean_weakness": float(mean[i]), "median_weakness": float(median[i]),
                       "max_weakness": float(sw[starts[i] + total[i] - 1]), "misclassified": int(wrong_n[i])}
            for i, lbl in enumerate(names)}


def expand_per_light(kept: dict[str, np.ndarray], images_root: str | Path, lights: Sequence[str],
                     ext: str) -> dict[str, np.ndarray]:
    """One row per (kept sample, light), lights in input_map order; golden file too when known.

    Columns: ``filepath`` first, ``light`` after ``weakness``, ``golden_filepath`` after ``golden_path``.
    """
    n, L = len(kept["label"]), len(lights)
    root = str(images_root)
    out: dict[str, np.ndarray] = {"filepath": np.array(
        [changenet_csv.image_file(root, d, o, lt, ext) for d, o in zip(kept["input_path"], kept["object_name"])
         for lt in lights], dtype=object)}
    for name, values in kept.items():
        out[name] = np.repeat(values, L)
        if name == "weakness":
            out["light"] = np.tile(np.asarray(lights, dtype=object), n)
        if name == "golden_path":
            out["golden_filepath"] = np.array(
                [changenet_csv.image_file(root, d, o, lt, ext) for d, o in zip(kept["golden_path"], kept["object_name"])
                 for lt in lights], dtype=object)
    return out


def _arrow(values: np.ndarray):
    """One pyarrow array built from buffers: ``pa.array`` would import pandas just to check for it."""
    import pyarrow as pa

    n = len(values)
    if values.dtype == object:  # text: large_string, what pandas writes
        return changenet_csv.arrow_strings(values)
    if values.dtype == bool:
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(np.packbits(values, bitorder="little"))])
    kinds = {"i": (pa.int64(), np.int64), "f": (pa.float64(), np.float64)}
    typ, np_type = kinds[values.dtype.kind]
    data = np.ascontiguousarray(values, dtype=np_type)
    nan = np.isnan(data) if values.dtype.kind == "f" else np.zeros(n, dtype=bool)
    valid = pa.py_buffer(np.packbits(~nan, bitorder="little")) if nan.any() else None  # NaN -> null, as pandas
    return pa.Array.from_buffers(typ, n, [valid, pa.py_buffer(data)], null_count=int(nan.sum()))


def write_parquet(columns: Mapping[str, np.ndarray], path: Path) -> None:
    """kpi_gaps.parquet, typed as pandas would write these columns (without importing it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([_arrow(v) for v in columns.values()], names=list(columns))
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# --------------------------------------------------------------------------- thumbnails


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _tile(path: str, missing: list[str]):
    from PIL import Image, ImageDraw, ImageOps

    try:
        with Image.open(path) as im:
            return ImageOps.pad(im.convert("RGB"), (THUMB, THUMB), color=(40, 40, 40))
    except OSError:  # missing, a directory, or not an image
        missing.append(path)
        tile = Image.new("RGB", (THUMB, THUMB), (90, 0, 0))
        ImageDraw.Draw(tile).text((8, THUMB // 2 - 6), "MISSING", fill=(255, 255, 255))
        return tile


@functools.cache
def _caption_font():
    from PIL import ImageFont

    return ImageFont.load_default()


def render_thumbnail(sample: Mapping[str, Any], images_root: str | Path, lights: Sequence[str], ext: str,
                     out: Path) -> list[str]:
    """One PNG inside the rca_images folder being built: a row per light, [test | golden] 128x128 each,
    captioned; returns missing files. Fast zlib level: thumbnails are small and written every RCA."""
    import io

    from PIL import Image, ImageDraw

    cols = ["input_path"] + (["golden_path"] if "golden_path" in sample else [])
    root, obj = str(images_root), str(sample["object_name"])
    cap = 14
    sheet = Image.new("RGB", (THUMB * len(cols) + 4 * (len(cols) - 1), (THUMB + cap) * len(lights)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    missing: list[str] = []
    for r, light in enumerate(lights):
        for c, col in enumerate(cols):
            path = changenet_csv.image_file(root, str(sample[col]), obj, light, ext)
            x, y = c * (THUMB + 4), r * (THUMB + cap)
            draw.text((x + 2, y + 1), f"{light} {'test' if col == 'input_path' else 'golden'}", fill=(0, 0, 0),
                      font=_caption_font())
            sheet.paste(_tile(path, missing), (x, y + cap))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", compress_level=1)
    atomic.write_member(out, buf.getvalue())
    return missing


def limiting_image_name(rank: int, row: Mapping[str, Any]) -> str:
    """The picture of a limiting sample (RCA's rca_images/, the deliverable's limiting_images/)."""
    return f"limiting_{rank:02d}_{_safe(str(row['label']))}_{_safe(str(row['object_name']))}.png"


def spot_check_rows(weak: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Rows of the 5 weakest PASS and the 5 weakest defect samples (weakest first within each), and kinds."""
    order = np.argsort(-weak, kind="stable")
    picks = [order[~positive[order]][:SPOT_CHECK_PER_CLASS], order[positive[order]][:SPOT_CHECK_PER_CLASS]]
    return np.concatenate(picks), ["PASS"] * len(picks[0]) + ["DEFECT"] * len(picks[1])


def _row(cols: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: v[i] for k, v in cols.items()}


# --------------------------------------------------------------------------- end to end

OUTPUTS = ("kpi_gaps.parquet", "threshold.txt", "metrics.json", "weak_samples_breakdown.txt", "RCA_Report.md")
UNREACHABLE = "unreachable_kpi.txt"
IMAGES_DIR = "rca_images"


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def run(inference_csv: str | Path, train_spec_path: str | Path, images_root: str | Path, results_dir: str | Path,
        *, min_recall: float, top_k: int, fixed_threshold: float | None = None,
        pass_label: str = labels.PASS, report_mode: str = "headless",
        limiting_limit: int = defaults.LIMITING_SAMPLES, verdicts: str | Path | None = None,
        kpi_target: str | None = None, kpi_csv: str | None = None) -> dict[str, Any]:
    """Everything gap_analysis.py writes; returns metrics.json. Raises HardStop when unreachable.

    ``kpi_target``: the run's contract; its operating point gives metrics.json ``threshold`` (without
    one, recall ``min_recall``). NVIDIA's search (``min_recall``) gives ``nvidia_threshold`` and the weak set.

    ``report_mode``: ``headless`` writes a complete RCA_Report.md, ``agent`` adds the TODO(agent)
    placeholders an agent fills after the visual spot check (rca_report.py); ``verdicts``: the run's
    ledger of earlier spot-check verdicts, reused for the sheets it holds (agent mode; spot_check.py).
    ``kpi_csv``: the KPI set the inference scored, named in the commands to relabel or drop a sample
    that holds the KPI.
    """
    if top_k < 1:
        raise UserError(f"gap_analysis.py --top-k-per-label {top_k} must be a positive integer")
    if report_mode not in rca_report.MODES:
        raise UserError(f"report mode {report_mode!r} is not one of {', '.join(rca_report.MODES)}")
    out = Path(results_dir)
    contract = metric_contract.parse_kpi_target(kpi_target) if kpi_target else None
    op_name, op_target = ((contract["operating_point"]["name"], float(contract["operating_point"]["target"]))
                          if contract else ("recall_pct", 100.0 * min_recall))
    spec = train_spec.load(train_spec_path)
    lights, ext = train_spec.lights(spec, train_spec_path), train_spec.image_ext(spec, train_spec_path)
    cols, scores, positive = kpi.read_inference_columns(inference_csv, pass_label)
    try:
        sel = choose_threshold(scores, positive, min_recall, fixed_threshold)
    except Unreachable as exc:
        _remove([out / n for n in OUTPUTS] + [out / IMAGES_DIR])
        atomic.write_text(out / UNREACHABLE, rca_report.unreachable_text(exc.min_recall, exc.best_recall, exc.fixed,
                                                                         str(inference_csv)))
        raise
    t = sel.point.threshold  # NVIDIA's: the weak set and threshold.txt, identical to vcn_aoi
    op = contract_point(scores, positive, op_name, op_target)
    weak = weakness(scores, positive, t)
    wrong = positive != (scores > t)
    codes, names = label_codes(cols["label"])
    keep = top_k_per_label(codes, weak, top_k)
    issue, quality = label_noise.find(scores, positive, quality_rows=keep)
    pinning = limiting.summary(cols, scores, positive, codes, names, min_recall, limiting_limit, keep)
    rank, share = np.zeros(scores.size, dtype=np.int64), np.zeros(scores.size)
    for entry in pinning["limiting_samples"]:
        rank[entry["line"] - 2], share[entry["line"] - 2] = entry["rank"], entry["pinned_share"]
        entry["label_issue"] = bool(issue[entry["line"] - 2])
    pinning["held_by"] = pinning_mod.entry(pinning["limiting"], pinning["limiting_samples"])
    starts = np.searchsorted(codes[keep], codes[keep], side="left")
    derived = {"weakness": weak, "misclassified": wrong, "label_issue": issue, "label_quality": quality,
               "limiting_rank": rank, "pinned_share": share}
    first = [c for c in (*GAPS_COLUMNS, "golden_path") if c in cols or c in derived]
    first = [c for c in first if c not in ("filepath", "light")]
    tail = ["misclassified", "weak_rank", "label_issue", "label_quality", "limiting_rank", "pinned_share"]
    every = {**cols, **derived}
    kept = {c: (np.arange(keep.size) - starts + 1 if c == "weak_rank" else every[c][keep])
            for c in first + tail + [c for c in cols if c not in first and c not in tail]}
    gaps = expand_per_light(kept, images_root, lights, ext)

    spot_rows, kinds = spot_check_rows(weak, positive)
    root = str(images_root)
    test_files = [changenet_csv.image_file(root, cols["input_path"][i], cols["object_name"][i], light, ext)
                  for light in lights for i in spot_rows]
    if test_files and not any(os.path.isfile(f) for f in test_files):
        raise UserError(f"gap_analysis.py --images-root {images_root}: none of the spot-check images exists "
                        f"(first: {test_files[0]}); pass the image root the CSV paths are relative to")

    n_pass = int((~positive).sum())
    n_kept = int(keep.size)
    metrics: dict[str, Any] = {
        "threshold": op.threshold,
        "operating_point": {"name": op_name, "target": op_target, "kpi_target": contract["text"] if contract else None,
                            "rule": "the contract's operating point, as analyze_kpi.py computes it"},
        **_point_figures(op),
        "nvidia_threshold": t,
        "nvidia": {**_point_figures(sel.point), "rule": "vcn_aoi: best F1 with recall >= min_recall, then precision, "
                   "then the higher threshold", "fixed_threshold": sel.fixed,
                   "n_candidates": sel.n_candidates, "n_feasible": sel.n_feasible},
        "weakness_threshold": "nvidia_threshold",
        "deployment": deployment.ship(scores, positive, op.threshold),
        "min_recall": min_recall, "min_recall_pct": 100.0 * min_recall, "fixed_threshold": sel.fixed,
        "n_rows": int(scores.size), "n_pass": n_pass, "n_defect": int(positive.sum()),
        "n_candidates": sel.n_candidates, "n_feasible": sel.n_feasible,
        "per_label": per_label_stats(codes, names, weak, wrong),
        "top_k_per_label": top_k, "lights": list(lights), "image_ext": ext,
        "n_kept_samples": n_kept, "n_gap_rows": n_kept * len(lights),
        "label_issues": {"method": label_noise.METHOD, "flagged": int(issue.sum()),
                         "flagged_kept": int(kept["label_issue"].sum())},
        **pinning,
        "report_mode": report_mode,
        "inputs": {"inference_csv": str(inference_csv), "train_spec": str(train_spec_path),
                   "images_root": str(images_root)},
    }
    spot_meta: list[dict[str, Any]] = []
    with atomic.atomic_dir(out / IMAGES_DIR) as tmp_dir:
        for i, (r, kind) in enumerate(zip(spot_rows.tolist(), kinds), 1):
            row = _row(cols, r)
            name = f"{i:02d}_{kind}_{_safe(row['label'])}_{_safe(row['object_name'])}.png"
            missing = render_thumbnail(row, images_root, lights, ext, tmp_dir / name)
            spot_meta.append({"file": f"{IMAGES_DIR}/{name}", "kind": kind, "label": row["label"],
                              "object_name": row["object_name"], "input_path": row["input_path"],
                              "siamese_score": float(scores[r]), "weakness": float(weak[r]),
                              "missing_files": missing})
        held = (metrics["held_by"] or {}).get("samples", 0)
        for entry in metrics["limiting_samples"][:held]:  # the samples the verdict leads with: their pictures
            row = _row(cols, entry["line"] - 2)
            name = limiting_image_name(entry["rank"], row)
            render_thumbnail(row, images_root, lights, ext, tmp_dir / name)
            entry["image"] = f"{IMAGES_DIR}/{name}"
    if kpi_csv:
        metrics["inputs"]["kpi_csv"] = str(kpi_csv)
    if verdicts is not None and report_mode == "agent":
        spot_check.reuse(spot_meta, verdicts)
    metrics["rca_images"] = spot_meta
    breakdown = rca_report.breakdown_text(kept["label"], kept["misclassified"], t, top_k, len(lights))
    flagged = np.flatnonzero(kept["label_issue"])
    flagged = flagged[np.argsort(kept["label_quality"][flagged], kind="stable")][:20]
    kept_rows = [_row(kept, i) for i in range(n_kept)]

    write_parquet(gaps, out / "kpi_gaps.parquet")
    atomic.write_text(out / "threshold.txt", f"{t!r}\n")
    atomic.write_json(out / "metrics.json", metrics)
    atomic.write_text(out / "weak_samples_breakdown.txt", breakdown)
    atomic.write_text(out / "RCA_Report.md", rca_report.report_text(metrics, kept_rows, spot_meta, breakdown,
                                                                    [kept_rows[i] for i in flagged], mode=report_mode))
    _remove([out / UNREACHABLE])
    return metrics
