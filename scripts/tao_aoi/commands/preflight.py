"""Pre-flight: every read-only check and the nine-section summary before the single approval.

Sections: workspace/host/platform/network; credentials (names only); container images
(PRESENT/MISSING, or not needed for local); data (rows per CSV and label, missing files, leakage);
Phase 1, Phase 2 and Phase 3 configuration; compute estimate (--dry-run times one training epoch);
the confirmation line. Hard blockers (missing inputs, leakage, empty pool, bad KPI text, no
--max-iterations) exit 2; blockers the run fixes itself after approval are listed apart.
Writes nothing.
"""
from __future__ import annotations

from typing import Sequence

import click

from tao_aoi import cli, preflight


@cli.command("preflight.py", __doc__, next_step="after the user approves: python3 scripts/run_pipeline.py "
             "--workspace W --max-iterations N --kpi-target T --yes (same options)")
@cli.option("--workspace")
@cli.option("--backend")
@cli.option("--max-iterations")
@cli.option("--kpi-target")
@cli.option("--trials")
@cli.option("--algorithm")
@cli.deft_knobs
@click.option("--dry-run", is_flag=True, help="time one training epoch for the compute estimate")
@cli.option("--json", help="print the report as JSON")
def command(args) -> int:
    dry = preflight.dry_run(args.workspace, args.backend) if args.dry_run else None
    report = preflight.run(args.workspace, args.backend, args.max_iterations, args.kpi_target, trials=args.trials,
                           algorithm=args.algorithm, num_sdg=args.num_sdg, top_k_per_target=args.top_k_per_target,
                           min_similarity=args.min_similarity, dry_run_sec=dry)
    if args.json:
        cli.emit_json(report)
    else:
        print(preflight.render(report))
    return 0 if report["ready"] else 2


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
