"""RCA_Report.md: written from metrics.json, with a computed verdict; checked before the agent commits it.

Two modes. Headless (the default, and what run_pipeline.py runs): every section is computed,
including the verdict (what pins the threshold, what fixing it buys, what routing will do) and the
recommended actions; no ``TODO(agent)`` anywhere. Agent review (``--agent-review``, what
next_stage.py prints for an agent driving the loop): the same facts plus ``TODO(agent)``
placeholders for what only a look at the images can judge (the spot-check verdicts, a judgement
paragraph, the actions), which ``--check-report`` refuses until filled. Section numbers are part of
the format (report/sources.py reads 1, 5 and 8). No pandas import: --check-report stays fast.
"""
from __future__ import annotations

import re
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Any, Sequence

from tao_aoi import defaults

VERDICTS = ("mislabeled", "edge case", "data quality", "systematic")
TODO = "TODO(agent)"
MODES = ("headless", "agent")
SPOT_SECTION = "## 5. Visual spot check"


def fmt(x: float) -> str:
    return f"{x:.6g}"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def breakdown_text(kept_labels: Sequence[str], kept_wrong: Sequence[bool], threshold: float, k: int,
                   n_lights: int) -> str:
    """weak_samples_breakdown.txt from the kept samples' labels and misclassified flags."""
    total = len(kept_labels)
    per: dict[str, list[int]] = {}
    for lbl, wrong in zip(kept_labels, kept_wrong):
        c = per.setdefault(str(lbl), [0, 0])
        c[0] += 1
        c[1] += bool(wrong)
    lines = [f"Weak samples kept: {total} sample(s) x {n_lights} light(s) = {total * n_lights} row(s) in "
             f"kpi_gaps.parquet (top {k} per label, NVIDIA's vcn_aoi threshold {threshold!r})",
             "misclassified = on the wrong side of the threshold; marginal = correct but closest to it", "",
             f"{'label':<24} {'kept':>7} {'share':>7} {'misclassified':>14} {'marginal':>9}"]
    for lbl, (size, wrong_n) in sorted(per.items()):
        lines.append(f"{lbl:<24} {size:>7} {100 * size / total:>6.1f}% {wrong_n:>14} {size - wrong_n:>9}")
    return "\n".join(lines) + "\n"


def _pct_of(ratio: float) -> str:
    """A recall kept as a ratio (metrics.json), shown in percent like every recall option takes it."""
    return f"{100 * ratio:.6g}%"


def _op_text(m: dict[str, Any]) -> str:
    op = m.get("operating_point") or {"name": "recall_pct", "target": 100 * m["min_recall"]}
    what = {"recall_pct": "recall", "far_pct": "FAR"}.get(op["name"], op["name"])
    contract = f" of {op['kpi_target']!r}" if op.get("kpi_target") else ""
    return f"**{m['threshold']!r}**, the contract's operating point{contract} ({what} {op['target']:g}%)"


def threshold_lines(m: dict[str, Any]) -> list[str]:
    """Which threshold is which: the operating one (the KPI's), NVIDIA's (the weak set), the one that ships."""
    out = [f"- Operating threshold {_op_text(m)} (predicted defect iff siamese_score > threshold): precision "
           f"{_pct_of(m['precision'])}, recall {_pct_of(m['recall'])}, F1 {fmt(m['f1'])}, FAR {_pct_of(m['far'])}."]
    nv = m.get("nvidia")
    if nv is not None:
        same = nv["confusion_matrix"] == m["confusion_matrix"]
        out.append(f"- NVIDIA's vcn_aoi threshold **{m['nvidia_threshold']!r}** (best F1 at recall >= "
                   f"{_pct_of(m['min_recall'])}; `threshold.txt`) ranks the weak samples below: "
                   + ("it flags the same rows." if same else
                      f"it flags other rows (precision {_pct_of(nv['precision'])}, recall {_pct_of(nv['recall'])}, "
                      f"FAR {_pct_of(nv['far'])})."))
    dep = m.get("deployment")
    if dep:
        mg = dep["margin"]
        out.append(f"- Neither ships as is: if this model is the deliverable, `best_model.json` `deployment` ships "
                   f"**{dep['threshold']!r}** ({dep['placed']} of the gap the operating threshold sits in; margin "
                   f"{_num(mg['to_defect'])} to the nearest defect, {_num(mg['to_pass'])} to the nearest PASS).")
    return out


def _num(x: Any) -> str:
    return "none" if x is None else fmt(x)


def unreachable_text(min_recall: float, best_recall: float, fixed: float | None, csv_path: str) -> str:
    how = (f"At the fixed threshold {fixed!r} the recall is {_pct_of(best_recall)}."
           if fixed is not None else f"The best recall any threshold reaches is {_pct_of(best_recall)}.")
    return (f"KPI UNREACHABLE\nrecall target (min_recall): {_pct_of(min_recall)}\nbest reachable recall: "
            f"{_pct_of(best_recall)}\ninference: {csv_path}\n\n{how} No routing or mining can start from this "
            f"analysis: lower the recall target, drop the fixed threshold, or retrain / relabel and evaluate again.\n")


# --------------------------------------------------------------------------- the computed verdict


def _sample(s: dict[str, Any]) -> str:
    return f"{s['label']} `{s['input_path']}/{s['object_name']}` (score {fmt(s['siamese_score'])})"


def _pinning_families(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    fams = m.get("limiting_families") or {}
    return sorted(((k, v) for k, v in fams.items() if v["pinned_false_alarms"] > 0),
                  key=lambda kv: (-kv[1]["pinned_false_alarms"], kv[0]))


def verdict_lines(m: dict[str, Any]) -> list[str]:
    """What limits the KPI, from metrics.json's limiting entries: one paragraph, every number computed."""
    lim, samples = m["limiting"], m["limiting_samples"]
    at = f"recall {100 * lim['recall_target']:g}%"
    if lim["defects_needed"] == 0 or lim["false_alarms"] == 0:
        return [f"At {at} no PASS part scores at or above the defects the target needs (FAR 0%): nothing pins "
                f"the threshold. The weakest samples below are the closest calls."]
    first = samples[0]
    out = [f"At {at} the operating threshold sits just below {_sample(first)}, the lowest-scored defect the "
           f"target still needs: {lim['false_alarms']} of {m['n_pass']} PASS parts score at or above it "
           f"(FAR {pct(lim['far'])})."]
    if first["pinned_false_alarms"] > 0:
        out.append(f"Fixing that sample alone frees {first['pinned_false_alarms']} of them: FAR {pct(first['far_if_fixed'])}.")
    else:
        out.append("It is tied with the next defect up, so fixing it alone frees nothing; the tied samples pin "
                   "the threshold together.")
    if len(samples) > 1:
        last = samples[-1]
        out.append(f"Fixing the {len(samples)} listed limiting samples (section 9) gives FAR {pct(last['far_if_fixed'])}"
                   + (" (no false alarm left)." if last["false_alarms_if_fixed"] == 0 else "."))
    fams = _pinning_families(m)
    if fams:
        out.append("False alarms the listed samples pin, by family: "
                   + ", ".join(f"{k} {v['pinned_false_alarms']:.4g} ({v['limiting_samples']} sample(s))" for k, v in fams)
                   + ".")
        helps = [(k, v) for k, v in sorted(m["limiting_families"].items()) if v["far_if_family_fixed"] < lim["far"]]
        out.append("Fixing every defect of one family alone lowers FAR only for "
                   + ", ".join(f"{k} (to {pct(v['far_if_family_fixed'])})" for k, v in helps) + "."
                   if helps else "No single family's fix lowers FAR: the low-scored defects are spread over families.")
    defect_misses = [v["misclassified"] for k, v in m["per_label"].items() if k in (m.get("limiting_families") or {})]
    if lim["recall_target"] >= 1.0 and not any(defect_misses):
        out.append("Every defect label shows 0 misclassified: at recall 100% that holds by construction; the cost "
                   "is the false alarms above, set by how low these defects score.")
    missing = [s for s in samples if not s["in_gaps"]]
    if missing:
        out.append(f"{len(missing)} listed sample(s) are not among the kept weak samples (top "
                   f"{m['top_k_per_label']} per label), so routing cannot prioritise them: raise --top-k-per-label.")
    out.append(routing_sentence(m))
    return [" ".join(out)]


def held_lines(m: dict[str, Any]) -> list[str]:
    """The verdict's first lines when at most ``defaults.FEW_PINNING`` samples hold the KPI: the headline,
    each sample with its picture and label-issue flag, the commands to relabel or drop it, and what then."""
    from tao_aoi.analysis import pinning

    held = m.get("held_by")
    if not held:
        return []
    kpi_csv = (m.get("inputs") or {}).get("kpi_csv")
    L = [f"**{held['headline']}.** DEFT gives {'it' if held['samples'] == 1 else 'them'} the limiting samples' "
         f"priority (targeted synthetic pairs, extra mining neighbours, a higher training weight); if "
         f"{'it is' if held['samples'] == 1 else 'they are'} mislabelled, no training fixes the figure:", ""]
    for s in m["limiting_samples"][:held["samples"]]:
        first, *cmds = pinning.sample_lines(s, kpi_csv, None)
        L.append(f"- {first}" + (f"<br>![{s['object_name']}]({s['image']})" if s.get("image") else ""))
        L += [f"  - {c.strip().split(': ', 1)[0]}: `{c.strip().split(': ', 1)[1]}`" for c in cmds]
    return L + ["", pinning.rerun_note(None) + ".", ""]


def routing_sentence(m: dict[str, Any]) -> str:
    """What routing will do for the limiting families (SDG priority only where the label is an SDG label)."""
    fams = [k for k, _ in _pinning_families(m)]
    if not fams:
        return "Routing splits the new data by weak counts as usual (no family pins a false alarm)."
    sdg = [k for k in fams if k in defaults.SDG_LABELS]
    rest = [k for k in fams if k not in defaults.SDG_LABELS]
    parts = [f"{defaults.LIMITING_SHARE:.0%} of the SDG rows go to {', '.join(sdg)}, split by the false alarms they "
             f"pin (where the SDG pool has them)"] if sdg else []
    if rest:
        one = len(rest) == 1
        parts.append(f"{', '.join(rest)} {'is not an SDG label' if one else 'are not SDG labels'} (default "
                     f"--sdg-labels), so mining is where {'it gets' if one else 'they get'} more data")
    return (f"Routing gives {', '.join(fams)} priority: " + "; ".join(parts) + ("; " if parts else "")
            + "the listed samples get extra mining neighbours, on top of the usual split by weak counts.")


def _actions(m: dict[str, Any], agent: bool) -> list[str]:
    issues = m["label_issues"]
    lim, samples = m["limiting"], m["limiting_samples"]
    fams = _pinning_families(m)
    todo = (lambda text: f" {TODO} ({text})") if agent else (lambda text: "")
    relabel = (f"{issues['flagged']} sample(s) look mislabelled (section 7): for a person to confirm; nothing is "
               f"relabelled automatically." if issues["flagged"] else "no sample looks mislabelled from its score.")
    if samples:
        thr = (f"the threshold is pinned by {len(samples)} listed sample(s); fixed, FAR goes from {pct(lim['far'])} to "
               f"{pct(samples[-1]['far_if_fixed'])}. Fine-tune with the routed data and re-evaluate.")
    else:
        thr = "nothing pins it at this recall target; the KPI is limited elsewhere (see sections 3-4)."
    if fams:
        total = sum(v["pinned_false_alarms"] for _, v in fams)
        top, v = fams[0]
        share = v["pinned_false_alarms"] / total
        systematic = (f"{top} holds {share:.0%} of the pinned false alarms" + (" (a family-wide blind spot is likely)"
                      if share >= 0.5 and v["limiting_samples"] > 1 else "") + ".")
    else:
        systematic = "no family pins a false alarm."
    return [
        f"- Relabel: {relabel}" + todo("each `mislabeled` sample as `input_path/object_name`, or 'none'"),
        f"- Augment: `kpi_gaps.parquet` ({m['n_kept_samples']} samples x {len(m['lights'])} lights = "
        f"{m['n_gap_rows']} rows) goes to routing (`route_samples.py`). {routing_sentence(m)}",
        f"- Threshold: {thr}" + todo("retrain and re-evaluate / accept / revisit the recall target"),
        f"- Systematic failures: {systematic}" + todo("a light, a component family or a board that fails together, or 'none'"),
    ]


def _limiting_section(m: dict[str, Any]) -> list[str]:
    lim = m["limiting"]
    L = ["## 9. What pins the threshold (limiting samples)", "",
         f"At recall {100 * lim['recall_target']:g}% the target needs {lim['defects_needed']} of {m['n_defect']} defects; "
         f"the threshold sits just below the lowest-scored of them. Each row: fixing that sample (the model scores it "
         f"above every other row) together with the rows above it; `pinned` = PASS parts that stop being false "
         f"alarms by that fix.", ""]
    if m["limiting_samples"]:
        L += table(["#", "label", "object_name", "input_path", "siamese_score", "pinned", "false alarms if fixed",
                    "FAR if fixed", "in kpi_gaps"],
                   [[s["rank"], s["label"], s["object_name"], s["input_path"], fmt(s["siamese_score"]),
                     s["pinned_false_alarms"], s["false_alarms_if_fixed"], pct(s["far_if_fixed"]),
                     "yes" if s["in_gaps"] else "no"] for s in m["limiting_samples"]])
        L += ["", *table(["family", "defects", "limiting samples", "pinned false alarms", "FAR if every one fixed"],
                         [[k, v["defects"], v["limiting_samples"], f"{v['pinned_false_alarms']:.4g}",
                           pct(v["far_if_family_fixed"])] for k, v in sorted(m["limiting_families"].items())])]
    else:
        L.append("None: no PASS part scores at or above the defects the target needs.")
    return L + [""]


# --------------------------------------------------------------------------- the whole report


REUSED = " (reused from {})"  # the why cell of a verdict an earlier review gave (spot_check.reuse)


def review_cells(s: dict[str, Any]) -> list[str]:
    """The verdict and why cells of one sheet: reused from an earlier review, or for the agent to fill."""
    if s.get("reused_from"):
        return [s["verdict"], s["why"] + REUSED.format(s["reused_from"])]
    return [TODO, TODO]


def reuse_lines(spots: Sequence[dict[str, Any]]) -> list[str]:
    """Which verdicts came from earlier reviews and which sheets are left to look at."""
    reused = [(i + 1, s["reused_from"]) for i, s in enumerate(spots) if s.get("reused_from")]
    if not reused:
        return []
    by: dict[str, list[str]] = {}
    for n, src in reused:
        by.setdefault(src, []).append(f"#{n}")
    left = [f"#{i + 1}" for i, s in enumerate(spots) if not s.get("reused_from")]
    return ["", f"{len(reused)} of {len(spots)} verdicts reused from earlier reviews of the same sample and label ("
            + "; ".join(f"{', '.join(ns)} from {src}" for src, ns in by.items()) + "): change one only if the sheet "
            "says otherwise. " + (f"Look at the other {len(left)}: {', '.join(left)}." if left else
                                  "No sheet is new: fill the judgement and the actions.")]


def report_text(m: dict[str, Any], kept: Sequence[dict[str, Any]], spots: list[dict[str, Any]], breakdown: str,
                issues: Sequence[dict[str, Any]], *, mode: str = "headless", rows_per_label: int = 10) -> str:
    """RCA_Report.md; ``kept``: the kept samples grouped by label, weakest first; ``issues``: those flagged as
    possible label errors (each a dict with label, object_name, input_path, siamese_score, ...)."""
    if mode not in MODES:
        raise ValueError(f"report mode {mode!r} is not one of {MODES}")
    agent = mode == "agent"
    cm = m["confusion_matrix"]
    worst = sorted(((v["misclassified"] / v["total"], lbl) for lbl, v in m["per_label"].items()), reverse=True)[:3]
    head = (["> Placeholders marked TODO(agent) are for the agent: replace each after looking at the thumbnails.",
             "> The numbers come from metrics.json; leave them as they are."] if agent else
            ["> Computed from metrics.json (headless: no visual review). `gap_analysis.py --agent-review` adds "
             "the spot-check verdicts for an agent to fill."])
    L = [
        "# RCA report", "", *head, "",
        "## 1. Verdict", "",
        *held_lines(m),
        *threshold_lines(m),
        f"- {m['n_rows']} scored samples ({m['n_pass']} PASS, {m['n_defect']} defect); {m['n_kept_samples']} weak "
        f"samples kept (top {m['top_k_per_label']} per label) = {m['n_gap_rows']} rows x light in `kpi_gaps.parquet`.",
        "- Labels with the highest misclassified share: "
        + ", ".join(f"{lbl} {100 * s:.1f}%" for s, lbl in worst) + ".", "",
        *verdict_lines(m), "",
    ]
    if agent:
        L += [f"{TODO}: two or three sentences - is the KPI within reach, which labels drive the gap, and what the "
              f"spot check suggests (mostly label noise, data quality, or a systematic blind spot).", ""]
    L += [
        "## 2. Threshold selection", "",
        f"Operating threshold: {_op_text(m)}, the rule analyze_kpi.py applies, so this report, metric_result.json "
        f"and best_model.json name the same value for the same scores. The confusion matrix below is at it.", "",
        f"NVIDIA's threshold (vcn_aoi, for the weak set and `threshold.txt`): candidates are each unique score plus "
        f"one just below the lowest ({m['n_candidates']} in all); {m['n_feasible']} keep recall >= "
        f"{_pct_of(m['min_recall'])}. Among those: best F1, then precision, then the higher threshold."
        + (" A fixed threshold was given instead of the search." if m["fixed_threshold"] else ""),
        "",
        *table(["", "predicted defect", "predicted PASS"],
               [["actual defect", f"TP {cm['tp']}", f"FN {cm['fn']}"],
                ["actual PASS", f"FP {cm['fp']}", f"TN {cm['tn']}"]]), "",
        "## 3. Weakness by label (all scored samples)", "",
        *table(["label", "total", "mean weakness", "median weakness", "max weakness", "misclassified"],
               [[lbl, v["total"], fmt(v["mean_weakness"]), fmt(v["median_weakness"]), fmt(v["max_weakness"]),
                 v["misclassified"]] for lbl, v in m["per_label"].items()]), "",
        f"## 4. Weakest samples per label (first {rows_per_label} of each; all of them in kpi_gaps.parquet)", "",
    ]
    shown = [r for r in kept if r["weak_rank"] <= rows_per_label]
    L += table(["label", "object_name", "input_path", "siamese_score", "weakness", "misclassified"],
               [[r["label"], r["object_name"], r["input_path"], fmt(r["siamese_score"]), fmt(r["weakness"]),
                 "yes" if r["misclassified"] else "no"] for r in shown])
    L += ["", SPOT_SECTION, "",
          "Each image shows every light: test on the left, golden on the right."
          + (" Verdict: exactly one of " + ", ".join(f"`{v}`" for v in VERDICTS) + "." if agent else
             " Not reviewed: a headless run has no visual check."), ""]
    cols = ["#", "label", "object_name", "siamese_score", "weakness", "image"] + (["verdict", "why"] if agent else [])
    L += table(cols, [[i + 1, s["label"], s["object_name"], fmt(s["siamese_score"]), fmt(s["weakness"]),
                       f"![{s['object_name']}](rca_images/{Path(s['file']).name})"
                       + (" (image missing)" if s["missing_files"] else "")] + (review_cells(s) if agent else [])
                      for i, s in enumerate(spots)])
    if agent:
        L += reuse_lines(spots)
    L += ["", "## 6. Kept samples per label", "", "```", breakdown.rstrip("\n"), "```", "",
          "## 7. Possible label errors (for the user, never auto-relabelled)", "",
          f"{m['label_issues']['flagged']} scored samples look mislabelled by {m['label_issues']['method']}; "
          f"{m['label_issues']['flagged_kept']} of them are among the kept weak samples "
          "(column `label_issue` in kpi_gaps.parquet). From scores alone a wrong label and a real blind spot look "
          "alike: check them in the spot check before believing either.", ""]
    if len(issues):
        L += table(["label", "object_name", "input_path", "siamese_score", "label quality"],
                   [[r["label"], r["object_name"], r["input_path"], fmt(r["siamese_score"]), fmt(r["label_quality"])]
                    for r in issues])
        L.append("")
    L += ["## 8. Recommended actions", "", *_actions(m, agent), "", *_limiting_section(m)]
    return "\n".join(L)


def spot_rows(text: str) -> dict[int, tuple[str, str]]:
    """Sheet number -> (verdict cell, why cell) of the spot-check table (agent mode), as written."""
    section = text.split(SPOT_SECTION, 1)[-1].split("\n## ", 1)[0] if "## 5." in text else ""
    out = {}
    for line in section.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) >= 8 and cells[0].isdigit():
            out[int(cells[0])] = (cells[6], " | ".join(cells[7:]))  # a why with an unescaped | keeps its text
    return out


def report_problems(text: str) -> list[str]:
    """What is still unfilled in an RCA_Report.md: TODO markers and spot-check verdicts not in VERDICTS."""
    problems = [f"line {i}: {line.strip()[:80]}" for i, line in enumerate(text.splitlines(), 1)
                if TODO in line and not line.startswith(">")]
    for n, (verdict, _) in spot_rows(text).items():
        if verdict.lower().strip("`* ") not in VERDICTS:
            problems.append(f"spot check #{n}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return problems
