#!/usr/bin/env python3
"""What the three-phase run achieves on the embedded default, on both synthetic generators.

For each workspace (``demo`` = the generator ``make demo`` uses, ``field`` = the independent one drawn
like production data), built with ``make_demo_workspace.py`` and run exactly as ``make demo`` runs
(``run_pipeline.py --phases all --max-iterations 3 --kpi-target "FAR < 1% at Recall=100%" --trials 8``,
in-process with the local backend), it prints:

1. the trajectory: Phase 1's winner on the KPI set (the DEFT baseline), every DEFT iteration, Phase 3,
   the deliverable, and the ratio deliverable / Phase 1;
2. the limiting family (the defect label with the highest FAR against all PASS rows at the baseline)
   and the share of that family's mining-pool rows mining brought in over the run;
3. the AutoML objective against the KPI: every Phase 1 trial's checkpoint is scored on the KPI set
   (never used by the search) and Spearman's rho is printed between the objective the sampler
   minimises (``automl.objective``: FAR averaged over recall 90-100%) and KPI FAR, beside the
   same for plain validation FAR@100% recall. ``--objective-seeds N`` adds N more Phase 1-style
   searches of ``--objective-trials`` trials (other sampler seeds) on the same workspace, for a
   pooled rho and the median per search, and the same for candidate objectives computed on those
   trials' validation scores (1-AUC, the hardest 5% of defects, each family's worst defect, the worst
   family's 1-AUC), the evidence for the objective chosen;
4. what targeting did for the samples that pinned the baseline (``limiting_trajectory``): each of the
   baseline's first ``defaults.FEW_PINNING`` limiting samples, its score and the share of PASS rows at
   or above it at every evaluated phase, the SDG pairs picked for it (count, best and worst cosine)
   and the mining-pool rows mined for it per iteration, and whether its score rose by iter2.
   ``--row-weight W`` / ``--limiting-share S`` run with another weight for the rows added for
   limiting samples (1 = unweighted, what TAO gets) or another priority share (0 = no priority).

5. with ``--holdout-half``: the optimism gap, measured. The KPI set is split in half (stratified by
   label, seeded): one half stays the KPI set the run decides on, the other is sealed as
   ``--holdout-csv``. Printed per run: the contract FAR and recall (KPI set, which also chose the
   deliverable), the calibrated FAR and recall (threshold chosen on the validation set, applied to the
   KPI set) and the holdout FAR and recall at the shipped threshold, with the holdout minus contract
   gap; a summary table closes the run.

Speed figures are not the point here (see bench/embedded.py); total wall time is printed.
Run: .venv/bin/python bench/deft_quality.py [--workspaces demo,field] [--seeds 0] [--objective-seeds 0]
     [--holdout-half]   (the issue-17 table: --seeds 0,1 --holdout-half)
     [--row-weight 3] [--limiting-share 0.5]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tao_aoi import defaults
from tao_aoi.analysis import kpi
from tao_aoi.automl import search_space, study
from tao_aoi.backends import get_backend  # noqa: E402
from tao_aoi.backends.base import InferJob  # noqa: E402
from tao_aoi.data import changenet_csv
from tao_aoi.layout import Results, Workspace  # noqa: E402
from tao_aoi.pipeline import phases  # noqa: E402

PRESET = {"demo": "demo", "field": "field"}
TARGET = "FAR < 1% at Recall=100%"


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def build(name: str, seed: int, work: Path) -> Workspace:
    out = work / f"{name}_s{seed}"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_workspace.py"), "--out", str(out), "--preset",
                    PRESET[name], "--seed", str(seed), "--force", "--quiet"], check=True,
                   env=dict(os.environ, TAO_AOI_NO_REEXEC="1"))
    return Workspace.at(out)


def run_three_phases(ws: Workspace, trials: int, run: str = "bench_run",
                     holdout: Path | None = None) -> tuple[dict, Results]:
    opts = phases.Options(str(ws.root), "local", "all", 3, TARGET, trials, defaults.AUTOML_ALGORITHM,
                          defaults.NUM_SDG, defaults.TOP_K_PER_TARGET, None, defaults.SEED,
                          holdout_csv=str(holdout) if holdout else None)
    R = Results.at(ws.results / run)
    return phases.run(opts, R, quiet=True), R


def kpi_far_of(backend, spec: Path, ckpt: Path, ws: Workspace, out: Path) -> float:
    backend.infer(InferJob(spec=spec, checkpoint=ckpt, csv=ws.kpi_csv, images_root=ws.images, output_dir=out))
    _, scores, positive = kpi.read_inference(str(out / "inference.csv"))
    return float(kpi.at_recall(scores, positive, 100.0).far_pct)


def pass_share_above(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per defect: the share of PASS rows scored at or above it (its FAR if it set the threshold)."""
    passes = np.sort(scores[~positive])
    return (len(passes) - np.searchsorted(passes, scores[positive], side="left")) / max(len(passes), 1)


def candidate_objectives(scores: np.ndarray, positive: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Other validation metrics a search could minimise, to compare with ``automl.objective``."""
    share = pass_share_above(scores, positive)
    fam = labels[positive]
    per_family = [share[fam == f] for f in sorted(set(fam))]
    hardest = np.sort(share)[::-1][:max(1, int(np.ceil(0.05 * len(share))))]
    return {"1-AUC": float(share.mean()), "hardest 5%": float(hardest.mean()),
            "mean family worst": float(np.mean([f.max() for f in per_family])),
            "worst family 1-AUC": float(np.max([f.mean() for f in per_family]))}


def trial_table(rec: dict, ws: Workspace, work: Path, candidates: bool = False) -> pd.DataFrame:
    """Objective, validation FAR and KPI FAR of every complete feasible trial of a search
    (+ the candidate objectives on the validation set with ``candidates``)."""
    backend = get_backend("local")
    rows = []
    for t in rec["trials"]:
        if t["state"] != "COMPLETE" or not t.get("feasible") or not t.get("checkpoint"):
            continue
        ckpt = Path(t["checkpoint"])
        spec = ckpt.parent / "experiment.yaml"
        far = kpi_far_of(backend, spec, ckpt, ws, work / f"kpi_trial_{t['number']:04d}")
        row = {"trial": t["number"], "objective": t["objective"], "val_far": t["value"], "kpi_far": far}
        if candidates:
            out = work / f"val_trial_{t['number']:04d}"
            backend.infer(InferJob(spec=spec, checkpoint=ckpt, csv=ws.validation_csv, images_root=ws.images,
                                   output_dir=out))
            df, scores, positive = kpi.read_inference(str(out / "inference.csv"))
            row |= candidate_objectives(scores, positive, df["label"].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def limiting_family(R: Results, ws: Workspace) -> tuple[str, float, int, int]:
    """(label, its baseline FAR, pool rows of it mined over the run, pool rows of it)."""
    df, scores, positive = kpi.read_inference(str(R.stage_dir("baseline", "evaluate") / "inference.csv"))
    share, family = pass_share_above(scores, positive), df["label"].to_numpy()[positive]
    worst, worst_far = "", -1.0
    for label in sorted(set(family)):  # a family's FAR is the share above its lowest-scored defect
        far = 100.0 * float(share[family == label].max())
        if far > worst_far:
            worst, worst_far = label, far
    pool = changenet_csv.read(ws.mining_pool_csv)
    mined = 0
    for d in sorted(R.root.glob("iter*/mining/mined_rows.csv")):
        rows = pd.read_csv(d, dtype=str, keep_default_na=False)
        mined += int((rows["label"] == worst).sum())
    return worst, worst_far, mined, int((pool["label"] == worst).sum())


def limiting_trajectory(R: Results, ws: Workspace) -> list[dict]:
    """The baseline's first ``defaults.FEW_PINNING`` limiting samples: per evaluated phase their score and
    PASS share at or above it, with the SDG pairs picked for them and the pool rows mined for them."""
    from tao_aoi.data import leakage

    metrics = json.loads((R.stage_dir("baseline", "rca") / "metrics.json").read_text(encoding="utf-8"))
    samples = metrics["limiting_samples"][:defaults.FEW_PINNING]
    if not samples:
        return []
    st = json.loads(R.state.read_text(encoding="utf-8"))
    order = ["baseline"] + sorted((k for k in st["iterations"] if k.startswith("iter")), key=lambda k: int(k[4:]))
    order += [k for k in ("final_automl",) if k in st["iterations"]]
    keys = leakage.sample_keys(pd.DataFrame([{"input_path": x["input_path"], "object_name": x["object_name"]}
                                             for x in samples]), ws.images).tolist()
    out = [{"rank": x["rank"], "label": x["label"], "sample": f"{x['input_path']}/{x['object_name']}", "key": k,
            "phases": {}} for x, k in zip(samples, keys)]
    for it in order:
        inf = R.stage_dir(it, "evaluate") / "inference.csv"
        if not inf.is_file():
            continue
        df, scores, positive = kpi.read_inference(str(inf))
        share = pass_share_above(scores, positive)
        row_keys = leakage.sample_keys(df[positive], ws.images).tolist()
        at = {k: i for i, k in enumerate(row_keys)}
        alloc_p = R.stage_dir(it, "sdg") / "allocation.json"
        alloc = json.loads(alloc_p.read_text(encoding="utf-8")) if alloc_p.is_file() else {}
        mined_p = R.stage_dir(it, "mining") / "mined_rows.csv"
        mined = pd.read_csv(mined_p, dtype=str, keep_default_na=False) if mined_p.is_file() else None
        for rec in out:
            i = at.get(rec["key"])
            if i is None:
                continue
            picked = [p["similarity"] for t in alloc.get("targeted", []) if t["target"] == rec["key"]
                      for p in t["picked"]]
            rec["phases"][it] = {"score": float(scores[positive][i]), "pass_above_pct": 100.0 * float(share[i]),
                                 "sdg_picked": len(picked), "sdg_sim": (max(picked), min(picked)) if picked else None,
                                 "mined": int((mined["target"] == rec["key"]).sum()) if mined is not None else None}
    for rec in out:  # at iter2, or at the last iteration when the loop stopped before it
        ph = rec["phases"]
        base, second = ph.get("baseline"), ph.get("iter2") or ph.get("iter1")
        rec["rises_by_iter2"] = bool(base and second and second["score"] > base["score"])
    return out


def print_limiting(traj: list[dict]) -> None:
    if not traj:
        print("  no sample pinned the baseline's threshold")
        return
    print("  limiting samples at the baseline (score, PASS rows at or above it; SDG pairs picked for it with their "
          "cosine; pool rows mined for it):")
    for rec in traj:
        print(f"    #{rec['rank']} {rec['label']} {rec['sample']}: rises by iter2: "
              f"{'yes' if rec['rises_by_iter2'] else 'no'}")
        for it, ph in rec["phases"].items():
            extra = ""
            if it.startswith("iter"):
                sim = f", cosine {ph['sdg_sim'][0]:.3f}..{ph['sdg_sim'][1]:.3f}" if ph["sdg_sim"] else ""
                extra = f"; sdg {ph['sdg_picked']}{sim}; mined {ph['mined']}"
            print(f"      {it:<13s} {ph['score']:.4f} ({ph['pass_above_pct']:5.1f}%){extra}")


def extra_searches(ws: Workspace, seeds: int, trials: int, work: Path) -> list[pd.DataFrame]:
    space = search_space.default_for_backend("local")
    tables = []
    for i in range(seeds):
        out = work / f"objective_search_{i}"
        cfg = study.SearchConfig(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                                  images_root=ws.images, out_dir=out, space=space, n_trials=trials,
                                  seed=defaults.SEED + 1 + i, start_params=study.start_point(space, ws.baseline_spec))
        study.work(cfg, get_backend("local"))
        tables.append(trial_table(study.write_best(cfg), ws, out, candidates=True))
    return tables


def split_holdout(ws: Workspace, seed: int) -> Path:
    """Half of the KPI set (stratified by label) sealed as the holdout; the other half stays the KPI set."""
    kpi_rows = changenet_csv.read(ws.kpi_csv)
    rng = np.random.default_rng(1000 + seed)
    sealed = np.zeros(len(kpi_rows), dtype=bool)
    for _, idx in kpi_rows.groupby("label").indices.items():
        sealed[rng.permutation(idx)[: len(idx) // 2]] = True
    holdout = ws.root / "holdout" / "holdout_set.csv"
    changenet_csv.write(kpi_rows[sealed], holdout)
    changenet_csv.write(kpi_rows[~sealed], ws.kpi_csv)
    return holdout


def optimism(R: Results) -> dict:
    """The deliverable's three figures from best_model.json: contract, calibrated, holdout (at the shipped threshold)."""
    bm = json.loads(R.best_model.read_text(encoding="utf-8"))
    mr, cal, ho = bm["metric_result"], (bm.get("calibrated") or {}).get("kpi") or {}, bm.get("holdout") or {}
    at_cal = {}
    if ho.get("inference_csv") and (bm.get("calibrated") or {}).get("threshold") is not None:
        _, hs, hp = kpi.read_inference(ho["inference_csv"])
        p = kpi.at_threshold(hs, hp, bm["calibrated"]["threshold"])
        at_cal = {"holdout_far_at_calibrated": p.far_pct, "holdout_recall_at_calibrated": p.recall_pct}
    return {**at_cal, "contract_far": mr.get("far_pct"), "contract_recall": mr.get("recall_pct"),
            "calibrated_far": cal.get("far_pct"), "calibrated_recall": cal.get("recall_pct"),
            "holdout_far": ho.get("far_pct"), "holdout_recall": ho.get("recall_pct"),
            "holdout_far_ci": ho.get("far_ci95_pct"), "holdout_rows": ho.get("rows"),
            "kpi_pass": mr.get("n_pass"), "margin": (bm.get("deployment") or {}).get("margin"),
            "unseen_families": (bm.get("calibrated") or {}).get("families_not_in_validation") or []}


def print_optimism(o: dict) -> None:
    lo, hi = o["holdout_far_ci"] or (float("nan"), float("nan"))
    print(f"  figures: contract FAR {o['contract_far']:.3f}% recall {o['contract_recall']:.2f}% | calibrated FAR "
          f"{o['calibrated_far']:.3f}% recall {o['calibrated_recall']:.2f}% | holdout ({o['holdout_rows']} rows) FAR "
          f"{o['holdout_far']:.3f}% [{lo:.2f}..{hi:.2f}] recall {o['holdout_recall']:.2f}% at the shipped threshold; "
          f"optimism gap (holdout - contract) FAR {o['holdout_far'] - o['contract_far']:+.3f} pp, recall "
          f"{o['holdout_recall'] - o['contract_recall']:+.2f} pp"
          + (f"; validation lacks {', '.join(o['unseen_families'])}" if o["unseen_families"] else ""))
    if "holdout_far_at_calibrated" in o:
        print(f"  had the calibrated threshold shipped: holdout FAR {o['holdout_far_at_calibrated']:.3f}% recall "
              f"{o['holdout_recall_at_calibrated']:.2f}%")


def report(name: str, seed: int, ws: Workspace, trials: int, objective_seeds: int, objective_trials: int,
           work: Path, holdout_half: bool = False) -> dict:
    t0 = time.perf_counter()
    holdout = split_holdout(ws, seed) if holdout_half else None
    summary, R = run_three_phases(ws, trials, holdout=holdout)
    traj = {t["iteration"]: t["kpi_value"] for t in summary["trajectory"]}
    phase1 = traj.get("baseline")
    deliverable = summary["deliverable"]
    print(f"\n== {name} seed {seed}: {ws.root} ({time.perf_counter() - t0:.0f} s for the three phases)")
    for label, value in traj.items():
        print(f"  {label:<14s} KPI FAR@100%R {value:7.3f}%")
    ratio = deliverable["kpi_value"] / phase1 if phase1 else float("nan")
    print(f"  deliverable    {deliverable['iteration']}: {deliverable['kpi_value']:.3f}% "
          f"({'meets' if deliverable['passed'] else 'misses'} {TARGET}); deliverable / Phase 1 = {ratio:.3f}")
    worst, worst_far, mined, pool_rows = limiting_family(R, ws)
    print(f"  limiting family at the baseline: {worst} (its FAR {worst_far:.2f}%); mining brought {mined} of the "
          f"pool's {pool_rows} {worst} rows ({mined / max(pool_rows, 1):.0%})")
    rec = json.loads((R.automl("phase1") / "best_rec.json").read_text(encoding="utf-8"))
    table = trial_table(rec, ws, work / f"{name}_s{seed}_phase1", candidates=bool(objective_seeds))
    rho_obj, rho_far = spearman(table["objective"], table["kpi_far"]), spearman(table["val_far"], table["kpi_far"])
    print(f"  Phase 1 ({len(table)} trials): Spearman(objective, KPI FAR) {rho_obj:+.3f}; Spearman(val FAR@100%R, "
          f"KPI FAR) {rho_far:+.3f}; val FAR 0 in {(table['val_far'] == 0).sum()}/{len(table)} trials; KPI FAR "
          f"{table['kpi_far'].min():.2f}..{table['kpi_far'].max():.2f}%")
    result = {"phase1": phase1, "deliverable": deliverable["kpi_value"], "ratio": ratio, "rho": rho_obj,
              "met": deliverable["passed"], "iterations": sum(1 for k in traj if k.startswith("iter"))}
    if holdout is not None:
        result["optimism"] = optimism(R)
        print_optimism(result["optimism"])
    lim = limiting_trajectory(R, ws)
    print_limiting(lim)
    result["pin"] = lim[0] if lim else None
    if objective_seeds:
        tables = [table] + extra_searches(ws, objective_seeds, objective_trials, work / f"{name}_s{seed}_searches")
        per = [spearman(t["objective"], t["kpi_far"]) for t in tables]
        per_far = [spearman(t["val_far"], t["kpi_far"]) for t in tables]
        pooled = pd.concat(tables)
        print(f"  {len(tables)} searches ({len(pooled)} trials): Spearman(objective, KPI FAR) pooled "
              f"{spearman(pooled['objective'], pooled['kpi_far']):+.3f}, per search median "
              f"{statistics.median(per):+.3f} [{' '.join(f'{r:+.2f}' for r in per)}]; plain val FAR pooled "
              f"{spearman(pooled['val_far'], pooled['kpi_far']):+.3f}, median {statistics.median(per_far):+.3f}")
        print("  candidate objectives on the same trials (validation set), Spearman with KPI FAR:")
        for col in [c for c in pooled.columns if c not in ("trial", "objective", "val_far", "kpi_far")]:
            per_c = [spearman(t[col], t["kpi_far"]) for t in tables]
            print(f"    {col:<20s} pooled {spearman(pooled[col], pooled['kpi_far']):+.3f}, per search median "
                  f"{statistics.median(per_c):+.3f}")
    return result


def print_optimism_table(results: dict) -> None:
    print("\nthree figures of the deliverable (%; KPI set = one half, holdout = the other half, sealed)")
    print(f"  {'workspace':<10s} {'seed':>4s} {'KPI PASS':>8s} {'contract FAR':>12s} {'cal. FAR':>9s} {'cal. recall':>11s} "
          f"{'holdout FAR':>11s} {'holdout recall':>14s} {'gap FAR pp':>10s} {'gap recall pp':>13s}")
    gaps, rgaps = [], []
    for (name, seed), r in results.items():
        o = r["optimism"]
        gap, rgap = o["holdout_far"] - o["contract_far"], o["holdout_recall"] - o["contract_recall"]
        gaps.append(gap)
        rgaps.append(rgap)
        print(f"  {name:<10s} {seed:>4d} {o['kpi_pass']:>8d} {o['contract_far']:12.3f} {o['calibrated_far']:9.3f} "
              f"{o['calibrated_recall']:11.2f} {o['holdout_far']:11.3f} {o['holdout_recall']:14.2f} {gap:+10.3f} "
              f"{rgap:+13.2f}")
    print(f"  mean optimism gap (holdout - contract): FAR {statistics.mean(gaps):+.3f} pp, recall "
          f"{statistics.mean(rgaps):+.2f} pp over {len(gaps)} runs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspaces", default="demo,field")
    ap.add_argument("--seeds", default="0", help="workspace seeds, comma-separated")
    ap.add_argument("--trials", type=int, default=defaults.AUTOML_TRIALS)
    ap.add_argument("--objective-seeds", type=int, default=0)
    ap.add_argument("--objective-trials", type=int, default=12)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--holdout-half", action="store_true",
                    help="seal half of each KPI set as --holdout-csv and print the three figures (optimism gap)")
    ap.add_argument("--row-weight", type=float, default=defaults.LIMITING_ROW_WEIGHT,
                    help="weight of the rows an iteration adds for limiting samples (1: unweighted, as on TAO)")
    ap.add_argument("--limiting-share", type=float, default=defaults.LIMITING_SHARE,
                    help="share of SDG rows and mining slots for the limiting samples (0: no priority)")
    args = ap.parse_args()
    defaults.LIMITING_ROW_WEIGHT, defaults.LIMITING_SHARE = args.row_weight, args.limiting_share
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_deft_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"host: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; scratch {work}; target {TARGET}; "
          f"limiting rows weight {defaults.LIMITING_ROW_WEIGHT:g}, priority share {defaults.LIMITING_SHARE:g}")
    results = {}
    try:
        for name in [w for w in args.workspaces.split(",") if w]:
            for seed in [int(s) for s in args.seeds.split(",") if s]:
                ws = build(name, seed, work)
                results[(name, seed)] = report(name, seed, ws, args.trials, args.objective_seeds,
                                               args.objective_trials, work, args.holdout_half)
        print("\nsummary (KPI FAR@100% recall, %)")
        print(f"  {'workspace':<10s} {'seed':>4s} {'Phase 1':>8s} {'deliv.':>8s} {'ratio':>6s} {'met':>4s} "
              f"{'iters':>5s} {'rho':>6s}")
        for (name, seed), r in results.items():
            print(f"  {name:<10s} {seed:>4d} {r['phase1']:8.3f} {r['deliverable']:8.3f} {r['ratio']:6.3f} "
                  f"{'yes' if r['met'] else 'no':>4s} {r['iterations']:5d} {r['rho']:+6.3f}")
        if args.holdout_half:
            print_optimism_table(results)
        print("\nthe sample that pinned the baseline: its score per phase (PASS rows at or above it, %)")
        for (name, seed), r in results.items():
            pin = r.get("pin")
            if not pin:
                print(f"  {name:<10s} {seed:>4d} none pinned")
                continue
            steps = "  ".join(f"{it} {ph['score']:.3f} ({ph['pass_above_pct']:.1f})" for it, ph in pin["phases"].items())
            print(f"  {name:<10s} {seed:>4d} {pin['label']:<16s} rises by iter2: {'yes' if pin['rises_by_iter2'] else 'no':<3s}"
                  f"  {steps}")
        for name in dict.fromkeys(n for n, _ in results):
            rs = [r for (n, _), r in results.items() if n == name]
            print(f"  {name}: mean deliverable {statistics.mean(r['deliverable'] for r in rs):.3f}%, "
                  f"pinning sample lifted by iter2 on {sum(bool(r.get('pin') and r['pin']['rises_by_iter2']) for r in rs)}"
                  f"/{len(rs)} seeds")
        print(f"total {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
