"""What a run costs in wall time, and a time limit turned into max_iterations and AutoML trials.

Unit costs come from a short dry run on this host (``measure``) or from a configured epoch time;
the work comes from the workspace and the options (``Workload``). A training costs a fixed part
(set-up, saving; for docker/slurm the job start) plus epochs x rows x the per-row epoch time, so a
1-epoch measurement alone (the old estimate) says little: the dry run separates the two. On the
local backend a row's images are decoded once per process (features are cached), so the first
reading of each row is counted once. AutoML adds Optuna's per-epoch bookkeeping (a report and a
heartbeat in the study storage) to every trial epoch. Pruned trials (hyperband, asha) end early:
the estimate counts them in full, so it is an upper bound for those algorithms.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tao_aoi import defaults
from tao_aoi.errors import UserError

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str, flag: str = "--time-limit") -> float:
    """'8h', '90m', '1h30m', '3600s', '1.5h' -> seconds."""
    t = str(text).strip().lower().replace(" ", "")
    m = _DURATION.fullmatch(t)
    if not t or not m or not any(m.groups()):
        raise UserError(f"{flag} {text!r} is not a duration; write it like 8h, 90m, 1h30m or 3600s")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    sec = 3600 * h + 60 * mi + s
    if sec <= 0:
        raise UserError(f"{flag} {text!r} must be longer than zero")
    return sec


def human(sec: float) -> str:
    sec = max(0, int(round(sec)))
    h, rest = divmod(sec, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per unit of work on this host (see the module docstring)."""

    source: str
    epoch_sec_per_row: float
    train_job_sec: float
    infer_sec_per_row: float
    infer_job_sec: float
    decode_sec_per_row: float
    automl_epoch_sec: float
    automl_trial_sec: float
    study_open_sec: float
    rca_sec: float
    first_use_sec: float = 0.0  # once per process: imports and set-up the first job pays

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Workload:
    phases: str
    epochs: int
    train_rows: int
    val_rows: int
    kpi_rows: int
    pool_rows: int
    mining_targets: int        # weak samples routed to mining per iteration
    trials: int
    max_iterations: int
    num_sdg: int
    top_k_per_target: int
    algorithm: str = "bayesian"
    warm_rows: int = 0         # rows whose images this process has decoded already (the dry run's)
    sdg_pairs: int = 0         # SDG pool samples: embedded once for the limiting samples' targeted picks


def _trial(c: UnitCosts, w: Workload, rows: int) -> float:
    return (c.train_job_sec + w.epochs * (c.epoch_sec_per_row * rows + c.automl_epoch_sec)
            + c.infer_job_sec + c.infer_sec_per_row * w.val_rows + c.automl_trial_sec)


def _train(c: UnitCosts, w: Workload, rows: int) -> float:
    return c.train_job_sec + w.epochs * c.epoch_sec_per_row * rows


def _evaluate(c: UnitCosts, w: Workload) -> float:
    """The KPI inference, the validation inference of the calibrated KPI (its images decoded by training
    already) and the report rendered after it."""
    return 2 * c.infer_job_sec + c.infer_sec_per_row * (w.kpi_rows + w.val_rows) + defaults.REPORT_RENDER_SEC


def estimate(w: Workload, c: UnitCosts) -> dict[str, Any]:
    """Seconds per phase from the start of Phase 1 to the report (the dry run itself not included)."""
    phases = {"all": ("automl1", "deft", "automl3"), "automl": ("automl1",), "deft": ("deft",)}[w.phases]
    decode = c.decode_sec_per_row
    cold_base = max(0, w.train_rows + w.val_rows - w.warm_rows)
    first = 0.0 if w.warm_rows else c.first_use_sec
    out: dict[str, Any] = {"phase1_sec": 0.0, "deft_sec": 0.0, "phase3_sec": 0.0}
    if "automl1" in phases:
        out["phase1_sec"] = first + c.study_open_sec + decode * cold_base + w.trials * _trial(c, w, w.train_rows)
    rows = w.train_rows
    if "deft" in phases:
        n = w.max_iterations
        deft = decode * w.kpi_rows + _evaluate(c, w) + c.rca_sec  # baseline evaluate + rca
        if "automl1" not in phases:
            deft += first + decode * cold_base + _train(c, w, w.train_rows)
        per_iter = []
        mined = 0
        for i in range(1, n + 1):
            # Growth upper bound: num_sdg synthetic rows, and every minable pool row by the first iterations.
            new_mined = min(w.pool_rows - mined, w.mining_targets * w.top_k_per_target)
            mined += new_mined
            rows += w.num_sdg + new_mined
            pool = w.pool_rows if i == 1 else 0  # later iterations read the pool's cached embeddings
            mining = c.infer_job_sec + decode * pool + c.infer_sec_per_row * (pool + w.mining_targets)
            if i == 1 and w.sdg_pairs:  # targeted SDG embeds its pool once (an upper bound: only if one pins)
                mining += c.infer_job_sec + (decode + c.infer_sec_per_row) * w.sdg_pairs
            sec = (defaults.DEFT_NATIVE_ITERATION_SEC + defaults.DEFT_NATIVE_SEC_PER_ROW * rows + mining
                   + decode * w.num_sdg + _train(c, w, rows) + _evaluate(c, w) + (c.rca_sec if i < n else 0.0))
            per_iter.append(sec)
            deft += sec
        deft += defaults.DEFT_FINALIZE_SEC
        out["deft_sec"] = deft
        out["per_iteration_sec"] = [round(x, 1) for x in per_iter]
    if "automl3" in phases:
        out["phase3_sec"] = (c.study_open_sec + w.trials * _trial(c, w, rows) + _evaluate(c, w)
                             + defaults.DEFT_FINALIZE_SEC)
    out["per_trial_sec"] = round(_trial(c, w, w.train_rows), 2)
    out["final_training_rows"] = rows
    out["total_sec"] = round(out["phase1_sec"] + out["deft_sec"] + out["phase3_sec"], 1)
    for k in ("phase1_sec", "deft_sec", "phase3_sec"):
        out[k] = round(out[k], 1)
    out["pruned_trials"] = ("counted in full (an upper bound: pruned trials stop early)"
                            if w.algorithm in ("hyperband", "asha") else "no pruning")
    return out


def fit(limit_sec: float, w: Workload, c: UnitCosts, *, trials: int | None, max_iterations: int | None,
        sdg_lasts: int | None = None) -> tuple[Workload, dict[str, Any]]:
    """The largest plan that fits ``limit_sec``: DEFT iterations first (up to TIME_BUDGET_MAX_ITERATIONS,
    and no further than the SDG pool lasts), AutoML trials at the default, more trials with what is
    left (up to TIME_BUDGET_MAX_TRIALS). Values the user gave are kept. Refuses a limit below the
    smallest plan."""
    deft = w.phases in ("all", "deft")
    automl = w.phases in ("all", "automl")
    cap = defaults.TIME_BUDGET_MAX_ITERATIONS if sdg_lasts is None else max(1, min(defaults.TIME_BUDGET_MAX_ITERATIONS, sdg_lasts))

    def total(t: int, n: int) -> float:
        return estimate(replace(w, trials=t, max_iterations=n), c)["total_sec"]

    t = trials if trials is not None else (defaults.AUTOML_TRIALS if automl else 0)
    n = max_iterations if max_iterations is not None else (1 if deft else 0)
    if trials is None and automl:
        while t > 1 and total(t, n) > limit_sec:
            t -= 1
    if total(t, n) > limit_sec:
        raise UserError(f"--time-limit {human(limit_sec)} is shorter than the smallest run ({t} trial(s), {n} "
                        f"iteration(s): ~{human(total(t, n))} here); give more time, or pass --trials / "
                        f"--max-iterations yourself")
    if max_iterations is None and deft:
        while n < cap and total(t, n + 1) <= limit_sec:
            n += 1
    if trials is None and automl:
        while t < defaults.TIME_BUDGET_MAX_TRIALS and total(t + 1, n) <= limit_sec:
            t += 1
    chosen = replace(w, trials=t, max_iterations=n)
    notes = []
    if max_iterations is None and deft and n == cap and sdg_lasts is not None and sdg_lasts < defaults.TIME_BUDGET_MAX_ITERATIONS:
        notes.append(f"max_iterations capped at {n}: the SDG pool lasts {sdg_lasts} iteration(s) at this num_sdg")
    return chosen, {"limit_sec": limit_sec, "trials": t if automl else None, "max_iterations": n if deft else None,
                    "notes": notes, "estimate": estimate(chosen, c)}


# ------------------------------------------------------------------ measuring


def epoch_seconds(status_json: Path) -> float | None:
    """An epoch's duration from a status.json (time_per_epoch, TAO style H:MM:SS.fff), if it says."""
    best = None
    try:
        lines = status_json.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        v = rec.get("time_per_epoch") if isinstance(rec, dict) else None
        if isinstance(v, str):
            parts = v.split(":")
            try:
                best = sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))
            except ValueError:
                continue
        elif isinstance(v, (int, float)):
            best = float(v)
    return best


def _bookkeeping_sec(tmp: Path, epochs: int = 10) -> tuple[float, float, float]:
    """Optuna on a fresh SQLite study, as a trial uses it: (open, per-epoch, per-trial) seconds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.monotonic()
    study = optuna.create_study(storage=f"sqlite:///{tmp / 'cost.db'}", direction="minimize")
    opened = time.monotonic() - t0
    t0 = time.monotonic()
    trial = study.ask()
    trial.set_user_attr("owner", {"host": "x", "pid": 0})
    t1 = time.monotonic()
    laps = []
    for e in range(epochs):
        t = time.monotonic()
        trial.set_user_attr("heartbeat", time.time())
        trial.report(0.5, e + 1)
        trial.should_prune()
        laps.append(time.monotonic() - t)
    t2 = time.monotonic()
    for k in ("output_dir", "checkpoint", "spec", "pred_counts", "feasible", "val_margin", "val_far_pct",
              "duration_sec"):  # what run_trial records after training
        trial.set_user_attr(k, 1)
    study.tell(trial, 0.5)
    t3 = time.monotonic()
    return opened, sorted(laps)[len(laps) // 2], (t1 - t0) + (t3 - t2)


def measure(workspace: str | Path, backend: str, *, epoch_sec: float | None = None) -> UnitCosts:
    """Unit costs on this host. local: a cold and a warm 1-epoch training, a warm 3-epoch one, a warm
    validation inference and a gap analysis, all on the base data. docker/slurm: one 1-epoch job and
    one inference job (the epoch from status.json); with ``epoch_sec`` nothing runs but Optuna's
    bookkeeping, and job start-up is the configured EXTERNAL_JOB_SEC."""
    from tao_aoi.data import changenet_csv
    from tao_aoi.layout import Workspace

    ws = Workspace.at(workspace)
    train_rows = len(changenet_csv.read(ws.training_csv, what="training set"))
    val_rows = len(changenet_csv.read(ws.validation_csv, what="validation set"))
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        opened, per_epoch_bk, per_trial_bk = _bookkeeping_sec(tmp)
        if epoch_sec is not None:
            return UnitCosts(source=f"configured epoch time {epoch_sec:g} s (--epoch-sec)",
                             epoch_sec_per_row=epoch_sec / max(train_rows, 1), train_job_sec=defaults.EXTERNAL_JOB_SEC,
                             infer_sec_per_row=epoch_sec / max(train_rows, 1) / 3, infer_job_sec=defaults.EXTERNAL_JOB_SEC,
                             decode_sec_per_row=0.0, automl_epoch_sec=per_epoch_bk, automl_trial_sec=per_trial_bk,
                             study_open_sec=opened, rca_sec=defaults.RCA_SEC)
        return _dry_run(ws, backend, tmp, train_rows, val_rows, opened, per_epoch_bk, per_trial_bk)


def _line(t1: float, n1: int, t2: float, n2: int) -> tuple[float, float]:
    """(per-row, fixed) seconds through two timings of different sizes; all per-row if they do not
    separate (equal sizes, or noise larger than the difference)."""
    if n1 != n2:
        per_row = (t2 - t1) / (n2 - n1)
        fixed = t1 - per_row * n1
        if per_row > 0 and fixed >= 0:
            return per_row, fixed
    return min(t1 / max(n1, 1), t2 / max(n2, 1)), 0.0


def _dry_run(ws, backend: str, tmp: Path, train_rows: int, val_rows: int, opened: float, per_epoch_bk: float,
             per_trial_bk: float) -> UnitCosts:
    from tao_aoi.analysis import gap_analysis
    from tao_aoi.backends import get_backend
    from tao_aoi.backends.base import InferJob, TrainJob
    from tao_aoi.data import changenet_csv

    b = get_backend(backend)

    def train(name: str, epochs: int) -> float:
        t0 = time.monotonic()
        h = b.train(TrainJob(spec=ws.baseline_spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                             images_root=ws.images, output_dir=tmp / name,
                             # TAO asserts both intervals <= num_epochs (the demo spec checkpoints every 10)
                             overrides={"train.num_epochs": epochs, "train.checkpoint_interval": 1,
                                        "train.validation_interval": 1}))
        if h.state != "COMPLETE":
            raise UserError(f"the dry run's training failed ({h.detail or h.state}); see {tmp / name}")
        return time.monotonic() - t0

    def infer(name: str, csv: Path) -> float:
        t0 = time.monotonic()
        h = b.infer(InferJob(spec=ws.baseline_spec, checkpoint=tmp / "cold" / defaults.CHECKPOINT_NAME,
                             csv=csv, images_root=ws.images, output_dir=tmp / name))
        if h.state != "COMPLETE":
            raise UserError(f"the dry run's inference failed ({h.detail or h.state})")
        return time.monotonic() - t0

    def rca() -> float:
        t0 = time.monotonic()
        gap_analysis.run(tmp / "val" / "inference.csv", ws.baseline_spec, ws.images, tmp / "rca",
                         min_recall=defaults.MIN_RECALL, top_k=defaults.TOP_K_PER_LABEL)
        return time.monotonic() - t0

    cold = train("cold", 1)
    infer_val = infer("val", ws.validation_csv)
    rca_first, rca_again = rca(), rca()
    rows = max(train_rows, 1)
    if backend == "local":
        sample = changenet_csv.read(ws.kpi_csv, what="KPI set").head(defaults.DRY_RUN_DECODE_ROWS)
        changenet_csv.write(sample, tmp / "kpi_sample.csv")
        n = max(len(sample), 1)
        infer_new = infer("kpi", tmp / "kpi_sample.csv")  # rows this process has not decoded yet
        infer_again = min(infer("kpi2", tmp / "kpi_sample.csv"), infer("kpi3", tmp / "kpi_sample.csv"))
        decode = max(infer_new - infer_again, 0.0) / n
        infer_val = min(infer_val, infer("val2", ws.validation_csv))
        per_row, job = _line(infer_val, val_rows, infer_again, n)
        # A 1-epoch and a full-length training (the spec's epochs, at most DRY_RUN_MAX_EPOCHS), the
        # shorter of two runs each: a local epoch is milliseconds, and the fastest repeat of a run is
        # the one the shared host disturbed least.
        spec_epochs = workload_epochs(ws)
        e = max(2, min(spec_epochs, defaults.DRY_RUN_MAX_EPOCHS))
        warm1 = min(train("warm1", 1), train("warm1b", 1))
        warm_e = min(train("warm_e", e), train("warm_eb", e))
        epoch = max((warm_e - warm1) / (e - 1), 1e-6)
        return UnitCosts(source=f"measured dry run on the local backend (epoch {epoch:.3g} s on {train_rows} rows)",
                         epoch_sec_per_row=epoch / rows, train_job_sec=max(warm1 - epoch, 0.0),
                         infer_sec_per_row=per_row, infer_job_sec=job, decode_sec_per_row=decode,
                         automl_epoch_sec=per_epoch_bk, automl_trial_sec=per_trial_bk, study_open_sec=opened,
                         rca_sec=rca_again,
                         first_use_sec=max(cold - warm1 - decode * (train_rows + val_rows), 0.0)
                         + max(rca_first - rca_again, 0.0))
    epoch = epoch_seconds(tmp / "cold" / "status.json")
    note = "" if epoch is not None else "; status.json gave no epoch time, the whole job counted as one epoch"
    epoch = cold if epoch is None else min(epoch, cold)
    job = cold - epoch
    return UnitCosts(source=f"measured 1-epoch {backend} job ({human(cold)}, epoch {human(epoch)}){note}",
                     epoch_sec_per_row=epoch / rows, train_job_sec=job,
                     infer_sec_per_row=max(infer_val - job, 0.0) / max(val_rows, 1), infer_job_sec=min(job, infer_val),
                     decode_sec_per_row=0.0, automl_epoch_sec=per_epoch_bk, automl_trial_sec=per_trial_bk,
                     study_open_sec=opened, rca_sec=rca_again, first_use_sec=max(rca_first - rca_again, 0.0))


def workload_epochs(ws) -> int:
    """train.num_epochs of the workspace spec (the local model's default when the spec has none)."""
    from tao_aoi.tao import train_spec

    spec = train_spec.load(ws.baseline_spec)
    return int(train_spec.get(spec, "train.num_epochs", defaults.LOCAL_MODEL["train.num_epochs"]) or 1)


def workload(workspace: str | Path, *, phases: str, trials: int, max_iterations: int, num_sdg: int,
             top_k_per_target: int, algorithm: str, warm_rows: int = 0) -> Workload:
    """The work of a run from the workspace's CSVs and spec (rows, epochs, weak mining targets)."""
    from tao_aoi.data import changenet_csv
    from tao_aoi.layout import Workspace

    ws = Workspace.at(workspace)
    epochs = workload_epochs(ws)
    kpi = changenet_csv.read(ws.kpi_csv, what="KPI set") if ws.kpi_csv.is_file() else None
    pool = changenet_csv.read(ws.mining_pool_csv, what="mining pool", allow_empty=True)\
        if ws.mining_pool_csv.is_file() else None
    targets = 0
    if kpi is not None and pool is not None:
        pool_labels = set(pool["label"])
        counts = kpi["label"].value_counts()
        targets = int(sum(min(defaults.TOP_K_PER_LABEL, int(v)) for k, v in counts.items() if k in pool_labels))
    return Workload(phases=phases, epochs=epochs,
                    train_rows=len(changenet_csv.read(ws.training_csv, what="training set")),
                    val_rows=len(changenet_csv.read(ws.validation_csv, what="validation set")),
                    kpi_rows=0 if kpi is None else len(kpi), pool_rows=0 if pool is None else len(pool),
                    mining_targets=targets, trials=trials, max_iterations=max_iterations, num_sdg=num_sdg,
                    top_k_per_target=top_k_per_target, algorithm=algorithm, warm_rows=warm_rows,
                    sdg_pairs=_sdg_pairs(ws))


def _sdg_pairs(ws) -> int:
    from tao_aoi.deft import sdg
    from tao_aoi.errors import UserError

    if not ws.sdg_pool.is_dir():
        return 0
    try:
        return sum(sdg.samples_per_label(sdg.scan(ws.sdg_pool)[0]).values())
    except UserError:  # an unreadable pool is pre-flight's to report, not the estimate's
        return 0



def plan(workspace: str | Path, *, backend: str, phases: str, trials: int | None, max_iterations: int | None,
         num_sdg: int, top_k_per_target: int, algorithm: str, time_limit: str | None = None,
         epoch_sec: float | None = None, in_process: bool = False) -> dict[str, Any]:
    """Measure (or take the configured epoch time), then estimate the given plan, or with
    ``time_limit`` choose max_iterations and trials that fit it. ``in_process``: the run follows in
    this process, so the dry run's decoded images are already cached for it."""
    limit = parse_duration(time_limit) if time_limit is not None else None
    t0 = time.monotonic()
    costs = measure(workspace, backend, epoch_sec=epoch_sec)
    measured_sec = time.monotonic() - t0
    from tao_aoi.data import changenet_csv
    from tao_aoi.layout import Workspace

    ws = Workspace.at(workspace)
    warm = 0
    if in_process and backend == "local" and epoch_sec is None:
        warm = len(changenet_csv.read(ws.training_csv)) + len(changenet_csv.read(ws.validation_csv))
    w = workload(workspace, phases=phases, trials=trials or defaults.AUTOML_TRIALS, max_iterations=max_iterations or 1,
                 num_sdg=num_sdg, top_k_per_target=top_k_per_target, algorithm=algorithm, warm_rows=warm)
    out: dict[str, Any] = {"time_limit": time_limit, "unit_costs": costs.as_dict(), "dry_run_sec": round(measured_sec, 1),
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if limit is None:
        out.update(trials=w.trials if phases != "deft" else None,
                   max_iterations=w.max_iterations if phases != "automl" else None,
                   notes=[], estimate=estimate(w, costs))
        return out
    from tao_aoi.deft import sdg

    _, fitted = fit(limit, w, costs, trials=trials, max_iterations=max_iterations,
                    sdg_lasts=sdg.lasts_for_workspace(ws, num_sdg) if phases != "automl" else None)
    out.update(fitted)
    return out


def summary_line(budget: dict[str, Any]) -> str:
    """One line for the plan and the log: what the time limit became, and the estimate."""
    e = budget["estimate"]
    parts = []
    if budget.get("max_iterations") is not None:
        parts.append(f"max_iterations {budget['max_iterations']}")
    if budget.get("trials") is not None:
        parts.append(f"{budget['trials']} trials per AutoML phase")
    head = f"time limit {budget['time_limit']} -> " if budget.get("time_limit") else "plan: "
    line = (f"{head}{', '.join(parts)}; estimated {human(e['total_sec'])} (Phase 1 {human(e['phase1_sec'])}, "
            f"DEFT {human(e['deft_sec'])}, Phase 3 {human(e['phase3_sec'])}) from a {budget['unit_costs']['source']}")
    notes = list(budget.get("notes") or [])
    if e.get("pruned_trials", "").startswith("counted"):
        notes.append("pruned trials counted in full (an upper bound)")
    return line + ("; " + "; ".join(notes) if notes else "")
