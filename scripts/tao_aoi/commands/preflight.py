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

from tao_aoi import cli, defaults, preflight


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("preflight.py", __doc__)
    p.add_argument("--workspace", required=True)
    p.add_argument("--backend", default="local", choices=defaults.BACKENDS)
    p.add_argument("--phases", default="all", choices=("all", "automl", "deft"),
                   help="the phases the run will include (as run_pipeline.py --phases)")
    p.add_argument("--max-iterations", type=int)
    p.add_argument("--kpi-target")
    p.add_argument("--trials", type=int, default=defaults.AUTOML_TRIALS)
    p.add_argument("--algorithm", default="bayesian")
    p.add_argument("--num-sdg", type=int, default=defaults.NUM_SDG)
    p.add_argument("--top-k-per-target", type=int, default=defaults.TOP_K_PER_TARGET)
    p.add_argument("--min-similarity", type=float, default=defaults.MIN_SIMILARITY)
    p.add_argument("--dry-run", action="store_true", help="time one training epoch for the compute estimate")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    dry = preflight.dry_run(args.workspace, args.backend) if args.dry_run else None
    report = preflight.run(args.workspace, args.backend, args.max_iterations, args.kpi_target, trials=args.trials,
                           algorithm=args.algorithm, num_sdg=args.num_sdg, top_k_per_target=args.top_k_per_target,
                           min_similarity=args.min_similarity, dry_run_sec=dry, phases=args.phases)
    if args.json:
        cli.emit_json(report)
    else:
        print(preflight.render(report))
    return 0 if report["ready"] else 2
