"""Pre-flight: every read-only check before the single approval gate, in nine sections.

Nothing is written and nothing is started. Blockers come in two kinds: *hard* ones the user must
fix (missing inputs, leakage, an empty mining pool, a KPI text that does not parse, no
max_iterations) and *fixable* ones the run can fix itself after approval (the toolkit's Python
packages, a container image to pull).
"""
from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from tao_aoi import defaults, fmt, interpreter, labels
from tao_aoi.analysis import metric_contract
from tao_aoi.automl import search_space
from tao_aoi.data import changenet_csv, dataset_checks, leakage
from tao_aoi.deft import sdg
from tao_aoi.errors import UserError
from tao_aoi.layout import SCRIPTS_DIR, Workspace
from tao_aoi.tao import train_spec, versions

CREDENTIALS = ("NGC_KEY", "NGC_API_KEY", "HF_TOKEN")
IMAGES = {"docker": ("pyt", "data_services"), "slurm": ("pyt", "data_services")}
# The runtime's import names (faiss is the optional ann extra: only mine_pool.py --method ann needs it).
PACKAGES = ("numpy", "pandas", "pyarrow", "yaml", "sklearn", "optuna", "PIL", "jinja2", "fastjsonschema")


def _network_mode() -> str:
    if os.environ.get("AIR_GAPPED") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return "air-gapped (AIR_GAPPED/HF_HUB_OFFLINE set: no pulls, --pull=never)"
    return "network allowed"


def _images(backend: str, hard: list, fixable: list) -> list[dict[str, str]]:
    if backend == "local":
        return [{"key": "all", "image": "-", "status": "not needed (local backend)"}]
    rows = []
    docker = shutil.which("docker")
    for key in IMAGES[backend]:
        image = versions.image(key)
        if docker is None:
            status = "UNKNOWN (no docker client)"
            if backend == "docker":
                hard.append("docker is not installed; the docker backend needs a Docker engine with GPUs")
        else:
            proc = subprocess.run([docker, "image", "inspect", image], capture_output=True, timeout=60)
            status = "PRESENT" if proc.returncode == 0 else "MISSING"
            if status == "MISSING":
                if "air-gapped" in _network_mode():
                    hard.append(f"image {image} is missing and the machine is air-gapped; stage it first")
                else:
                    fixable.append(f"pull {image} (needs NGC_KEY/NGC_API_KEY)")
        rows.append({"key": key, "image": image, "status": status})
    return rows


def _csv_summary(name: str, path: Path, root: Path, lights: list[str], ext: str, hard: list) -> dict[str, Any]:
    if not path.is_file():
        hard.append(f"{name} {path} does not exist; put it there (the workspace layout) or pass --workspace "
                    f"the workspace that holds it")
        return {"name": name, "path": str(path), "rows": None}
    try:
        df = changenet_csv.read(path, what=name, allow_empty=(name == "mining pool"))
    except UserError as exc:
        hard.append(str(exc))
        return {"name": name, "path": str(path), "rows": None}
    missing = changenet_csv.missing_images(df, root, lights, ext) if len(df) else []
    if missing:
        hard.append(f"{name}: {len(missing)} missing image(s), e.g. line {missing[0][0]}: {missing[0][1]}; "
                    f"restore them or drop those rows")
    return {"name": name, "path": str(path), "rows": int(len(df)), "missing_files": len(missing),
            "labels": {str(k): int(v) for k, v in df["label"].value_counts().sort_index().items()}, "_df": df}


def _sdg_supply(kpi: Any, sdg_facts: dict[str, Any], num_sdg: int, max_iterations: int | None, pool: Path,
                warnings: list) -> dict[str, Any] | None:
    """Per-label SDG demand of the whole run vs the pool (sdg.forecast); a warning if it runs short."""
    if kpi is None or "samples_per_label" not in sdg_facts or not max_iterations or max_iterations < 1:
        return None
    counts = {str(k): int(v) for k, v in kpi["label"].value_counts().items()}
    f = sdg.forecast(counts, sdg_facts["samples_per_label"], sdg_labels=defaults.SDG_LABELS,
                            top_k_per_label=defaults.TOP_K_PER_LABEL, num_sdg=num_sdg, max_iterations=max_iterations)
    text = sdg.warning(f, str(pool))
    if text:
        warnings.append(text)
    return {"per_iteration": {k: v["per_iteration"] for k, v in f["labels"].items()},
            "pool_samples": {k: v["pool_samples"] for k, v in f["labels"].items()},
            "lasts_iterations": f["lasts_iterations"] if f["lasts_iterations"] is not None else "all",
            "at_most_per_iteration": {k: v["at_most_per_iteration"] for k, v in f["labels"].items()},
            "runs_short_at": f"iter{f['short'][0]['at_iteration']}" if f["short"] else None,
            "runs_short_without_priority_at": (f"iter{f['short_without_priority'][0]['at_iteration']}"
                                               if f["short_without_priority"] else None)}


PHASE_NAMES = {"all": "all three phases", "automl": "the AutoML search", "deft": "the DEFT loop"}


def _phase_sections(phases: str, sec5: dict, sec6: dict, sec7: dict) -> tuple[dict, dict, dict]:
    """Sections of phases the run does not include say so and nothing else (a DEFT-only run trains its
    own baseline from the workspace spec)."""
    absent = {"note": f"not part of this run (--phases {phases})"}
    if phases == "deft":
        sec6 = {**sec6, "baseline": "trained from the workspace spec (no Phase 1 AutoML in this run)"}
        return absent, sec6, absent
    if phases == "automl":
        return sec5, absent, absent
    return sec5, sec6, sec7


def run(workspace: str | Path, backend: str, max_iterations: int | None, kpi_target: str | None,
        trials: int = defaults.AUTOML_TRIALS, algorithm: str = "bayesian", num_sdg: int = defaults.NUM_SDG,
        top_k_per_target: int = defaults.TOP_K_PER_TARGET, min_similarity: float | None = None,
        budget: dict[str, Any] | None = None, phases: str = "all", holdout_csv: str | None = None) -> dict[str, Any]:
    ws = Workspace.at(workspace)
    deft = phases in ("all", "deft")
    hard: list[str] = []
    fixable: list[str] = []
    warnings: list[str] = []
    # 1. workspace / host / platform / network
    sec1 = {"workspace": str(ws.root), "host": socket.gethostname(), "platform": f"{platform.system()} "
            f"{platform.machine()}, {os.cpu_count()} CPUs", "backend": backend, "network": _network_mode()}
    if not ws.root.is_dir():
        hard.append(f"workspace {ws.root} does not exist")
    py_ready = interpreter.venv_python() and os.path.exists(interpreter.venv_python())
    missing_pkgs = [m for m in PACKAGES if importlib.util.find_spec(m) is None]
    if missing_pkgs or not py_ready:
        fixable.append(f"install the toolkit's Python environment: python3 {SCRIPTS_DIR / 'setup_env.py'}"
                       + (f" (missing: {', '.join(missing_pkgs)})" if missing_pkgs else ""))
    sec1["python_env"] = "ready" if not missing_pkgs else f"missing {', '.join(missing_pkgs)}"
    # 2. credentials (names only)
    sec2 = {name: ("SET" if os.environ.get(name) else "UNSET") for name in CREDENTIALS}
    # 3. images
    sec3 = _images(backend, hard, fixable)
    # 4. data
    spec_path = ws.baseline_spec
    lights, ext = [], ".png"
    if spec_path.is_file():
        try:
            spec = train_spec.load(spec_path)
            lights, ext = train_spec.lights(spec, spec_path), train_spec.image_ext(spec, spec_path)
        except UserError as exc:
            hard.append(str(exc))
    else:
        hard.append(f"train spec {spec_path} does not exist; put it there (the workspace layout) or pass "
                    f"--workspace the workspace that holds it")
    not_needed: list[str] = []  # problems of inputs only DEFT reads, in an AutoML-only run
    tables = [_csv_summary(n, p, ws.images, lights, ext, hard if deft or n in ("training set", "validation set")
                           else not_needed) for n, p in (
        ("training set", ws.training_csv), ("validation set", ws.validation_csv), ("KPI set", ws.kpi_csv),
        ("mining pool", ws.mining_pool_csv))]
    frames = {t["name"]: t.pop("_df") for t in tables if "_df" in t}
    leaks: dict[str, int] = {}
    held = [(str(p), frames[n]) for n, p in (("validation set", ws.validation_csv), ("KPI set", ws.kpi_csv)) if n in frames]
    for name in ("training set", "mining pool"):
        if name in frames and held and len(frames[name]):
            found = leakage.find_leaks(frames[name], None, held, ws.images)
            leaks[name] = int(len(found))
            if len(found) and name == "training set":
                hard.append(f"training set leaks {len(found)} sample(s) into validation/KPI, e.g. {found.iloc[0]['key']}")
    if deft and "mining pool" in frames and not len(frames["mining pool"]):
        hard.append(f"mining pool {ws.mining_pool_csv} is empty; DEFT needs real labelled images to mine from")
    if "training set" in frames:
        _training_rows(frames["training set"], ws, hard, warnings)
        bad = dataset_checks.noncanonical_labels(changenet_csv.read(ws.training_csv, canonicalize=False)["label"])
        if bad:
            fixable.append(f"{len(bad)} non-canonical label(s) in the training set (e.g. line {bad[0][0]}: "
                           f"{bad[0][1]!r}); assembly writes them canonically")
    sdg_facts = {"path": str(ws.sdg_pool)}
    if ws.sdg_pool.is_dir():
        try:
            files, facts = sdg.scan(ws.sdg_pool)
            sdg_facts.update(samples_per_label=sdg.samples_per_label(files), unpaired_files=facts["unpaired_files"])
        except UserError as exc:
            hard.append(str(exc))
    else:
        sdg_facts["status"] = "absent (SDG routes will be empty)"
    sec4 = {"csvs": tables, "leakage": leaks, "sdg_pool": sdg_facts, "lights": lights, "image_ext": ext}
    sec4["holdout"] = _holdout(holdout_csv, ws, frames, lights, ext, hard)
    if backend in ("docker", "slurm"):
        sec4["tao"] = tao_checks(ws, backend, hard, fixable)
    # 5-7. phase configs
    space = search_space.default_for_backend("local" if backend == "slurm" else backend)
    if spec_path.is_file():
        try:  # only the keys that take effect with this spec (e.g. momentum only with sgd)
            space = search_space.active(space, train_spec.load(spec_path))
        except UserError as exc:
            hard.append(str(exc))
    sec5 = {"algorithm": algorithm, "trials": trials, "metric": "FAR@100% recall on the validation set (minimize)",
            "search_space": sorted(space["params"]), "mode_collapse_guard": "a one-class model is infeasible"}
    if space.get("inactive"):
        sec5["not_searched"] = space["inactive"]
    contract = None
    if kpi_target:
        try:
            contract = metric_contract.parse_kpi_target(kpi_target)
        except UserError as exc:
            hard.append(str(exc))
    elif deft:
        hard.append("no KPI target: pass --kpi-target, e.g. 'FAR < 0.1% at Recall=100%'")
    if max_iterations is None:
        if deft:
            hard.append("max_iterations is required and never guessed: pass --max-iterations N")
    elif max_iterations < 1:
        hard.append(f"max_iterations must be >= 1, got {max_iterations}")
    sec6 = {"max_iterations": max_iterations, "kpi_contract": metric_contract.render(contract) if contract else None,
            "top_k_per_target": top_k_per_target, "min_similarity": min_similarity if min_similarity is not None else
            "the embedder's calibrated floor (" + ", ".join(f"{k} {v:g}" for k, v in defaults.MIN_SIMILARITY_BY_EMBEDDER.items())
            + ")", "num_sdg": num_sdg,
            "top_k_per_label": defaults.TOP_K_PER_LABEL, "baseline": "pre-seeded from the Phase 1 winner (no retrain)",
            "sdg_supply": _sdg_supply(frames.get("KPI set"), sdg_facts, num_sdg, max_iterations, ws.sdg_pool, warnings)
            if deft else None}
    sec7 = {"warm_start": "best DEFT iteration by the contract: its combined CSV and its checkpoint",
            "pinned": space.get("architecture", []), "learning_rate": "narrowed around the winner for fine-tuning",
            "regression_guard": "Phase 3 ships only if it beats every DEFT candidate on the contract"}
    warnings += resolution_warnings(contract, frames, sec4["holdout"].pop("_frame", None), deft)
    # 8. compute estimate
    sec8 = _compute(budget)
    sec5, sec6, sec7 = _phase_sections(phases, sec5, sec6, sec7)
    # 9. confirmation
    sec9 = (f"Reply 'go' to run {PHASE_NAMES[phases]} without further questions (only hard stops pause the run)."
            if not hard else "Fix the hard blockers above first; nothing has been started.")
    return {"sections": {"1_workspace": sec1, "2_credentials": sec2, "3_images": sec3, "4_data": sec4,
                         "5_phase1": sec5, "6_phase2": sec6, "7_phase3": sec7, "8_compute": sec8,
                         "9_confirm": sec9},
            "hard_blockers": hard, "fixable_blockers": fixable, "warnings": warnings, "ready": not hard}


def _training_rows(df: Any, ws: Workspace, hard: list, warnings: list) -> None:
    """NVIDIA's training-set rules: a sample labelled twice blocks; repeated rows are dropped (said so)."""
    keys = dataset_checks.training_keys(df, ws.images, ws.training_csv)
    conflicts = dataset_checks.label_conflicts(df, keys)
    if conflicts:
        hard.append(dataset_checks.conflict_text(ws.training_csv, conflicts, "training set"))
    repeats = int(keys.duplicated().sum())
    if repeats:
        warnings.append(f"training set {ws.training_csv}: {repeats} repeated row(s) (same input_path, golden_path, "
                        f"object_name); training keeps the first of each (a repeat is never a class weight)")


def _holdout(path: str | None, ws: Workspace, frames: dict[str, Any], lights: list[str], ext: str,
             hard: list) -> dict[str, Any]:
    """The sealed holdout (run_pipeline.py --holdout-csv): rows, missing files, samples shared with the sets the run
    trains or decides on (a hard blocker: its figure would not be unseen)."""
    if not path:
        return {"status": "none: the KPI figure will be measured on the set that chose the deliverable "
                          "(--holdout-csv CSV gives what to expect on the line)"}
    table = _csv_summary("holdout set", Path(path).expanduser().resolve(), ws.images, lights, ext, hard)
    df = table.pop("_df", None)
    if df is not None:
        against = [(str(p), frames[n]) for n, p in (("training set", ws.training_csv), ("validation set",
                   ws.validation_csv), ("KPI set", ws.kpi_csv)) if n in frames]
        found = leakage.find_leaks(df, path, against, ws.images) if against else []
        table["shared_with_run_sets"] = int(len(found))
        if len(found):
            hard.append(f"holdout set shares {len(found)} sample(s) with the sets the run trains or decides on, e.g. "
                        f"{found.iloc[0]['key']} (also in {found.iloc[0]['against']}); a holdout must be unseen")
        table["_frame"] = df
    return table


def resolution_warnings(contract: dict[str, Any] | None, frames: dict[str, Any], holdout: Any,
                        deft: bool) -> list[str]:
    """Sets too small to resolve the FAR target: AutoML ranks trials by validation FAR, DEFT stops on KPI FAR."""
    from tao_aoi.analysis import binomial

    if not contract or contract["name"] != "far_pct":
        return []
    out = []
    sets = [("validation set", frames.get("validation set"), "AutoML trials will tie at FAR 0% there and be told "
             "apart only by the tie-break rule"),
            ("KPI set", frames.get("KPI set") if deft else None, "the contract then means zero false alarms on it"),
            ("holdout set", holdout, "its FAR cannot confirm the target")]
    for name, df, why in sets:
        if df is None:
            continue
        n_pass = int((df["label"] == labels.PASS).sum())
        note = binomial.resolution_note(contract["operator"], contract["target"], n_pass, f"the {name}")
        if note:
            out.append(f"{note}: {why}")
    return out


# ------------------------------------------------------------------ docker / slurm (TAO) checks


def tao_checks(ws: Workspace, backend: str, hard: list, fixable: list) -> dict[str, Any]:
    """What would stop a TAO job after its container started: the train and inference specs the
    backend would write, checked against NVIDIA's schema and TAO's run-time rules (tao.prepare into a
    throw-away folder, so it is the very same check), spaces in job paths, labels TAO would misread,
    and, for docker (and slurm's container mode), a GPU runtime."""
    out: dict[str, Any] = {}
    for name, path in (("workspace", ws.root), ("results folder", ws.results)):
        if any(c.isspace() for c in str(path)):
            hard.append(f"{name} {path} has a space; TAO's entrypoint splits job paths on spaces: move it")
    out["specs"] = _tao_spec_check(ws, hard)
    bad_labels = 0
    for csv in (ws.training_csv, ws.validation_csv, ws.kpi_csv):
        if csv.is_file():
            try:
                raw = changenet_csv.read(csv, canonicalize=False)["label"]
            except UserError:
                continue
            bad_labels += int((raw != raw.map(labels.canonical_label)).sum())
    if bad_labels:
        out["labels"] = (f"{bad_labels} label(s) TAO would misread (it reads every label but 'PASS' as a defect): "
                         f"each job hands TAO a canonical copy of the CSV (<job>/inputs/)")
        fixable.append(out["labels"])
    container = backend == "docker" or os.environ.get("TAO_AOI_SLURM_CONTAINER", "").strip() == "1"
    out["gpu_runtime"] = (_docker_gpu(hard) if backend == "docker" else _slurm_gpu(hard) if container
                          else "not needed (slurm runs the local backend on the nodes)")
    return out


def _tao_spec_check(ws: Workspace, hard: list) -> str:
    """The train and inference job specs the backend would write, every problem of both at once: one
    hard blocker per problem, naming the workspace spec, the key and the fix (a problem both jobs
    share is named once)."""
    import tempfile

    from tao_aoi.backends import tao
    from tao_aoi.backends.base import InferJob, TrainJob
    from tao_aoi.tao import schema

    if not all(p.is_file() for p in (ws.baseline_spec, ws.training_csv, ws.validation_csv, ws.kpi_csv)):
        return "not checked (inputs missing)"
    found: dict[tuple[bool, str], list[str]] = {}  # (a spec problem?, the problem) -> the jobs that have it
    with tempfile.TemporaryDirectory(prefix="tao-aoi-preflight-") as tmp:
        job = Path(tmp)
        ckpt = job / "best.ckpt"
        ckpt.write_bytes(b"")
        for kind, what, spec in (
                ("train", "train job", TrainJob(ws.baseline_spec, ws.training_csv, ws.validation_csv, ws.images,
                                                job / "train")),
                ("infer", "inference job", InferJob(ws.baseline_spec, ckpt, ws.kpi_csv, ws.images, job / "infer"))):
            try:
                tao.prepare(kind, spec, job / kind, offline=True)
            except schema.SpecProblems as exc:
                job_spec = f"{job / kind / tao.SPEC_NAME}: "
                for line in exc.problems:
                    spec_line = line.startswith(job_spec)
                    found.setdefault((spec_line, line[len(job_spec):] if spec_line else line), []).append(what)
            except UserError as exc:
                found.setdefault((False, str(exc).replace(tmp, "<job>")), []).append(what)
    for (spec_line, problem), jobs in found.items():
        hard.append(f"{ws.baseline_spec} (in the {' and the '.join(jobs)}'s spec): {problem}" if spec_line
                    else f"{' and '.join(jobs)}: {problem}")
    if found:
        return f"REFUSED ({len(found)} problem(s), each listed under the hard blockers)"
    return f"train and inference specs accepted by NVIDIA's TAO {schema.tao_version()} schema and run-time rules"


def _docker_gpu(hard: list) -> str:
    """Docker's registered runtimes (``docker info``) or the NVIDIA container CLI, plus ``nvidia-smi -L``."""
    docker = shutil.which("docker")
    if docker is None:
        return "UNKNOWN (no docker client)"
    proc = subprocess.run([docker, "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True,
                          timeout=60)
    runtimes = proc.stdout if proc.returncode == 0 else ""
    toolkit = "nvidia" in runtimes or shutil.which("nvidia-container-cli") or shutil.which("nvidia-ctk")
    smi = shutil.which("nvidia-smi")
    gpus = None
    if smi:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
        gpus = sum(1 for ln in listed.stdout.splitlines() if ln.startswith("GPU ")) if listed.returncode == 0 else 0
    if not toolkit:
        hard.append("no GPU runtime for docker: `docker info` lists no nvidia runtime and neither nvidia-container-cli "
                    "nor nvidia-ctk is installed; install the NVIDIA Container Toolkit (or use --backend local)")
        return "MISSING (docker info: no nvidia runtime; no NVIDIA container toolkit)"
    if gpus == 0:
        hard.append("nvidia-smi -L lists no GPU on this host; TAO's containers need one")
        return "toolkit present, no GPU (nvidia-smi -L)"
    how = "docker info lists the nvidia runtime" if "nvidia" in runtimes else "NVIDIA container toolkit on PATH"
    return f"{how}; " + (f"{gpus} GPU(s) (nvidia-smi -L)" if gpus else "GPU count unknown (no nvidia-smi here)")


def _slurm_gpu(hard: list) -> str:
    """Container jobs need GPUs on the nodes: a gres from TAO_AOI_SLURM_GRES or nodes with gpu gres."""
    if os.environ.get("TAO_AOI_SLURM_GRES", "").strip():
        return f"TAO_AOI_SLURM_GRES={os.environ['TAO_AOI_SLURM_GRES']}"
    sinfo = shutil.which("sinfo")
    gres = subprocess.run([sinfo, "-h", "-o", "%G"], capture_output=True, text=True, timeout=60).stdout if sinfo else ""
    if "gpu" in gres:
        return f"nodes with gres {' '.join(sorted(set(gres.split())))} (sinfo); set TAO_AOI_SLURM_GRES=gpu:1"
    hard.append("slurm container jobs run TAO, which needs a GPU, but sinfo shows no gpu gres and TAO_AOI_SLURM_GRES "
                "is unset; set TAO_AOI_SLURM_GRES=gpu:1 on a cluster with GPUs")
    return "MISSING (no gpu gres)"


def require_ready(report: dict[str, Any]) -> None:
    """Refuse to start on hard blockers: one line naming each (run_pipeline.py checks before Phase 1)."""
    hard = report["hard_blockers"]
    if hard:
        raise UserError(f"pre-flight: {len(hard)} hard blocker(s), nothing was started: " + " | ".join(hard))


def _compute(budget: dict[str, Any] | None) -> dict[str, Any]:
    """Section 8 from run_cost.plan: the estimate per phase and the unit costs it rests on."""
    if budget is None:
        return {"source": "not measured: pass --dry-run (times training on this host), --epoch-sec S "
                          "(a known epoch time, docker/slurm) or --time-limit (e.g. 8h)"}
    from tao_aoi.pipeline import compute_budget

    e = budget["estimate"]
    out = {"summary": compute_budget.summary_line(budget), "total": compute_budget.human(e["total_sec"])}
    out.update({k: e[k] for k in ("phase1_sec", "deft_sec", "phase3_sec", "total_sec", "per_trial_sec")})
    if e.get("per_iteration_sec"):
        out["per_iteration_sec"] = e["per_iteration_sec"]
    out["pruned_trials"] = e["pruned_trials"]
    out["dry_run_sec"] = budget["dry_run_sec"]
    return out


def _value(v: Any) -> Any:
    """Numbers as people read them (4 significant digits); --json keeps full precision."""
    return fmt.num(v) if isinstance(v, float) else v


def render(report: dict[str, Any]) -> str:
    s = report["sections"]
    out = ["PRE-FLIGHT SUMMARY", "", "1. Workspace / host / platform / network"]
    out += [f"   {k}: {_value(v)}" for k, v in s["1_workspace"].items()]
    out += ["2. Credentials (names only)", "   " + ", ".join(f"{k}={v}" for k, v in s["2_credentials"].items())]
    out += ["3. Container images"] + [f"   {r['key']}: {r['image']} {r['status']}" for r in s["3_images"]]
    out += ["4. Data (samples per label, a CSV row each with every light; missing files; leakage)"]
    for t in s["4_data"]["csvs"]:
        if t.get("rows") is None:
            out.append(f"   {t['name']}: UNREADABLE ({t['path']})")
        else:
            labels = ", ".join(f"{k} {v}" for k, v in t["labels"].items())
            out.append(f"   {t['name']}: {t['rows']} samples ({labels}); missing files {t['missing_files']}")
    out.append(f"   leakage into validation/KPI: {s['4_data']['leakage'] or 'not checked'}")
    h = s["4_data"].get("holdout") or {}
    if "status" in h:
        out.append(f"   holdout: {h['status']}")
    elif h.get("rows") is not None:
        labels_ = ", ".join(f"{k} {v}" for k, v in h["labels"].items())
        out.append(f"   holdout set: {h['rows']} rows ({labels_}); missing files {h['missing_files']}; samples shared "
                   f"with training/validation/KPI {h.get('shared_with_run_sets', 'not checked')}")
    out.append(f"   SDG pool: {s['4_data']['sdg_pool']}")
    for key, value in s["4_data"].get("tao", {}).items():
        out.append(f"   TAO {key.replace('_', ' ')}: {value}")
    out += ["5. Phase 1 (AutoML)"] + [f"   {k}: {_value(v)}" for k, v in s["5_phase1"].items()]
    out += ["6. Phase 2 (DEFT)"] + [f"   {k}: {_value(v)}" for k, v in s["6_phase2"].items()]
    out += ["7. Phase 3 (AutoML refinement)"] + [f"   {k}: {_value(v)}" for k, v in s["7_phase3"].items()]
    out += ["8. Compute estimate"] + [f"   {k}: {_value(v)}" for k, v in s["8_compute"].items()]
    if report["hard_blockers"]:
        out += ["", "HARD BLOCKERS (fix before running):"] + [f"   - {b}" for b in report["hard_blockers"]]
    if report.get("warnings"):
        out += ["", "WARNINGS (the run can start; read these first):"] + [f"   - {w}" for w in report["warnings"]]
    if report["fixable_blockers"]:
        out += ["", "Fixed by the run after approval:"] + [f"   - {b}" for b in report["fixable_blockers"]]
    out += ["", f"9. {s['9_confirm']}"]
    return "\n".join(out)
