"""Where things live: the workspace contract users bring and the results-folder layout.

Every path convention of DESIGN.md section 4 is written here once; commands ask this module
instead of joining path fragments themselves.
"""
from __future__ import annotations

import re
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parents[2]  # <plugin>/scripts/tao_aoi/layout.py
SCRIPTS_DIR = PLUGIN_ROOT / "scripts"

ITER_RE = re.compile(r"^(baseline|iter[1-9][0-9]*|final_automl)$")


class Workspace:
    """The user's workspace (DESIGN.md section 4)."""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def at(cls, path: str | Path) -> "Workspace":
        return cls(Path(path).expanduser().resolve())

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def training_csv(self) -> Path:
        return self.root / "train" / "base" / "training_set.csv"

    @property
    def validation_csv(self) -> Path:
        return self.root / "train" / "base" / "validation_set.csv"

    @property
    def kpi_csv(self) -> Path:
        return self.root / "kpi" / "testing_set.csv"

    @property
    def baseline_spec(self) -> Path:
        return self.root / "specs" / "baseline_spec.yaml"

    @property
    def automl_spec(self) -> Path:
        return self.root / "specs" / "baseline_spec_automl.yaml"

    @property
    def sdg_pool(self) -> Path:
        return self.root / "augmentation" / "anomalygen"

    @property
    def mining_pool_csv(self) -> Path:
        return self.root / "augmentation" / "mining_pool" / "mining_pool.csv"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def required_inputs(self) -> dict[str, Path]:
        return {
            "images": self.images,
            "training_csv": self.training_csv,
            "validation_csv": self.validation_csv,
            "kpi_csv": self.kpi_csv,
            "baseline_spec": self.baseline_spec,
        }


class Results:
    """One run's results folder (RESULTS_DIR)."""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def at(cls, path: str | Path) -> "Results":
        return cls(Path(path).expanduser().resolve())

    @property
    def state(self) -> Path:
        return self.root / "deft_state.json"

    @property
    def log(self) -> Path:
        return self.root / "loop_log.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / ".deft_state.lock"

    @property
    def run_lock(self) -> Path:
        """flock target held for a writer's lifetime (one run per results folder)."""
        return self.root / ".run.lock"

    @property
    def run_owner(self) -> Path:
        """Who holds run_lock (host, pid, start time, since): for the refusal message and stale takeover."""
        return self.root / ".run_owner.json"

    @property
    def pipeline_state(self) -> Path:
        return self.root / "pipeline_state.json"

    @property
    def best_model(self) -> Path:
        return self.root / "best_model.json"

    @property
    def inference_spec(self) -> Path:
        return self.root / "best_model_inference_spec.yaml"

    @property
    def report(self) -> Path:
        return self.root / "DEFT_Loop_Report.html"

    @property
    def mining_history(self) -> Path:
        return self.root / "mining_history.json"

    @property
    def spot_check_verdicts(self) -> Path:
        """The agent's spot-check verdicts per sample (analysis/spot_check.py)."""
        return self.root / "spot_check_verdicts.json"

    def automl(self, phase: str) -> Path:
        return self.root / "automl" / phase

    def holdout(self, label: str) -> Path:
        """Where the deliverable ``label`` scores the sealed holdout set (finalize; nothing else reads it)."""
        return self.root / "holdout" / label

    def iteration(self, label: str) -> Path:
        return self.root / label

    def stage_dir(self, label: str, stage: str) -> Path:
        """``<R>/<label>/<dir>`` where dir is the stage's folder (train, inference, rca, ...)."""
        return self.root / label / STAGE_DIRS.get(stage, stage)

    def combined_csv(self, n: int) -> Path:
        return self.root / f"iter{n}" / "dataset" / f"train_combined_iter{n}.csv"

    def provenance_csv(self, n: int) -> Path:
        return self.root / f"iter{n}" / "dataset" / f"train_combined_iter{n}_provenance.csv"


STAGE_DIRS = {
    "train": "train",
    "evaluate": "inference",
    "rca": "rca",
    "routing": "routing",
    "sdg": "sdg",
    "mining": "mining",
    "assemble": "dataset",
}


def run_of_study(study_dir: str | Path) -> Path | None:
    """The results folder an AutoML study folder ``<R>/automl/<phase>`` belongs to, else None.

    R counts as a run folder when it already holds a run's log or sits in a workspace's results/.
    """
    p = Path(study_dir).expanduser().resolve()
    if p.parent.name != "automl":
        return None
    R = Results(p.parent.parent)
    return R.root if R.log.exists() or R.pipeline_state.exists() or R.root.parent.name == "results" else None


def iteration_number(label: str) -> int:
    """baseline -> 0, iterN -> N; final_automl sorts after every DEFT iteration."""
    if label == "baseline":
        return 0
    if label == "final_automl":
        return 10**9
    if label.startswith("iter") and label[4:].isdigit():
        return int(label[4:])
    raise ValueError(f"not an iteration label: {label!r}")


def iteration_label(n: int) -> str:
    return "baseline" if n == 0 else f"iter{n}"


def comes_before(label: str, other: str) -> bool:
    """True if iteration ``label`` runs before ``other`` (ledgers skip only earlier iterations' rows, so
    rerunning an iteration after later ones finds what it found the first time)."""
    try:
        return iteration_number(label) < iteration_number(other)
    except ValueError:
        return label != other
