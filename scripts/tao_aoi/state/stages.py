"""The DEFT transition table and the artifacts each stage must hand to the single writer.

Order (DESIGN.md section 3): baseline ``train -> evaluate -> rca``; per iteration N
``routing -> sdg -> mining -> assemble -> train -> evaluate -> (rca if another iteration follows)``;
then ``run/finalize``. After a finalize, Phase 3 may register ``final_automl`` (train -> evaluate)
and finalize again. Pure Python: read by the state scripts on every call.
"""
from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Any, Mapping

from tao_aoi.layout import iteration_label, iteration_number

RUN = "run"  # iteration label of run-level events (init, reconfigure, finalize)
RECONFIGURE = "reconfigure"  # run-level commit: options of iterations not yet started changed on resume
ITER_STAGES = ("routing", "sdg", "mining", "assemble", "train", "evaluate", "rca")
COMMIT_STAGES = ("init", "train", "evaluate", "rca", "routing", "sdg", "mining", "assemble", "finalize")
# Events that only go to the log (progress notes from the runner, AutoML phases, ...). ``retry``: a job
# attempt ended by an infrastructure fault and was tried again (backends/faults.py), or a lost poll.
RETRY = "retry"
LOG_ONLY_STAGES = ("preflight", "automl", "seed", "warm_start", "report", "note", RETRY)
ALL_STAGES = COMMIT_STAGES + (RECONFIGURE,) + LOG_ONLY_STAGES
# Config keys that only shape iterations not yet started, so a resumed run may change them
# (state.reconfigure): the stage that reads each one; None = the loop's end.
ADJUSTABLE_CONFIG = {"num_sdg": "sdg", "top_k_per_target": "mining", "min_similarity": "mining",
                     "max_iterations": None}

# stage -> ((artifact key, required), ...). Each key is a commit_stage.py flag --<key with dashes>.
ARTIFACTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "train": (("checkpoint", True), ("training_spec", True), ("train_csv", False)),
    "evaluate": (("metric_result", True), ("inference_csv", True), ("validation_inference", False)),
    "rca": (("gaps", True), ("rca_report", False), ("threshold_file", False)),
    "routing": (("routing_summary", True),),
    "sdg": (("allocation", True), ("sdg_rows", True)),
    "mining": (("mined_rows", True), ("knn_summary", True)),
    "assemble": (("combined_csv", True), ("provenance", True), ("validation_report", True)),
    "finalize": (("best_model", True), ("inference_spec", True), ("holdout_inference", False)),
}
ARTIFACT_KEYS = tuple(dict.fromkeys(k for spec in ARTIFACTS.values() for k, _ in spec))


class Step(namedtuple("Step", "iter stage")):
    """One (iteration label, stage) position in the run. (A namedtuple: dataclasses cost start-up time.)"""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.iter}/{self.stage}"


def _passed(state: Mapping[str, Any], label: str) -> bool:
    rec = state.get("iterations", {}).get(label) or {}
    return bool((rec.get("metric_result") or {}).get("passed"))


def _beyond_max(state: Mapping[str, Any], label: str | None) -> bool:
    """An iteration past max_iterations (lowered on resume): the loop finalizes without finishing it."""
    if not label or not label.startswith("iter"):
        return False
    return iteration_number(label) > int(state["config"]["max_iterations"])


def expected_next(state: Mapping[str, Any]) -> Step | None:
    """The one stage the writer accepts next (a failed stage is retried in place); None = done."""
    last = state.get("last_commit")
    if not last or last["stage"] == "init":
        return Step("baseline", "train")
    label, stage = last["iter"], last["stage"]
    if stage == "finalize":
        return None
    if _beyond_max(state, label):
        return Step(RUN, "finalize")  # max_iterations lowered on resume below an unfinished iteration
    if stage == "train":
        return Step(label, "evaluate")
    if stage == "evaluate":
        if label == "final_automl":
            return Step(RUN, "finalize")
        n = iteration_number(label)
        if _passed(state, label) or n >= int(state["config"]["max_iterations"]):
            return Step(RUN, "finalize")
        return Step(label, "rca")
    if stage == "rca":
        return Step(iteration_label(iteration_number(label) + 1), "routing")
    if stage in ITER_STAGES:
        i = ITER_STAGES.index(stage)
        return Step(label, ITER_STAGES[i + 1])
    raise ValueError(f"unknown stage in state: {stage!r}")


def allowed_next(state: Mapping[str, Any]) -> list[Step]:
    """Everything the writer accepts: the expected step, plus Phase 3's entry after a finalize."""
    nxt = expected_next(state)
    if nxt is not None:
        return [nxt]
    if state.get("status") == "complete" and "final_automl" not in state.get("iterations", {}):
        return [Step("final_automl", "train")]
    return []


def stop_reason(state: Mapping[str, Any]) -> str | None:
    """Why the loop stopped at the last evaluate (only meaningful when finalize is next)."""
    last = state.get("last_commit") or {}
    label = last.get("iter")
    if _beyond_max(state, label):
        return "max_iterations"  # lowered on resume: the unfinished iteration is abandoned
    if last.get("stage") != "evaluate":
        return None
    if label == "final_automl":
        return "phase3_registered"
    return "metric_met" if _passed(state, label) else "max_iterations"
