"""Drive a DEFT run through the state machine with synthetic stage outputs.

Used by the state tests (and, run as a script, by the SIGKILL test): every step asks the
transition table what is next, writes the artifacts that stage's commit command names, and
commits through commit_stage.main with exactly the argv stage_plan produces.
Synthetic KPI: FAR falls 10% -> 5% -> 3.3% -> 2.5% over the iterations.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tao_aoi import atomic
from tao_aoi.analysis import metric_contract
from tao_aoi.commands import commit_stage, log_stage
from tao_aoi.layout import iteration_number
from tao_aoi.state import deft_state, stage_plan, stages


def _flags(argv: list[str]) -> dict[str, str]:
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i][2:]] = argv[i + 1]
            i += 2
        else:
            i += 1
    return out


def default_far(n: int) -> float:
    return 10.0 / (n + 1)


N_PASS, N_DEFECT = 1200, 20


def scored_csv(path: Path, far: float, seed: int) -> None:
    """An inference.csv whose FAR at 100% recall is ``far`` (rounded to a whole alarm of N_PASS rows)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    alarms = int(round(far * N_PASS / 100))
    defects = rng.uniform(0.6, 0.99, N_DEFECT)
    defects[0] = 0.6
    passes = np.concatenate([rng.uniform(0.61, 0.95, alarms), rng.uniform(0.01, 0.55, N_PASS - alarms)])
    rows = ["input_path,golden_path,object_name,label,siamese_score"]
    rows += [f"kpi/b{i % 7}/test,kpi/b{i % 7}/golden,C{i},{'PASS' if i < N_PASS else 'MISSING'},{s:.6f}"
             for i, s in enumerate(np.concatenate([passes, defects]))]
    atomic.write_text(path, "\n".join(rows) + "\n")


def fake_outputs(st: dict, step: stages.Step, argv: list[str], far_of=default_far) -> None:
    flags = _flags(argv)
    n = {"final_automl": 4, "run": 0}.get(step.iter) if step.iter in ("final_automl", "run") else iteration_number(step.iter)
    for key, path in flags.items():
        if key in ("results-dir", "iter", "stage", "training-spec", "train-csv") or not path.startswith("/"):
            continue
        p = Path(path)
        if p.exists() and key != "best-model":
            continue
        if key == "metric-result":
            far = far_of(n)
            atomic.write_json(p, {"far_pct": far, "recall_pct": 100.0, "threshold": 0.5,
                                  "name": "far_pct", "value": far, "constraints": {"recall_pct": 100.0}})
        elif key in ("inference-csv", "validation-inference", "holdout-inference"):
            scored_csv(p, far_of(n) if key == "inference-csv" else 5.0, seed=n)
        elif key == "validation-report":
            atomic.write_json(p, {"missing_file_count": 0, "leakage_count": 0, "bad_label_count": 0,
                                  "new_rows": 10 * n, "combined_rows": 100 + 10 * n})
        elif key == "best-model":
            label = metric_contract.pick_best(st["metric_contract"], deft_state.candidates(st))
            atomic.write_json(p, {"iteration": label})
        else:
            atomic.write_text(p, f"{key} for {step}\n")
    if "training-spec" in flags and not Path(flags["training-spec"]).exists():
        atomic.write_text(flags["training-spec"], "train:\n  num_epochs: 3\nmodel:\n  classify:\n    embed_dec: 32\n")
    if "train-csv" in flags and not Path(flags["train-csv"]).exists():
        atomic.write_text(flags["train-csv"], "x\n")


def drive(results_dir: str, *, with_notes: bool = True, phase3: bool = False, far_of=default_far,
          until: stages.Step | None = None) -> dict:
    """Commit stages until the run is done, or until ``until`` is the next stage (not committed)."""
    results_dir = str(results_dir)
    while True:
        st = deft_state.load(results_dir)
        step = stages.expected_next(st)
        if until is not None and step == until:
            return st
        if step is None:
            if phase3 and "final_automl" not in st["iterations"]:
                step = stages.Step("final_automl", "train")
            else:
                return st
        if step.stage == "train" and step.iter == "final_automl":
            out = Path(results_dir) / "final_automl" / "train"
            argv = ["commit_stage.py", "--results-dir", results_dir, "--iter", "final_automl", "--stage", "train",
                    "--checkpoint", str(out / "best.ckpt"), "--training-spec", str(out / "experiment.yaml")]
        else:
            argv = stage_plan.plan(st, step, results_dir)["commit"]
        fake_outputs(st, step, argv, far_of)
        if with_notes:
            log_stage.main(["--results-dir", results_dir, "--iter", step.iter, "--stage", "note",
                            "--status", "ok", "--summary", f"starting {step}"])
        commit_stage.main(argv[1:] + ["--summary", f"{step} done", "--duration-sec", "1.5"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("results_dir")
    ap.add_argument("--phase3", action="store_true")
    a = ap.parse_args()
    final = drive(a.results_dir, phase3=a.phase3)
    print(json.dumps({"status": final["status"], "best": final.get("best_iteration")}))
    sys.exit(0)
