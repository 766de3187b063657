"""Every file and key the report reads, in one place, each read tolerant of absence and damage.

The report must render after any stage and on a failed run, while the stage formats are still
settling; so each reader returns a ``Doc`` (ok / absent / unreadable + why) instead of raising, and
every key name of another stage's output is written here once (``*_KEYS`` aliases included), so a
format change is a one-line fix. Stage outputs are found at their layout path (``layout.Results``,
where stage_plan tells stages to write), else at the path the state's commit recorded.
"""
from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from tao_aoi import labels
from tao_aoi.errors import UserError
from tao_aoi.layout import Results, iteration_number
from tao_aoi.state import deft_state, event_log
from tao_aoi.state import pipeline_state as runner_state  # sources.pipeline_state() is the report's reader

TEXT_LIMIT = 64_000          # bytes of a text file shown (RCA report, inference spec, ...)
TABLE_ROWS = 50              # rows of a CSV shown as a table
IMAGE_MAX_PX = 512           # longest side of an embedded thumbnail
IMAGE_MAX_BYTES = 8_000_000  # larger files are not decoded


@dataclass(frozen=True)
class Doc:
    """One input of the report: ``data`` when ``status == 'ok'``, else ``reason`` says why not."""

    path: Path
    status: str = "ok"  # ok | absent | unreadable
    data: Any = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default) if self.ok and isinstance(self.data, dict) else default


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or exc.__class__.__name__


def _guard(path: Path, read: Callable[[Path], Any]) -> Doc:
    if not path.is_file():
        return Doc(path, "absent")
    try:
        return Doc(path, data=read(path))
    except (OSError, ValueError, UserError, UnicodeDecodeError) as exc:
        return Doc(path, "unreadable", reason=_short(exc))


def json_doc(path: Path, want: type = dict) -> Doc:
    def read(p: Path) -> Any:
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, want):
            raise ValueError(f"expected a JSON {want.__name__}, found {type(data).__name__}")
        return data

    return _guard(path, read)


def text_doc(path: Path, limit: int = TEXT_LIMIT) -> Doc:
    def read(p: Path) -> str:
        with open(p, "rb") as fh:
            raw = fh.read(limit + 1)
        text = raw[:limit].decode("utf-8", errors="replace")
        return text + ("\n[... truncated ...]\n" if len(raw) > limit else "")

    return _guard(path, read)


def yaml_doc(path: Path) -> Doc:
    """The file's text (shown as is, truncated), after checking the whole file parses with yaml.safe_load."""
    def read(p: Path) -> str:
        import yaml

        text = p.read_text(encoding="utf-8")
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {_short(exc)}") from None
        return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "\n[... truncated ...]\n"

    return _guard(path, read)


@dataclass(frozen=True)
class Csv:
    """A CSV as strings: its column names and {name: pyarrow array}, turned into Python values only
    where shown or counted (a training set's row count needs none)."""

    columns: list[str]
    data: dict[str, Any]

    def __len__(self) -> int:
        return len(self.data[self.columns[0]]) if self.columns else 0

    def head(self, n: int) -> list[list[str]]:
        """The first ``n`` rows, cells in column order."""
        return [list(row) for row in zip(*(self.data[c].slice(0, n).to_pylist() for c in self.columns))]

    def tally(self, name: str, canonical: bool = False) -> dict[str, int]:
        """{value: rows}, labels in canonical form when asked (PASS/pass/Pass are one label)."""
        counts = Counter(self.data[name].to_pylist())
        out: Counter[str] = Counter()
        for v, n in counts.items():
            out[labels.canonical_label(v) if canonical else v.strip()] += n
        return dict(sorted(out.items()))


def csv_doc(path: Path) -> Doc:
    """A CSV through the toolkit's one reader (changenet_csv.read_arrays: no pandas), raw labels kept.

    No stdlib path of its own: importing pyarrow costs render_report.py ~0.2 s CPU on a demo-sized run
    (0.45 -> 0.68 s), and saves it ~0.9 s once the training CSVs hold 300k rows (1.91 -> 1.01 s; the
    stdlib reading alone took the CLI to 6.6 s wall, over the report's 2 s budget); same load, interleaved."""
    def read(p: Path) -> Csv:
        from tao_aoi.data import changenet_csv

        cols = changenet_csv.read_arrays(p, (), what="CSV", allow_empty=True, canonicalize=False)
        return Csv(list(cols), cols)

    return _guard(path, read)


def inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (OSError, ValueError):
        return False


def image_uri(path: Path, root: Path) -> tuple[str | None, str]:
    """(data URI of a re-encoded JPEG, problem). Only files inside the results folder are embedded.

    Re-encoding means only decoded pixels reach the HTML (never the file's own bytes or MIME type).
    """
    if not inside(path, root):
        return None, f"{path} is outside the results folder; not embedded"
    if not path.is_file():
        return None, f"{path} does not exist"
    if path.stat().st_size > IMAGE_MAX_BYTES:
        return None, f"{path} is larger than {IMAGE_MAX_BYTES} bytes; not embedded"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.thumbnail((IMAGE_MAX_PX, IMAGE_MAX_PX))
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"{path} is not a readable image ({_short(exc)})"
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), ""


def pick(d: Mapping[str, Any] | None, keys: Iterable[str], default: Any = None) -> Any:
    """The first key of ``keys`` present in ``d`` (aliases of one field across format versions)."""
    if isinstance(d, Mapping):
        for k in keys:
            if k in d and d[k] is not None:
                return d[k]
    return default


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Run:
    results: Results
    state: dict[str, Any] | None      # None: no DEFT run in this folder (yet)
    events: list[dict[str, Any]]


def load_run(results_dir: str | Path) -> Run:
    """State (rolled forward from the log, as every reader does) and the log.

    A folder without a DEFT run renders as "DEFT not started" (e.g. during Phase 1); a missing
    folder, a damaged log or a state file that disagrees with the log (deft_state.json,
    pipeline_state.json: edited by hand) is a UserError naming the file.
    """
    R = Results.at(results_dir)
    if not R.root.is_dir():
        raise UserError(f"--results-dir {R.root} does not exist; pass the run's results folder")
    events = event_log.read_events(R.log)
    runner_state.load(R, events)  # a hand-edited pipeline_state.json is refused like deft_state.json
    if not R.state.exists() and not any(e.get("kind") == "commit" for e in events):
        return Run(R, None, events)
    return Run(R, deft_state.load(R.root), events)


def labels_in_run(st: Mapping[str, Any] | None) -> list[str]:
    return sorted((st or {}).get("iterations", {}), key=iteration_number)


def artifact(R: Results, record: Mapping[str, Any] | None, key: str, label: str, stage: str, name: str) -> Path:
    """Where a stage output is: at its layout path (where stage_plan makes stages write it), else at the
    path the commit recorded if that is inside this folder. The state records absolute paths, and a
    results folder that was moved or copied must show its own files, never the original's."""
    here = R.stage_dir(label, stage) / name
    committed = ((record or {}).get("artifacts") or {}).get(key)
    if here.exists() or not committed or not inside(Path(committed), R.root):
        return here
    return Path(committed)


# --------------------------------------------------------------------------- per-stage files
# evaluate: <it>/inference/metric_result.json (analyze_kpi.py). The state keeps name, value, unit,
# passed, failures, threshold, far_pct, recall_pct, precision_pct, f1, counts; from the file the report
# adds per_label{label: total, misclassified, missed} and far_at_recall_pct{recall: far}.


def metric_file(R: Results, label: str, record: Mapping[str, Any] | None) -> Doc:
    return json_doc(artifact(R, record, "metric_result", label, "evaluate", "metric_result.json"))


# rca: <it>/rca/{metrics.json, threshold.txt, RCA_Report.md, rca_images/*.png, unreachable_kpi.txt}
# (gap_analysis.py). metrics.json keys read: threshold, min_recall, precision, recall, f1, far,
# confusion_matrix{tp,fp,tn,fn}, n_rows, n_pass, n_defect, n_kept_samples, n_gap_rows, lights,
# per_label{label: total, mean_weakness, median_weakness, max_weakness, misclassified},
# label_issues{method, flagged, flagged_kept}, rca_images[{file, kind, label, object_name, input_path,
# siamese_score, weakness, missing_files}], report_mode (headless|agent), limiting{recall_target,
# false_alarms, far}, limiting_samples[{rank, label, object_name, input_path, siamese_score,
# pinned_false_alarms, false_alarms_if_fixed, far_if_fixed}], limiting_families{label: defects,
# limiting_samples, pinned_false_alarms, far_if_family_fixed}. RCA_Report.md: section "## 1." (verdict),
# the table of "## 5." (# | label | object_name | score | weakness | image [| verdict | why] - the last
# two only in agent mode), "## 8." (actions).
RCA_SPOT_SECTION = "5"
RCA_VERDICT_SECTION = "1"
RCA_ACTIONS_SECTION = "8"
TODO_MARK = "TODO(agent)"


def rca_files(R: Results, label: str, record: Mapping[str, Any] | None) -> dict[str, Doc]:
    rca_dir = R.stage_dir(label, "rca")
    report = artifact(R, record, "rca_report", label, "rca", "RCA_Report.md")
    return {
        "metrics": json_doc(rca_dir / "metrics.json"),
        "threshold": text_doc(artifact(R, record, "threshold_file", label, "rca", "threshold.txt"), 200),
        "report": text_doc(report),
        "unreachable": text_doc(rca_dir / "unreachable_kpi.txt", 4000),
    }


_SECTION = re.compile(r"^## (\d+)\.[^\n]*$", re.M)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def md_sections(text: str) -> dict[str, str]:
    """``## N. Title`` sections of an RCA report, by number."""
    marks = list(_SECTION.finditer(text))
    return {m.group(1): text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip("\n")
            for i, m in enumerate(marks)}


def md_table_rows(section: str) -> list[list[str]]:
    """Body rows of the markdown table(s) in a section, cells unescaped (``\\|`` -> ``|``)."""
    rows = []
    for line in section.splitlines():
        s = line.strip()
        if not (s.startswith("|") and s.endswith("|")) or set(s) <= set("|-: "):
            continue
        rows.append([c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(s[1:-1])])
    return rows[1:]  # drop the header


def spot_verdicts(report_text: str) -> dict[int, tuple[str, str]]:
    """{row number: (verdict, why)} of the spot-check table; TODO cells mean "not written yet"."""
    out: dict[int, tuple[str, str]] = {}
    for cells in md_table_rows(md_sections(report_text).get(RCA_SPOT_SECTION, "")):
        if len(cells) >= 8 and cells[0].isdigit():
            verdict, why = cells[6].strip("`* "), cells[7]
            out[int(cells[0])] = ("" if TODO_MARK in verdict else verdict, "" if TODO_MARK in why else why)
    return out


def agent_text(report_text: str, section: str) -> str:
    """A section of the RCA report without its blockquote hints; '' if the agent left only TODOs."""
    body = md_sections(report_text).get(section, "")
    lines = [ln for ln in body.splitlines() if not ln.startswith(">")]
    text = "\n".join(lines).strip()
    return "" if not text or all(TODO_MARK in ln for ln in lines if ln.strip()) else text


# routing: <it>/routing/routing_summary.json (route_samples.py): total_rows, total_samples,
# rows_by_route, dropped_labels, relabel{samples, method}, per_label{label: route, reason, rows,
# samples, relabel_samples, sdg_pool_samples, mining_pool_rows}.
def routing_file(R: Results, label: str, record: Mapping[str, Any] | None) -> Doc:
    return json_doc(artifact(R, record, "routing_summary", label, "routing", "routing_summary.json"))


# sdg: <it>/sdg/allocation.json (ingest_sdg.py): num_sdg, total_ingested,
# per_label{label: weak, allocated, pool_samples, used_earlier, available}, ingested{label: n};
# <it>/sdg/sdg_rows.csv (ChangeNet rows).
def sdg_files(R: Results, label: str, record: Mapping[str, Any] | None) -> dict[str, Doc]:
    return {"allocation": json_doc(artifact(R, record, "allocation", label, "sdg", "allocation.json")),
            "rows": csv_doc(artifact(R, record, "sdg_rows", label, "sdg", "sdg_rows.csv"))}


# mining: <it>/mining/mined_rows.csv (ChangeNet rows + source, similarity, target), knn_summary.csv
# (target, label, candidates, above_floor, new, best_similarity; shown as it is) and
# mining_summary.json (mine_pool.py): these keys, in this order.
MINING_SUMMARY_KEYS = ("targets", "pool_rows", "excluded_heldout", "top_k_per_target", "limiting_targets",
                       "extra_neighbours_for_limiting", "min_similarity", "method", "embedder", "candidates",
                       "above_floor", "mined_earlier", "mined")


def mining_files(R: Results, label: str, record: Mapping[str, Any] | None) -> dict[str, Doc]:
    return {"mined": csv_doc(artifact(R, record, "mined_rows", label, "mining", "mined_rows.csv")),
            "knn": csv_doc(artifact(R, record, "knn_summary", label, "mining", "knn_summary.csv")),
            "summary": json_doc(R.stage_dir(label, "mining") / "mining_summary.json")}


# assemble: <it>/dataset/validation_report.json (assemble_dataset.py): previous_rows, new_rows,
# new_by_source{sdg, mined}, combined_rows, duplicates_dropped, leakage_count, missing_file_count,
# bad_label_count; train_combined_iterN_provenance.csv: origin (base_train/sdg/mined) per row,
# else source (base_train/previous_iter/sdg/mined).
PROVENANCE_COLUMNS = ("origin", "source")


def dataset_files(R: Results, label: str, record: Mapping[str, Any] | None) -> dict[str, Doc]:
    n = iteration_number(label)
    report = artifact(R, record, "validation_report", label, "assemble", "validation_report.json")
    prov_path = artifact(R, record, "provenance", label, "assemble", R.provenance_csv(n).name)
    return {"validation": json_doc(report), "composition": provenance_counts(prov_path)}


def provenance_counts(path: Path) -> Doc:
    """{origin: rows} of a provenance CSV."""
    doc = csv_doc(path)
    if not doc.ok:
        return doc
    col = next((c for c in PROVENANCE_COLUMNS if c in doc.data.columns), None)
    if col is None:
        return Doc(path, "unreadable", reason=f"no column {' or '.join(PROVENANCE_COLUMNS)}")
    return Doc(path, data=doc.data.tally(col))


def row_count(path: str | Path | None) -> Doc:
    if not path:
        return Doc(Path(""), "absent")
    doc = csv_doc(Path(path))
    return Doc(doc.path, data=len(doc.data)) if doc.ok else doc


# --------------------------------------------------------------------------- run-level files
# best_model.json (prepare_inference_spec.py): iteration, checkpoint, threshold, metric_result,
# passed, training_spec, selection_rule, phase3_note, deployment{threshold, rule, placed, margin{to_defect,
# to_pass}, moved_gaps, kpi, warning}, calibrated{threshold, kpi{far_pct, recall_pct, far_ci95_pct}, note},
# holdout{far_pct, recall_pct, threshold, rows, far_ci95_pct} | null, resolution_note;
# best_model_inference_spec.yaml (shown as text).
def best_model(R: Results) -> Doc:
    return json_doc(R.best_model)


def inference_spec(R: Results) -> Doc:
    return yaml_doc(R.inference_spec)


def pipeline_state(R: Results) -> Doc:
    return json_doc(R.pipeline_state)


# automl/<phase>/best_rec.json (automl.py): metric_name, metric_set, direction, algorithm,
# best{trial, score, params (flat dotted), checkpoint}, trials[{number, state, value, params, feasible,
# duration_sec}]. Aliases, first match wins, also read TAO's runner form (rec_id/score/specs).
AUTOML_PHASES = (("phase1", "Phase 1: AutoML baseline"), ("phase3", "Phase 3: AutoML refinement"))
AUTOML_KEYS = {
    "metric": ("metric_name", "metric"),
    "direction": ("direction",),
    "algorithm": ("algorithm", "sampler"),
    "trials": ("trials", "all_recs", "history"),
    "best": ("best",),
    "id": ("number", "trial", "rec_id", "trial_id", "id"),
    "value": ("value", "score", "metric_value", "metric"),
    "state": ("state", "status"),
    "params": ("params", "specs"),
    "duration": ("duration_sec", "duration"),
    "checkpoint": ("checkpoint", "checkpoint_path", "checkpoint_uri"),
}


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested parameters as flat dotted keys (the runner's ``train.optim.lr`` form)."""
    if not isinstance(d, Mapping):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, Mapping) else {key: v})
    return out


def automl_study(R: Results, phase: str) -> Doc:
    """best_rec.json normalised to {metric, direction, algorithm, best{id, value, params, checkpoint}, trials[]}."""
    path = R.automl(phase) / "best_rec.json"
    doc = json_doc(path)
    if not doc.ok:
        return doc
    raw, K = doc.data, AUTOML_KEYS
    trials = []
    for i, t in enumerate(pick(raw, K["trials"], []) or []):
        if not isinstance(t, Mapping):
            continue
        trials.append({"id": pick(t, K["id"], i), "value": pick(t, K["value"]),
                       "state": str(pick(t, K["state"], "COMPLETE")).upper(), "feasible": t.get("feasible") is not False,
                       "params": flatten(pick(t, K["params"], {})), "duration": pick(t, K["duration"])})
    best = pick(raw, K["best"], {}) or {}
    return Doc(path, data={
        "metric": pick(raw, K["metric"], ""), "direction": pick(raw, K["direction"], ""),
        "algorithm": pick(raw, K["algorithm"], ""), "ties": raw.get("ties") if isinstance(raw.get("ties"), dict) else None,
        "best": {"id": pick(best, K["id"]), "value": pick(best, K["value"]),
                 "params": flatten(pick(best, K["params"], {})), "checkpoint": pick(best, K["checkpoint"])},
        "trials": trials,
    })
