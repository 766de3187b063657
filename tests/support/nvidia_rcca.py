"""NVIDIA's own gap analysis (nvidia-tao-ds, ``rcca.gap_analysis.scripts.vcn_aoi``) as the oracle for ours.

Driven the way TAO drives it: ``gap_analysis vcn_aoi -e SPEC`` launches
``python <vcn_aoi.py> --config-path <dir of SPEC> --config-name <SPEC name>`` (nvidia_tao_ds
core/entrypoint/entrypoint.py); the launcher itself also needs nvidia-tao-core and nvidia-smi, so
here the child command it would start is run directly. SPEC holds the GapAnalysisConfig keys
(inference_results_dir: the folder of ``inference.csv``, train_config, kpi_media_path, threshold
(< 0 = search), min_recall, top_k_per_label, results_dir). It writes threshold.txt,
kpi_gaps.parquet (filepath, label, siamese_score, weakness) and weak_samples_breakdown.txt.

``compare`` holds both outputs to the same threshold and the same weak set. NVIDIA keeps the top K
with pandas' default (unstable) sort, so among rows tied on weakness at the K-th place its pick
is arbitrary: there "the same" means the same rows above the cut and the same weakness values.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = "nvidia_tao_ds.rcca.gap_analysis.scripts.vcn_aoi"
INSTALL = "pip install --no-deps nvidia-tao-ds==7.1.0 omegaconf==2.3.0 hydra-core==1.3.2"
SPEC_NAME = "gap_analysis_vcn_aoi.yaml"


def missing_reason() -> str | None:
    """Why NVIDIA's gap analysis cannot run in this interpreter, or None when it can."""
    for mod in ("omegaconf", "hydra", "nvidia_tao_ds"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed ({INSTALL})"
    if importlib.util.find_spec(MODULE) is None:
        return f"{MODULE} is missing from the installed nvidia-tao-ds ({INSTALL})"
    return None


def runner_path() -> Path:
    spec = importlib.util.find_spec(MODULE)
    assert spec is not None and spec.origin, MODULE
    return Path(spec.origin)


def write_spec(path: Path, *, inference_dir: Path, train_config: Path, media: Path, results_dir: Path,
               min_recall: float, top_k: int, threshold: float = -1.0) -> Path:
    """The experiment spec a TAO user passes with -e (plain YAML scalars; paths quoted)."""
    keys = {"inference_results_dir": str(inference_dir), "train_config": str(train_config),
            "kpi_media_path": str(media), "results_dir": str(results_dir)}
    text = "".join(f"{k}: {_quote(v)}\n" for k, v in keys.items())
    text += f"threshold: {float(threshold)!r}\nmin_recall: {float(min_recall)!r}\ntop_k_per_label: {int(top_k)}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def command(spec: Path, python: str = sys.executable) -> list[str]:
    """The argv TAO's launcher starts for ``gap_analysis vcn_aoi -e spec``."""
    return [python, str(runner_path()), "--config-path", str(spec.resolve().parent), "--config-name", spec.name]


def run(spec: Path, python: str = sys.executable, timeout: float = 3600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TAO_LOGGING_LEVEL="WARNING", HYDRA_FULL_ERROR="1")
    return subprocess.run(command(spec, python), capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=spec.parent)


def run_in_process(inference_dir: Path, train_config: Path, media: Path, results_dir: Path, *,
                   min_recall: float, top_k: int) -> float:
    """NVIDIA's two functions called directly (what main() does), for many small property cases."""
    import logging

    mod = importlib.import_module(MODULE)
    logging.getLogger(mod.__name__).setLevel(logging.WARNING)
    results_dir.mkdir(parents=True, exist_ok=True)
    t = mod.compute_vcn_optimal_threshold(results_dir=str(inference_dir), output_path=str(results_dir / "threshold.txt"),
                                          min_recall=min_recall)
    mod.analyze_vcn_inference_gaps(results_dir=str(inference_dir), gaps_parquet=str(results_dir / "kpi_gaps.parquet"),
                                   kpi_media_path=str(media), train_config=str(train_config), threshold=t,
                                   top_k_per_label=top_k)
    return float(t)


def compare(ours_dir: Path, theirs_dir: Path) -> dict[str, Any]:
    """{same_threshold, same_weak_set, tied_at_cut, thresholds, problems} of two results folders."""
    import pandas as pd

    from tao_aoi import labels

    t_ours = float((ours_dir / "threshold.txt").read_text())
    t_theirs = float((theirs_dir / "threshold.txt").read_text())
    ours = pd.read_parquet(ours_dir / "kpi_gaps.parquet", columns=["filepath", "label", "weakness"])
    theirs = pd.read_parquet(theirs_dir / "kpi_gaps.parquet", columns=["filepath", "label", "weakness"])
    for df in (ours, theirs):
        df["label"] = df["label"].map(labels.canonical_label)
    problems: list[str] = []
    tied = 0
    for lbl in sorted(set(ours["label"]) | set(theirs["label"])):
        a, b = ours[ours["label"] == lbl], theirs[theirs["label"] == lbl]
        wa, wb = sorted(a["weakness"].tolist()), sorted(b["weakness"].tolist())
        if wa != wb:
            problems.append(f"{lbl}: weakness values differ ({len(a)} vs {len(b)} rows)")
            continue
        fa, fb = set(a["filepath"]), set(b["filepath"])
        if fa == fb:
            continue
        cut = wa[0] if wa else None
        off = {f for f in fa ^ fb}
        at_cut = set(a.loc[a["weakness"] == cut, "filepath"]) | set(b.loc[b["weakness"] == cut, "filepath"])
        if off <= at_cut:
            tied += len(fa - fb)
        else:
            problems.append(f"{lbl}: {len(off - at_cut)} kept row(s) differ above the cut, e.g. {sorted(off - at_cut)[0]}")
    return {"same_threshold": t_ours == t_theirs, "same_weak_set": not problems, "tied_at_cut": tied,
            "thresholds": (t_ours, t_theirs), "problems": problems}
