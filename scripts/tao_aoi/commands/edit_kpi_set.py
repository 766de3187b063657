"""Relabel or drop samples of the KPI set, by hand: a person's decision, never the loop's.

When a few samples hold the KPI (the RCA verdict, the report and the final line lead with them), a
look at their picture may show a wrong label (relabel it, usually --label PASS) or a sample that
does not belong in the KPI set (--drop). --sample names it as the CSV does: input_path/object_name
(what the RCA report prints). The CSV is rewritten atomically with every other row and column as it
was; the first edit keeps the original beside it (<name>.orig.csv) and every edit is appended to
<name>.edits.jsonl (when, which sample, the old and new label, --reason). Refused while a run of the
workspace is going. A run's evaluations and RCA are on the set it started with, so after an edit
rerun on the corrected set in a new --results-dir (the report and the final line print the line);
resuming an unfinished run on a changed KPI set is refused.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Sequence

import click

from tao_aoi import cli, labels
from tao_aoi.errors import UserError


@cli.command("edit_kpi_set.py", __doc__, next_step="rerun the pipeline on the corrected KPI set in a new "
             "--results-dir (the report and the final line print the exact run_pipeline.py line)")
@click.option("--kpi-csv", required=True, type=click.Path(path_type=Path), help="the KPI set CSV to edit")
@click.option("--sample", "samples", required=True, multiple=True, metavar="INPUT_PATH/OBJECT_NAME",
              help="the sample to change, as the RCA report names it (repeatable)")
@click.option("--label", help="its new label (e.g. PASS)")
@click.option("--drop", is_flag=True, help="remove it from the KPI set")
@click.option("--reason", default="", help="why, for the edit log")
@cli.option("--json", help="print what was changed as JSON")
def command(args) -> int:
    import pandas as pd

    from tao_aoi import atomic
    from tao_aoi.data import changenet_csv
    from tao_aoi.state import run_lock

    if bool(args.label) == bool(args.drop):
        raise UserError("pass exactly one of --label LABEL (relabel) or --drop (remove the sample)")
    new_label = labels.canonical_label(args.label) if args.label else None
    if new_label is not None and not labels.is_valid_canonical(new_label):
        raise UserError(f"--label {args.label!r} is not a label; e.g. --label PASS")
    csv = args.kpi_csv.expanduser().resolve()
    if not csv.is_file():
        raise UserError(f"--kpi-csv {csv} does not exist")
    results = csv.parent.parent / "results"  # <workspace>/kpi/testing_set.csv: that workspace's runs
    for run in sorted(results.iterdir()) if results.is_dir() else ():
        if run.is_dir():
            run_lock.refuse_if_running(run)
    df = changenet_csv.read(csv, what="KPI set", canonicalize=False)
    names = df["input_path"].astype(str).str.strip().str.rstrip("/") + "/" + df["object_name"].astype(str).str.strip()
    changes = []
    keep = pd.Series(True, index=df.index)
    for sample in args.samples:
        hit = (names == sample.strip().rstrip("/")).to_numpy()
        if not hit.any():
            raise UserError(f"--sample {sample!r}: no row of {csv} is that input_path/object_name; name it as the RCA "
                            f"report prints it")
        for i in hit.nonzero()[0]:
            changes.append({"sample": sample, "line": int(i) + 2, "label": str(df["label"].iat[i]),
                            "to": "dropped" if args.drop else new_label})
        if args.drop:
            keep &= ~hit
        else:
            df.loc[hit, "label"] = new_label
    edited = df[keep.to_numpy()]
    if edited.empty:
        raise UserError(f"dropping {', '.join(args.samples)} would leave {csv} empty")
    original = csv.with_name(f"{csv.stem}.orig{csv.suffix}")
    if not original.exists():
        shutil.copyfile(csv, original)
    changenet_csv.write(edited, csv)
    log = csv.with_name(f"{csv.stem}.edits.jsonl")
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    text = (log.read_text(encoding="utf-8") if log.is_file() else "") + "".join(
        json.dumps({"at": when, **c, "reason": args.reason}) + "\n" for c in changes)
    atomic.write_text(log, text)
    if args.json:
        cli.emit_json({"kpi_csv": str(csv), "original": str(original), "log": str(log), "changes": changes})
    else:
        for c in changes:
            print(f"{csv} line {c['line']}: {c['sample']} {c['label']} -> {c['to']}")
        print(f"original kept as {original}; edits logged in {log}; rerun on the corrected set in a new --results-dir")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.invoke(command, argv)
