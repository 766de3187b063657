"""When a few samples hold the KPI: the headline that leads the RCA verdict, the report and the final
line ("FAR 30.9% is held by 1 sample; without it 0%"), and what a person needs to act on it.

FAR at recall 100% is set by the lowest-scored defect, so one to three samples often decide the
figure the deliverable is judged on. The first ``defaults.FEW_PINNING`` limiting samples
(``limiting.py``: fixing them in order is the best any that many fixes can do) *hold* the KPI when
fixing them leaves at most half of its false alarms; the headline names the fewest that do. Each
comes with its picture (test and golden per light), whether label-noise analysis flags it as a
possible label error, and the exact commands to relabel it as PASS or drop it from the KPI set
(``edit_kpi_set.py``) and to rerun on the corrected set. Nothing is ever relabelled or dropped
automatically: a wrong label and a real blind spot look alike from scores alone. Pure Python
(RCA_Report.md and the report import it; no pandas).
"""
from __future__ import annotations

import shlex

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Any, Mapping, Sequence

from tao_aoi import defaults, layout

IMAGES_DIR = "limiting_images"  # beside best_model.json: the deliverable's pinning samples


def held_by(samples: Sequence[Mapping[str, Any]], far: float, most: int = defaults.FEW_PINNING
            ) -> tuple[int, float] | None:
    """(j, FAR with the first j fixed) for the fewest j <= ``most`` listed limiting samples whose fix
    leaves at most half of the false alarms; None when nothing pins (FAR 0) or no such j exists."""
    if not far > 0:
        return None
    for j, s in enumerate(samples[:most], 1):
        if float(s["far_if_fixed"]) <= far / 2:
            return j, float(s["far_if_fixed"])
    return None


def pct(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


def headline(far: float, j: int, far_without: float) -> str:
    """The sentence every place leads with."""
    return (f"FAR {pct(far)} is held by {j} sample{'s' if j > 1 else ''}; without {'it' if j == 1 else 'them'} "
            f"{pct(far_without)}")


def sample_name(s: Mapping[str, Any]) -> str:
    """How a KPI sample is named on the command line: its CSV's input_path/object_name."""
    return f"{str(s['input_path']).rstrip('/')}/{s['object_name']}"


def script(name: str, *args: str) -> str:
    return " ".join(["python3", shlex.quote(str(layout.SCRIPTS_DIR / name)), *(shlex.quote(str(a)) for a in args)])


def fix_commands(s: Mapping[str, Any], kpi_csv: str | None) -> dict[str, str]:
    """The exact commands to relabel the sample as PASS or drop it from the KPI set."""
    csv = kpi_csv or "<the KPI set CSV>"
    return {"relabel": script("edit_kpi_set.py", "--kpi-csv", csv, "--sample", sample_name(s), "--label", "PASS"),
            "drop": script("edit_kpi_set.py", "--kpi-csv", csv, "--sample", sample_name(s), "--drop")}


def entry(limiting: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """best_model.json / metrics.json ``held_by``: the headline and the samples behind it, or None."""
    got = held_by(samples, float(limiting.get("far") or 0.0))
    if got is None:
        return None
    j, without = got
    return {"samples": j, "far": float(limiting["far"]), "far_without": without,
            "headline": headline(float(limiting["far"]), j, without)}


def sample_lines(s: Mapping[str, Any], kpi_csv: str | None, picture: str | None) -> list[str]:
    """Plain-text lines for one holding sample: what it is, its picture, its flag, the commands."""
    flag = ("flagged as a possible label error" if s.get("label_issue") else "not flagged as a label error")
    cmds = fix_commands(s, kpi_csv)
    return [f"{s['label']} {sample_name(s)} (score {float(s['siamese_score']):.4g}; {flag})"
            + (f"; picture {picture}" if picture else ""),
            f"  if it is not a defect: {cmds['relabel']}",
            f"  if it does not belong in the KPI set: {cmds['drop']}"]


def rerun_note(rerun: str | None) -> str:
    """What follows an edit: the run's figures are on the old set, so a new run on the corrected one."""
    how = f": {rerun}" if rerun else " (run_pipeline.py with a new --results-dir, or init_deft_state.py)"
    return ("Nothing is relabelled or dropped automatically. After an edit this run's figures are on the old KPI set "
            f"(its RCA steered the loop by them): rerun on the corrected set in a new folder{how}")


# the flag of run_pipeline.py for each recorded option (pipeline_state.json ``options``)
_FLAGS = (("workspace", "--workspace"), ("backend", "--backend"), ("phases", "--phases"),
          ("max_iterations", "--max-iterations"), ("kpi_target", "--kpi-target"), ("trials", "--trials"),
          ("algorithm", "--algorithm"), ("num_sdg", "--num-sdg"), ("top_k_per_target", "--top-k-per-target"),
          ("min_similarity", "--min-similarity"), ("seed", "--seed"), ("time_limit", "--time-limit"))


def rerun_command(options: Mapping[str, Any], results_dir: str) -> str:
    """The run_pipeline.py line of a recorded run (its pipeline_state.json options) into a new folder."""
    args = []
    for key, flag in _FLAGS:
        value = options.get(key)
        if value is not None:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return script("run_pipeline.py", *args, "--results-dir", results_dir, "--yes")
