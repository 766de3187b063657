"""The exact commands for a DEFT stage, derived from state alone.

next_stage.py prints them for the agent; run_pipeline.py executes the very same argv lists, so
what the skill tells the agent to run and what the headless runner runs cannot drift apart. One
deliberate difference: for an agent the rca command carries ``--agent-review`` (RCA_Report.md
then has TODO(agent) placeholders for its visual spot check) and ``--verdicts`` (sheets of samples
reviewed before keep their verdict), and the plan has a ``review``: the report to fill, then the
check that records its verdicts, before the commit; headless, the report is complete.
Pure Python (read by next_stage.py on every agent step).
"""
from __future__ import annotations

import shlex

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Mapping

from tao_aoi import cli, defaults, layout
from tao_aoi.analysis import metric_contract
from tao_aoi.layout import Results, iteration_label, iteration_number
from tao_aoi.state import stages


def _prev_best_checkpoint(state: Mapping[str, Any]) -> str:
    """Fine-tune from the best complete candidate so far (not blindly the previous iteration)."""
    from tao_aoi.state import deft_state as state_mod

    label = metric_contract.pick_best(state["metric_contract"], state_mod.candidates(state))
    if label is None:
        raise ValueError("no evaluated iteration to fine-tune from")
    return state["iterations"][label]["artifacts"]["checkpoint"]


def _training_spec(state: Mapping[str, Any], label: str) -> str:
    rec = state["iterations"].get(label) or {}
    return rec.get("artifacts", {}).get("training_spec") or state["config"]["train_spec"]


def _holdout_scoring(state: Mapping[str, Any], R: Results, cfg: Mapping[str, Any], backend: str) -> dict[str, list]:
    """The sealed holdout, scored once by the deliverable at finalize (nothing before reads it). A finalize
    that runs again with the same deliverable (after Phase 3 did not win) reuses the committed scores."""
    from tao_aoi.state import deft_state as state_mod

    if not cfg.get("holdout_csv"):
        return {"run": [], "commit": []}
    best = metric_contract.pick_best(state["metric_contract"], state_mod.candidates(state))
    if best is None:
        return {"run": [], "commit": []}
    out = R.holdout(best)
    scored = out / "inference.csv"
    done = (state.get("final_artifacts") or {}).get("holdout_inference")
    run = [] if done == str(scored) else [
        ["infer.py", "--backend", backend, "--spec", _training_spec(state, best),
         "--checkpoint", state["iterations"][best]["artifacts"]["checkpoint"], "--csv", cfg["holdout_csv"],
         "--images-root", cfg["images_root"], "--output-dir", str(out)]]
    return {"run": run, "commit": ["--holdout-inference", str(scored)]}


def plan(state: Mapping[str, Any], step: stages.Step, results_dir: str, *, agent: bool = False) -> dict[str, Any]:
    """{'run': [argv, ...], 'commit': argv} where argv[0] is a script name in scripts/; ``agent``: an agent
    drives the stage (next_stage.py), not the headless runner; its rca plan adds
    'review': {'report', 'images', 'check': argv} (fill the report, run the check, then commit)."""
    R = Results.at(results_dir)
    cfg = state["config"]
    label, stage = step.iter, step.stage
    contract = state["metric_contract"]
    backend = cfg["backend"]
    run: list[list[str]] = []
    review: dict[str, Any] | None = None
    commit = ["commit_stage.py", "--results-dir", str(R.root), "--iter", label, "--stage", stage]
    d = R.stage_dir(label, stage)

    if stage == "train":
        out = R.stage_dir(label, "train")
        if label == "baseline":
            train_csv = cfg["training_csv"]
            init: list[str] = []
        else:
            n = iteration_number(label)
            train_csv = str(R.combined_csv(n))
            # the rows this iteration added for limiting samples carry a higher weight (provenance ``weight``)
            init = ["--init-checkpoint", _prev_best_checkpoint(state), "--row-weights", str(R.provenance_csv(n))]
        run.append(["train.py", "--backend", backend, "--spec", cfg["train_spec"], "--train-csv", train_csv,
                    "--val-csv", cfg["validation_csv"], "--images-root", cfg["images_root"],
                    "--output-dir", str(out), *init])
        commit += ["--checkpoint", str(out / defaults.CHECKPOINT_NAME),
                   "--training-spec", str(out / "experiment.yaml"), "--train-csv", train_csv]
    elif stage == "evaluate":
        ckpt = state["iterations"][label]["artifacts"]["checkpoint"]
        point = contract["operating_point"]
        op_flag = ["--recall-target", cli.percent_arg(point["target"])] if point["name"] == "recall_pct" \
            else ["--far-target", f"{point['target']:g}"]
        spec = _training_spec(state, label)
        run.append(["infer.py", "--backend", backend, "--spec", spec, "--checkpoint", ckpt,
                    "--csv", cfg["kpi_csv"], "--images-root", cfg["images_root"], "--output-dir", str(d)])
        # The same model on the validation set: the calibrated KPI chooses its threshold there (one more
        # inference job per candidate on docker/slurm; on the local backend the features are already cached).
        val = d / defaults.CALIBRATION_DIR
        run.append(["infer.py", "--backend", backend, "--spec", spec, "--checkpoint", ckpt,
                    "--csv", cfg["validation_csv"], "--images-root", cfg["images_root"], "--output-dir", str(val)])
        run.append(["analyze_kpi.py", str(d / "inference.csv"), "--output-dir", str(d), *op_flag,
                    "--kpi-target", contract["text"], "--calibration-csv", str(val / "inference.csv")])
        commit += ["--metric-result", str(d / "metric_result.json"), "--inference-csv", str(d / "inference.csv"),
                   "--validation-inference", str(val / "inference.csv")]
    elif stage == "rca":
        inf = R.stage_dir(label, "evaluate") / "inference.csv"
        run.append(["gap_analysis.py", "--inference-csv", str(inf), "--train-spec", _training_spec(state, label),
                    "--images-root", cfg["images_root"], "--results-dir", str(d),
                    "--min-recall", cli.percent_arg(100 * cfg.get("min_recall", defaults.MIN_RECALL)),
                    "--top-k-per-label", str(cfg.get("top_k_per_label", defaults.TOP_K_PER_LABEL)),
                    "--kpi-target", contract["text"], "--kpi-csv", cfg["kpi_csv"],
                    *(["--agent-review", "--verdicts", str(R.spot_check_verdicts)] if agent else [])])
        commit += ["--gaps", str(d / "kpi_gaps.parquet"), "--rca-report", str(d / "RCA_Report.md"),
                   "--threshold-file", str(d / "threshold.txt")]
        if agent:
            review = {"report": str(d / "RCA_Report.md"), "images": str(d / "rca_images"), "inference_csv": str(inf),
                      "check": ["gap_analysis.py", "--check-report", str(d / "RCA_Report.md"),
                                "--verdicts", str(R.spot_check_verdicts)]}
    elif stage == "routing":
        prev = iteration_label(iteration_number(label) - 1)
        run.append(["route_samples.py", "--gaps", str(R.stage_dir(prev, "rca") / "kpi_gaps.parquet"),
                    "--sdg-pool", cfg["sdg_pool"], "--mining-pool", cfg["mining_pool_csv"], "--results-dir", str(d),
                    "--sdg-labels", ",".join(cfg.get("sdg_labels", defaults.SDG_LABELS))])
        commit += ["--routing-summary", str(d / "routing_summary.json")]
    elif stage == "sdg":
        run.append(["ingest_sdg.py", "--routing", str(R.stage_dir(label, "routing")), "--sdg-pool", cfg["sdg_pool"],
                    "--num-sdg", str(cfg.get("num_sdg", defaults.NUM_SDG)), "--results-dir", str(d),
                    "--images-root", cfg["images_root"], "--train-spec", cfg["train_spec"],
                    "--history", str(R.root / "sdg_history.json"), "--iteration", label,
                    "--backend", backend, "--embedding-cache", str(R.root / "sdg_cache"),
                    "--reference-pool", cfg["mining_pool_csv"], "--reference-cache", str(R.root / "mining_cache")])
        commit += ["--allocation", str(d / "allocation.json"), "--sdg-rows", str(d / "sdg_rows.csv")]
    elif stage == "mining":
        run.append(["mine_pool.py", "--targets", str(R.stage_dir(label, "routing") / "mining_gaps.parquet"),
                    "--mining-pool", cfg["mining_pool_csv"], "--images-root", cfg["images_root"],
                    "--results-dir", str(d), "--train-spec", cfg["train_spec"], "--backend", backend,
                    "--top-k-per-target", str(cfg.get("top_k_per_target", defaults.TOP_K_PER_TARGET)),
                    *(["--min-similarity", f"{cfg['min_similarity']:g}"] if cfg.get("min_similarity") is not None else []),
                    "--history", str(R.mining_history), "--iteration", label,
                    "--exclude", cfg["validation_csv"], "--exclude", cfg["kpi_csv"],
                    *(["--exclude", cfg["holdout_csv"]] if cfg.get("holdout_csv") else []),
                    "--embedding-cache", str(R.root / "mining_cache")])
        commit += ["--mined-rows", str(d / "mined_rows.csv"), "--knn-summary", str(d / "knn_summary.csv")]
    elif stage == "assemble":
        n = iteration_number(label)
        run.append(["assemble_dataset.py", "--results-dir", str(R.root), "--iter", str(n)])
        commit += ["--combined-csv", str(R.combined_csv(n)), "--provenance", str(R.provenance_csv(n)),
                   "--validation-report", str(R.combined_csv(n).parent / "validation_report.json")]
    elif stage == "finalize":
        holdout = _holdout_scoring(state, R, cfg, backend)
        run += holdout["run"]
        run.append(["prepare_inference_spec.py", "--results-dir", str(R.root)])
        commit += ["--best-model", str(R.best_model), "--inference-spec", str(R.inference_spec), *holdout["commit"]]
    else:
        raise ValueError(f"no plan for stage {stage!r}")
    return {"run": run, "commit": commit, **({"review": review} if review else {})}


def render(argv: list[str]) -> str:
    """A copy-pasteable shell line: python3 <plugin>/scripts/<script> ..."""
    return " ".join(["python3", shlex.quote(str(layout.SCRIPTS_DIR / argv[0]))] + [shlex.quote(a) for a in argv[1:]])
