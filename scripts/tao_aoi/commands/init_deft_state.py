"""Create a DEFT run: deft_state.json + loop_log.jsonl in the results folder.

Reads nothing but file existence (fast). Idempotent: rerunning with the same arguments resumes the
existing run. Options that only shape iterations not started yet (--num-sdg, --top-k-per-target,
--min-similarity, --max-iterations) may change on resume: the change is committed with the iteration
it applies from (shown in the report). Any other difference is refused (exit 2).
Paths default to the workspace layout (images/, train/base/, kpi/, specs/, augmentation/).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Sequence

import click

from tao_aoi import cli
from tao_aoi.pipeline import run_config
from tao_aoi.state import deft_state


def workspace_overrides(fn):
    """--train-spec, --training-csv, ...: each overrides one path of the workspace layout."""
    for flag, _, what in reversed(run_config.PATHS.values()):
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
@cli.option("--holdout-csv")
@workspace_overrides
@cli.option("--json", help="print the state as JSON")
def command(args) -> int:
    st, created = deft_state.init(args.results_dir, kpi_target=args.kpi_target, config=config_from_args(args))
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
    return run_config.deft_config(
        workspace=args.workspace, max_iterations=args.max_iterations, backend=args.backend, num_sdg=args.num_sdg,
        top_k_per_label=args.top_k_per_label, top_k_per_target=args.top_k_per_target,
        min_similarity=args.min_similarity, min_recall_pct=args.min_recall, sdg_labels=args.sdg_labels,
        holdout_csv=args.holdout_csv,
        overrides={key: getattr(args, flag[2:].replace("-", "_")) for key, (flag, _, _) in run_config.PATHS.items()})
