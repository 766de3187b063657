"""The DEFT run's configuration (``config`` in deft_state.json): the workspace's paths, each of which
may be overridden, and the loop's knobs, checked before anything is written.

``init_deft_state.py``, the headless runner and ``seed_baseline.py`` all build it here, so a run
created by any of them has the same config for the same options. Stays light (no pandas): the
state scripts import it.
"""
from __future__ import annotations

from pathlib import Path

from tao_aoi import defaults
from tao_aoi.errors import UserError
from tao_aoi.layout import Workspace

# config key -> (the flag that overrides it, its Workspace attribute, that path in the workspace)
PATHS = {
    "train_spec": ("--train-spec", "baseline_spec", "specs/baseline_spec.yaml"),
    "training_csv": ("--training-csv", "training_csv", "train/base/training_set.csv"),
    "validation_csv": ("--validation-csv", "validation_csv", "train/base/validation_set.csv"),
    "kpi_csv": ("--kpi-csv", "kpi_csv", "kpi/testing_set.csv"),
    "images_root": ("--images-root", "images", "images/"),
    "sdg_pool": ("--sdg-pool", "sdg_pool", "augmentation/anomalygen/"),
    "mining_pool_csv": ("--mining-pool", "mining_pool_csv", "augmentation/mining_pool/mining_pool.csv"),
}


def similarity_args(value: float | None) -> list[str]:
    """``--min-similarity`` for a given floor; none for the embedder's own."""
    return [] if value is None else ["--min-similarity", str(value)]


def deft_config(*, workspace: str | Path, max_iterations: int, backend: str = "local",
                num_sdg: int = defaults.NUM_SDG, top_k_per_label: int = defaults.TOP_K_PER_LABEL,
                top_k_per_target: int = defaults.TOP_K_PER_TARGET, min_similarity: float | None = None,
                min_recall_pct: float = defaults.MIN_RECALL_PCT, sdg_labels: str = ",".join(defaults.SDG_LABELS),
                overrides: dict[str, str | None] | None = None, holdout_csv: str | None = None) -> dict:
    """The config dict; ``overrides`` maps a key of ``PATHS`` to a path given instead of the workspace's;
    ``holdout_csv``: the sealed holdout set (checked here: both classes, no sample shared with any set the run
    trains or decides on)."""
    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise UserError(f"--workspace {ws.root} is not a directory")
    if max_iterations < 1:
        raise UserError(f"--max-iterations must be >= 1, got {max_iterations}")
    for flag, v in (("--num-sdg", num_sdg), ("--top-k-per-label", top_k_per_label - 1),
                    ("--top-k-per-target", top_k_per_target - 1)):
        if v < 0:
            raise UserError(f"{flag} is out of range")
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise UserError(f"--min-similarity must be a cosine in [-1, 1], got {min_similarity}")
    given = overrides or {}

    def pick(key: str) -> str:
        override = given.get(key)
        return str(Path(override).expanduser().resolve() if override else getattr(ws, PATHS[key][1]))

    cfg = {
        "workspace": str(ws.root),
        "backend": backend,
        "max_iterations": max_iterations,
        "images_root": pick("images_root"),
        "train_spec": pick("train_spec"),
        "training_csv": pick("training_csv"),
        "validation_csv": pick("validation_csv"),
        "kpi_csv": pick("kpi_csv"),
        "sdg_pool": pick("sdg_pool"),
        "mining_pool_csv": pick("mining_pool_csv"),
        "num_sdg": num_sdg,
        "top_k_per_label": top_k_per_label,
        "top_k_per_target": top_k_per_target,
        "min_similarity": min_similarity,  # None: mining uses the embedder's calibrated floor
        "min_recall": round(min_recall_pct / 100.0, 10),  # the ratio deft_state.json keeps (as cli.recall_ratio)
        "sdg_labels": [s.strip().upper() for s in sdg_labels.split(",") if s.strip()],
        "holdout_csv": str(Path(holdout_csv).expanduser().resolve()) if holdout_csv else None,
    }
    for key in ("train_spec", "training_csv", "validation_csv", "kpi_csv"):
        if not Path(cfg[key]).is_file():
            raise UserError(f"{key} {cfg[key]} does not exist; check --workspace or pass --{key.replace('_', '-')}")
    if not Path(cfg["images_root"]).is_dir():
        raise UserError(f"images root {cfg['images_root']} is not a directory; pass --images-root")
    if cfg["holdout_csv"]:
        check_holdout(cfg)
    return cfg


def check_holdout(cfg: dict) -> None:
    """A holdout must be rows no decision of the run sees: refuse one sharing a sample (resolved input folder +
    object_name, data.leakage) with the training, validation or KPI set, or lacking PASS or defect rows."""
    from tao_aoi.data import changenet_csv, leakage  # pandas: only when a holdout is given

    path = cfg["holdout_csv"]
    if not Path(path).is_file():
        raise UserError(f"holdout CSV {path} does not exist; pass an existing ChangeNet CSV")
    df = changenet_csv.read(path, what="holdout CSV")
    positive = df["label"] != "PASS"
    if positive.all() or not positive.any():
        raise UserError(f"holdout CSV {path} has no {'PASS' if positive.all() else 'defect'} rows; FAR and recall need "
                        f"both")
    missing = leakage.unresolved(df, cfg["images_root"], path)
    if missing:
        line = int((df["input_path"] == missing[0]).to_numpy().argmax()) + 2
        raise UserError(f"holdout CSV {path} line {line}: input_path {missing[0]!r} is no folder under the run's image "
                        f"root {cfg['images_root']}, its parent or the CSV's folder ({len(missing)} such folder(s)); "
                        f"unresolved samples cannot be checked for leakage: fix the holdout's paths")
    against = [(cfg[k], changenet_csv.read(cfg[k], what=k.replace("_", " "))) for k in
               ("training_csv", "validation_csv", "kpi_csv")]
    leaks = leakage.find_leaks(df, path, against, cfg["images_root"])
    if len(leaks):
        first = leaks.iloc[0]
        raise UserError(f"holdout CSV {path} line {first['line']}: sample {first['key']} is also in {first['against']} "
                        f"({len(leaks)} such row(s)); a holdout must be rows no decision of the run sees: drop them "
                        f"from one of the two")
