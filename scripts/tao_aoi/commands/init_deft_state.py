"""Create a DEFT run: deft_state.json + loop_log.jsonl in the results folder.

Reads nothing but file existence (fast). Idempotent: rerunning with the same arguments resumes the
existing run. Options that only shape iterations not started yet (--num-sdg, --top-k-per-target,
--min-similarity, --max-iterations) may change on resume: the change is committed with the iteration
it applies from (shown in the report). Any other difference is refused (exit 2).
Paths default to the workspace layout (images/, train/base/, kpi/, specs/, augmentation/).
"""
from __future__ import annotations

from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

import click

from tao_aoi import cli, state
from tao_aoi.errors import UserError
from tao_aoi.layout import Workspace

WORKSPACE_OVERRIDES = (("--train-spec", "specs/baseline_spec.yaml"), ("--training-csv", "train/base/training_set.csv"),
                       ("--validation-csv", "train/base/validation_set.csv"), ("--kpi-csv", "kpi/testing_set.csv"),
                       ("--images-root", "images/"), ("--sdg-pool", "augmentation/anomalygen/"),
                       ("--mining-pool", "augmentation/mining_pool/mining_pool.csv"))


def workspace_overrides(fn):
    """--train-spec, --training-csv, ...: each overrides one path of the workspace layout."""
    for flag, what in reversed(WORKSPACE_OVERRIDES):
        fn = click.option(flag, help=f"override <workspace>/{what}")(fn)
    return fn


@cli.command("init_deft_state.py", __doc__, next_step="python3 scripts/next_stage.py --results-dir R (prints the "
             "first stage and its exact commands)")
@cli.option("--results-dir", help="run folder, e.g. <ws>/results/run_YYYYMMDD_HHMMSS")
@cli.option("--workspace")
@cli.option("--max-iterations", required=True)
@cli.option("--kpi-target", required=True)
@cli.option("--backend")
@cli.deft_knobs
@cli.option("--top-k-per-label")
@cli.option("--min-recall")
@cli.option("--sdg-labels")
@workspace_overrides
@cli.option("--json", help="print the state as JSON")
def command(args) -> int:
    st, created = state.init(args.results_dir, kpi_target=args.kpi_target, config=config_from_args(args))
    if args.json:
        cli.emit_json(st)
    else:
        changes = st.get("config_changes") or []
        if created:
            verb = "initialised"
        elif changes and changes[-1]["seq"] == st["last_seq"]:
            verb = "resumed with options changed for the iterations not started yet (" + ", ".join(
                f"{k} {c['from']} -> {c['to']} (from {c['applies_from']})" for k, c in changes[-1]["changes"].items()) + ")"
        else:
            verb = "resumed (already initialised with these arguments)"
        print(f"{verb}: {args.results_dir} kpi={st['kpi_target']!r} max_iterations={st['config']['max_iterations']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)


def config_from_args(args) -> dict:
    ws = Workspace.at(args.workspace)
    if not ws.root.is_dir():
        raise UserError(f"--workspace {ws.root} is not a directory")
    if args.max_iterations < 1:
        raise UserError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    for flag, v in (("--num-sdg", args.num_sdg), ("--top-k-per-label", args.top_k_per_label - 1),
                    ("--top-k-per-target", args.top_k_per_target - 1)):
        if v < 0:
            raise UserError(f"{flag} is out of range")
    if not -1.0 <= args.min_similarity <= 1.0:
        raise UserError(f"--min-similarity must be a cosine in [-1, 1], got {args.min_similarity}")

    def pick(override: str | None, default: Path) -> str:
        return str(Path(override).expanduser().resolve() if override else default)

    cfg = {
        "workspace": str(ws.root),
        "backend": args.backend,
        "max_iterations": args.max_iterations,
        "images_root": pick(args.images_root, ws.images),
        "train_spec": pick(args.train_spec, ws.baseline_spec),
        "training_csv": pick(args.training_csv, ws.training_csv),
        "validation_csv": pick(args.validation_csv, ws.validation_csv),
        "kpi_csv": pick(args.kpi_csv, ws.kpi_csv),
        "sdg_pool": pick(args.sdg_pool, ws.sdg_pool),
        "mining_pool_csv": pick(args.mining_pool, ws.mining_pool_csv),
        "num_sdg": args.num_sdg,
        "top_k_per_label": args.top_k_per_label,
        "top_k_per_target": args.top_k_per_target,
        "min_similarity": args.min_similarity,
        "min_recall": cli.recall_ratio(args.min_recall),
        "sdg_labels": [s.strip().upper() for s in args.sdg_labels.split(",") if s.strip()],
    }
    for key in ("train_spec", "training_csv", "validation_csv", "kpi_csv"):
        if not Path(cfg[key]).is_file():
            raise UserError(f"{key} {cfg[key]} does not exist; check --workspace or pass --{key.replace('_', '-')}")
    if not Path(cfg["images_root"]).is_dir():
        raise UserError(f"images root {cfg['images_root']} is not a directory; pass --images-root")
    return cfg

