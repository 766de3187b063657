"""Root-cause the weakest KPI samples of an inference.csv (native; no container, no GPU).

Writes into --results-dir: kpi_gaps.parquet (top-K weakest per label, one row per light),
threshold.txt, metrics.json (with the limiting samples: the defects that pin the threshold and
the FAR fixing them would give), weak_samples_breakdown.txt, rca_images/ (10 spot-check sheets:
every light, test beside golden, 128x128) and RCA_Report.md with a computed verdict. With
--agent-review the report also carries TODO(agent) placeholders (spot-check verdicts, judgement)
for an agent to fill; --check-report REPORT exits 2 while any is open. --verdicts LEDGER (the
run's spot-check verdicts) fills in the verdict of each sheet whose sample an earlier review judged,
so only new samples are asked about; --check-report records a complete report's verdicts in it.
If no threshold keeps recall >= --min-recall, writes only unreachable_kpi.txt and exits 2 (stop
the iteration).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli, defaults, fmt
from tao_aoi.analysis import rca_report
from tao_aoi.errors import UserError
from tao_aoi.state import read_only


def check_report(path: str, verdicts: str | None) -> int:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--check-report {p} does not exist; run gap_analysis.py first")
    problems = rca_report.report_problems(p.read_text(encoding="utf-8"))
    if problems:
        raise UserError(f"{p} is not finished ({len(problems)} open item(s)); first: {problems[0]}")
    if verdicts:
        from tao_aoi.analysis import spot_check

        r = spot_check.record(p, verdicts)
        print(f"{p}: complete; {r['sheets']} spot-check verdicts recorded in {verdicts} ({r['new']} samples new, "
              f"{r['total']} samples reviewed in all)")
    else:
        print(f"{p}: complete")
    return 0


@cli.command("gap_analysis.py", __doc__, next_step="read the verdict in RCA_Report.md (with --agent-review: fill its "
             "TODO(agent) items and check them with python3 scripts/gap_analysis.py --check-report "
             "<results-dir>/RCA_Report.md), then commit the rca stage (next_stage.py prints the line)")
@click.option("--inference-csv", help="columns input_path, object_name, label, siamese_score [, golden_path]")
@cli.option("--train-spec")
@cli.option("--images-root")
@cli.option("--results-dir", required=False, help="output folder (e.g. <R>/<iter>/rca)")
@cli.option("--min-recall")
@cli.option("--top-k-per-label")
@click.option("--threshold", type=float, default=None, help="use this threshold instead of searching (e.g. the deployed one)")
@cli.option("--pass-label")
@cli.option("--kpi-target", help="the run's contract: its operating point gives metrics.json threshold (default: "
            "recall --min-recall)")
@click.option("--agent-review", is_flag=True,
              help="add TODO(agent) placeholders for an agent's visual review (what next_stage.py prints)")
@click.option("--limiting-samples", type=click.IntRange(min=0), default=defaults.LIMITING_SAMPLES,
              help="defects that pin the threshold to list in metrics.json and the report")
@click.option("--kpi-csv", help="the KPI set CSV the inference scored: named in the commands to relabel or drop a "
                               "sample that holds the KPI")
@click.option("--check-report", metavar="REPORT", help="only check that an RCA_Report.md is filled in")
@click.option("--verdicts", metavar="LEDGER",
              help="the run's spot-check verdicts (<R>/spot_check_verdicts.json): with --agent-review, sheets of "
                   "samples reviewed before keep their verdict; with --check-report, the report's verdicts are "
                   "recorded in it")
@cli.option("--json", help="print metrics.json on stdout")
def command(args) -> int:
    if args.check_report:
        return check_report(args.check_report, args.verdicts)
    missing = [f for f in ("inference_csv", "train_spec", "images_root", "results_dir") if not getattr(args, f)]
    if missing:
        raise UserError(f"--{missing[0].replace('_', '-')} is required (see --help)")
    read_only.refuse_committed(args.results_dir, "--results-dir", "gap_analysis.py")
    from tao_aoi.analysis import gap_analysis  # numpy/pandas: not needed for --help or --check-report

    m = gap_analysis.run(args.inference_csv, args.train_spec, args.images_root, args.results_dir,
                         min_recall=cli.recall_ratio(args.min_recall), top_k=args.top_k_per_label,
                         fixed_threshold=args.threshold, pass_label=args.pass_label,
                         report_mode="agent" if args.agent_review else "headless",
                         limiting_limit=args.limiting_samples, verdicts=args.verdicts, kpi_target=args.kpi_target,
                         kpi_csv=args.kpi_csv)
    if args.json:
        cli.emit_json(m)
        return 0
    cm = m["confusion_matrix"]
    print(f"operating threshold {fmt.exact(m['threshold'])} (the contract's, as analyze_kpi.py): precision "
          f"{fmt.ratio_pct(m['precision'])} recall {fmt.ratio_pct(m['recall'])} F1 {fmt.num(m['f1'])} "
          f"(tp={cm['tp']} fp={cm['fp']} tn={cm['tn']} fn={cm['fn']}); NVIDIA's vcn_aoi threshold "
          f"{fmt.exact(m['nvidia_threshold'])} (threshold.txt, the weak set); ship {fmt.exact(m['deployment']['threshold'])}")
    print(f"kept {m['n_kept_samples']} weak samples x {len(m['lights'])} lights = {m['n_gap_rows']} rows in "
          f"{Path(args.results_dir) / 'kpi_gaps.parquet'}; {m['label_issues']['flagged_kept']} samples flagged as "
          f"possible label errors")
    if m["held_by"]:
        print(f"{m['held_by']['headline']} (RCA_Report.md section 1: the samples, their pictures, the commands)")
    if m["limiting_samples"]:
        first = m["limiting_samples"][0]
        print(f"pinned by {first['label']} {first['input_path']}/{first['object_name']}: FAR "
              f"{fmt.ratio_pct(m['limiting']['far'])} -> {fmt.ratio_pct(first['far_if_fixed'])} if fixed "
              f"({len(m['limiting_samples'])} limiting samples listed)")
    missing_imgs = sum(bool(s["missing_files"]) for s in m["rca_images"])
    report = Path(args.results_dir) / "RCA_Report.md"
    reused = sum(bool(s.get("reused_from")) for s in m["rca_images"])
    print(f"spot check: {len(m['rca_images'])} sheets in {Path(args.results_dir) / gap_analysis.IMAGES_DIR}"
          + (f" ({missing_imgs} with missing images)" if missing_imgs else "")
          + (f", {reused} verdicts reused from earlier reviews" if reused else "")
          + (f"; fill the TODO(agent) items of {report}" if args.agent_review else f"; verdict in {report}"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
