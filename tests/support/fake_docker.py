"""A stand-in for the ``docker`` client that behaves like a TAO 7.1.0 container would.

The fixture in tests/test_docker_backend.py installs it as ``docker`` on PATH (with this
interpreter in its shebang). It logs every call to ``$FAKE_DOCKER_DIR/calls.jsonl`` and enforces
what a real container run needs: same-path mounts covering every path in the spec, writes only under
read-write mounts, the image present when ``--pull=never``, a ``--gpus device=N`` the host has. Then
it does what TAO does, checked from the outside (it never imports tao_aoi):

- the spec is merged into NVIDIA's own schema from the ``nvidia-tao-core`` / ``nvidia-tao-ds`` wheels
  exactly as TAO's hydra runner merges it; a refused key or type exits 1 before anything is written;
- TAO's run-time asserts (results_dir, loss vs difference module, class weights, square ViT input,
  intervals vs epochs, loader rows vs batch size, missing images) end the run with a FAILURE line;
  a label TAO would misread (``pass``: TAO computes ``label != 'PASS'``) fails too, so a test sees
  what TAO would get wrong silently;
- it writes what TAO writes: ``experiment.yaml``, ``status.json`` lines with TAO's KPI keys and no
  SUCCESS (a good run ends RUNNING "Train finished successfully."), ``model_epoch_<EEE>_step_<SSS>.pth``
  every checkpoint_interval, ``changenet_model_classify_latest.pth`` (a symlink), ``model_best_<EEE>.pth``
  only with ``train.checkpointer.enable_topk``, ``inference.csv`` = input columns + ``siamese_score``,
  evaluate KPIs; the embedder writes only its output parquet.

The network: ``FAKE_TAO_NETWORK=local`` runs this project's own local backend CLI as the network
(train.py / infer.py --backend local on the same spec, a subprocess), so scores come from the
images and DEFT on docker can improve; the default ``hash`` scores each row by a hash of its path
(for workspaces whose images are placeholder bytes). Never from the label.

``FAKE_TAO_MODE``: ok | exit3 | failure_status | no_ckpt | no_score | hang (until ``docker kill``).
``FAKE_TAO_EPOCH_SEC``: seconds per epoch in hash mode (to watch a run progress).

Fault injection (infrastructure faults; ``docker run`` calls are counted from 1 in ``runs.count``):
``FAKE_TAO_KILL_RUNS=3,7`` kills those runs' containers mid-run as the OOM killer would: TAO has
started (experiment.yaml, its first status lines, a partial epoch checkpoint for a train) and the
client exits 137 with nothing more; ``FAKE_DOCKER_DAEMON_DOWN_RUNS=2`` makes those ``docker run``
calls fail as with a stopped daemon (exit 125, "Cannot connect to the Docker daemon").
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_DIR"])
MODE = os.environ.get("FAKE_TAO_MODE", "ok")
NETWORK = os.environ.get("FAKE_TAO_NETWORK", "hash")
PLUGIN = Path(os.environ.get("FAKE_TAO_PLUGIN", "."))  # the plugin checkout (its local backend is the network)
CHECKPOINT_NAME = "changenet_model_classify"


class TaoFailure(Exception):
    """A run-time error TAO logs as FAILURE before exiting 1."""


def die(code: int, msg: str) -> None:
    print(f"docker: {msg}", file=sys.stderr)
    sys.exit(code)


def hash_score(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def parse_run(args: list[str]) -> dict:
    opts = {"flags": [], "mounts": [], "env": [], "name": None, "user": None, "gpus": None}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--name", "-v", "-e", "--user", "--gpus"):
            key = {"--name": "name", "-v": "mounts", "-e": "env", "--user": "user", "--gpus": "gpus"}[a]
            if isinstance(opts[key], list):
                opts[key].append(args[i + 1])
            else:
                opts[key] = args[i + 1]
            i += 2
        elif a.startswith("--gpus="):
            opts["gpus"] = a.split("=", 1)[1]
            i += 1
        elif a.startswith("-"):
            opts["flags"].append(a)
            i += 1
        else:
            opts["image"], opts["command"] = a, args[i + 1:]
            return opts
    die(125, "no image given")
    return opts


def check_gpus(value: str | None) -> None:
    host = int(os.environ.get("FAKE_DOCKER_GPUS", "8"))
    if value is None or value == "all":
        return
    spec = value.strip('"')
    if not spec.startswith("device="):
        die(125, f"invalid --gpus {value!r}")
    for dev in spec[len("device="):].split(","):
        if not dev.isdigit() or int(dev) >= host:
            die(125, f"could not select device driver with capabilities: [[gpu]]: unknown device {dev}")


def inside(path: str, mounts: list[tuple[str, bool]], write: bool = False) -> bool:
    p = os.path.normpath(path)
    best = None
    for host, rw in mounts:
        if p == host or p.startswith(host.rstrip("/") + "/"):
            if best is None or len(host) > len(best[0]):
                best = (host, rw)
    return best is not None and (best[1] or not write)


def spec_paths(spec: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in spec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += spec_paths(v, key + ".")
        elif isinstance(v, str) and v.startswith("/"):
            out.append((key, v))
    return out


class Status:
    """TAO's status.json: JSON lines with date, time, status, verbosity, message and the last kpi."""

    def __init__(self, path: Path) -> None:
        self.path, self.kpi = path, {}

    def write(self, message: str, status: str = "RUNNING", **data) -> None:
        now = datetime.now()
        line = {**data, "date": f"{now.month}/{now.day}/{now.year}", "time": now.strftime("%H:%M:%S"),
                "status": status, "verbosity": "INFO", "message": message}
        if self.kpi:
            line["kpi"] = self.kpi
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")


# ------------------------------------------------------------------ TAO's config handling


def load_merged(spec_file: str, schema: str):
    """Hydra's schema matching: OmegaConf.merge(structured(schema), the YAML file)."""
    from omegaconf import OmegaConf

    if schema == "changenet":
        from nvidia_tao_core.config.visual_changenet.default_config import ExperimentConfig as cls
    else:
        from nvidia_tao_ds.config.mining.embedding.image_embeddings import ImageEmbeddingsConfig as cls
    try:
        return OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(spec_file))
    except Exception as exc:  # noqa: BLE001 - hydra wraps whatever OmegaConf raises
        print(f"Error merging '{os.path.basename(spec_file)}' with schema\n{exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


def model_input(c: dict) -> tuple[int, int]:
    ds = c["dataset"]["classify"]
    h, w, n = ds["image_height"], ds["image_width"], ds["num_input"]
    if ds["concat_type"] == "grid":
        return h * ds["grid_map"]["y"], w * ds["grid_map"]["x"]
    return (h, w * n) if ds["concat_type"] == "linear" else (h, w)


def build_model_checks(c: dict, action: str) -> None:
    """The asserts TAO's model and Lightning module raise (changenet.py, cn_pl_model.py)."""
    m, ds = c["model"], c["dataset"]["classify"]
    diff = m["classify"]["difference_module"]
    if diff == "learnable" and len(c["train"]["classify"]["cls_weight"]) != ds["num_classes"]:
        raise TaoFailure(f"Class weights must be provided for each class: received "
                         f"{len(c['train']['classify']['cls_weight'])} weights for {ds['num_classes']} classes")
    backbone = m["backbone"]["type"]
    h, w = model_input(c)
    if "fan" in backbone:
        assert h % 16 == 0 and w % 16 == 0, "Input image size must be a multiple of 16"
    elif "radio" in backbone or "vit" in backbone:
        assert h == w, "ViT Backbones only support square input image where input_width == input_height"
        if ds["concat_type"] == "grid" and ds["num_input"] % 2:  # odd: lights stacked top to bottom
            assert (ds["image_height"] * ds["num_input"], ds["image_width"]) == (h, w), \
                f"{backbone} backbone only supports square input images"
    else:
        raise TaoFailure(f"Backbone name [{backbone}] is not supported")
    if action == "train":
        expected = {"learnable": "ce", "euclidean": "contrastive"}[diff]
        if c["train"]["classify"]["loss"] != expected:
            raise TaoFailure(f"difference_module='{diff}' requires train.classify.loss='{expected}', "
                             f"got '{c['train']['classify']['loss']}'")
        t = c["train"]
        assert t["checkpoint_interval"] <= t["num_epochs"], "Checkpoint interval > Number of epochs"
        assert t["validation_interval"] <= t["num_epochs"], "Validation interval > Number of epochs"


def read_dataset(c: dict, which: str, lights: list[str], ext: str):
    """The data module: every image must open, and the loader must fill one batch."""
    import pandas as pd

    ds = c["dataset"]["classify"]
    entry = ds[which]
    df = pd.read_csv(entry["csv_path"], dtype=str, keep_default_na=False)
    for col in ("input_path", "golden_path", "label", "object_name"):
        if col not in df.columns:
            raise TaoFailure(f"KeyError: '{col}' in {entry['csv_path']}")
    misread = df.loc[(df["label"] != "PASS") & (df["label"].str.strip().str.upper() == "PASS"), "label"]
    if len(misread):
        raise TaoFailure(f"fake TAO: {len(misread)} row(s) of {entry['csv_path']} are labelled "
                         f"{misread.iloc[0]!r}; TAO reads every label other than 'PASS' as a defect")
    for r in df.itertuples():
        for col in ("input_path", "golden_path"):
            for light in lights:
                f = os.path.join(entry["images_dir"], getattr(r, col), f"{r.object_name}_{light}{ext}")
                if not os.path.isfile(f):
                    raise FileNotFoundError(f"[Errno 2] No such file or directory: '{f}'")
    gpus = 1
    if len(df) < ds["batch_size"] * gpus:
        raise TaoFailure(f"Dataset size ({len(df)}) is smaller than the total batch size "
                         f"({ds['batch_size'] * gpus}). Not enough data for {which}.")
    return df


def results_dir(c: dict, action: str) -> Path:
    if c[action].get("results_dir"):
        return Path(c[action]["results_dir"])
    if c.get("results_dir"):
        return Path(c["results_dir"]) / action
    raise TaoFailure("You need to set at least one of following fields: results_dir, {mode}.results_dir")


def lights_of(c: dict) -> list[str]:
    return list(c["dataset"]["classify"]["input_map"])  # YAML order, as TAO reads it


# ------------------------------------------------------------------ the network


def local_cli(script: str, *args: str) -> None:
    """The project's own local backend CLI, as this fake's network (subprocess; see module doc)."""
    proc = subprocess.run([sys.executable, str(PLUGIN / "scripts" / script), "--backend", "local", *map(str, args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise TaoFailure(f"network failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def scores_for(c: dict, df, ckpt: str, spec_file: str, images_dir: str, csv: str) -> list[float]:
    if NETWORK != "local":
        return [hash_score(f"{r.input_path}/{r.object_name}") for r in df.itertuples()]
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        local_cli("infer.py", "--spec", spec_file, "--checkpoint", ckpt, "--csv", csv, "--images-root", images_dir,
                  "--output-dir", tmp)
        out = pd.read_csv(Path(tmp) / "inference.csv", dtype=str, keep_default_na=False)
    return [float(v) for v in out["siamese_score"]]


def epochs_of(c: dict, spec_file: str, out: Path):
    """Per-epoch (train kpi, val kpi) and the final weights' bytes, from the network."""
    t, ds = c["train"], c["dataset"]["classify"]
    n = t["num_epochs"]
    if NETWORK != "local":
        for e in range(n):
            time.sleep(float(os.environ.get("FAKE_TAO_EPOCH_SEC", "0")))
            yield ({"train_loss": 1.0 / (e + 1), "train_acc": 0.5, "train_fpr": 0.5},
                   {"val_loss": 1.0 / (e + 1) if e < n - 1 else 1.0 / max(1, n - 1) + 0.05,  # last epoch worse
                    "val_acc": 0.6, "val_fpr": 0.4},
                   b"PK-fake-epoch-%d" % e)
        return
    net = out / ".network"
    args = ["--spec", spec_file, "--train-csv", ds["train_dataset"]["csv_path"],
            "--val-csv", ds["validation_dataset"]["csv_path"], "--images-root", ds["train_dataset"]["images_dir"],
            "--output-dir", net]
    if t.get("pretrained_model_path"):
        args += ["--init-checkpoint", t["pretrained_model_path"]]
    local_cli("train.py", *args)
    weights = (net / "best.ckpt").read_bytes()
    for line in (net / "status.json").read_text().splitlines():
        obj = json.loads(line)
        if obj.get("status") == "RUNNING" and "kpi" in obj:
            k = obj["kpi"]
            yield ({key: k[key] for key in ("train_loss", "train_acc", "train_fpr")},
                   {key: k[key] for key in ("val_loss", "val_acc", "val_fpr")}, weights)


# ------------------------------------------------------------------ actions


def tao_train(c: dict, spec_file: str, status: Status, out: Path) -> None:
    build_model_checks(c, "train")
    lights, ext = lights_of(c), c["dataset"]["classify"]["image_ext"]
    train_df = read_dataset(c, "train_dataset", lights, ext)
    read_dataset(c, "validation_dataset", lights, ext)
    t = c["train"]
    if t.get("pretrained_model_path") and not os.path.isfile(t["pretrained_model_path"]):
        raise FileNotFoundError(t["pretrained_model_path"])
    status.write("Starting Training Loop.", status="STARTED")
    topk = t["checkpointer"]
    best: tuple[float, int] | None = None
    steps_per_epoch = -(-len(train_df) // c["dataset"]["classify"]["batch_size"])
    n = t["num_epochs"]
    last = None
    for e, (train_kpi, val_kpi, weights) in enumerate(epochs_of(c, spec_file, out)):
        print(f"Epoch {e}: training ...", flush=True)
        step = (e + 1) * steps_per_epoch
        if (e + 1) % t["validation_interval"] == 0:
            status.kpi = val_kpi
            status.write("Eval metrics generated.")
        status.write("Training loop in progress", epoch=e, step=step, max_epoch=n - 1,
                     max_step=n * steps_per_epoch, time_per_epoch="0:00:01", eta="0:00:01")
        status.kpi = train_kpi
        status.write("Train metrics generated.")
        if MODE == "no_ckpt":
            continue
        if (e + 1) % t["checkpoint_interval"] == 0 or e == n - 1:
            last = out / f"model_epoch_{e:03d}_step_{step:05d}.pth"
            last.write_bytes(weights)
            link = out / f"{CHECKPOINT_NAME}_latest.pth"
            link.unlink(missing_ok=True)
            link.symlink_to(last.name)
        if topk["enable_topk"] and (e + 1) % t["validation_interval"] == 0:
            value = val_kpi[topk["monitor"]]
            value = value if topk["mode"] == "min" else -value
            if best is None or value < best[0]:
                folder = Path(topk["dirpath"] or out)
                for old in folder.glob("model_best_*.pth"):
                    old.unlink()
                best = (value, e)
                (folder / (topk["filename"].format(epoch=e) + ".pth")).write_bytes(weights)
    status.kpi = {}
    status.write("Training loop complete.")
    if MODE == "failure_status":
        status.write("CUDA error: out of memory", status="FAILURE")
        return  # TAO's workflow logs some failures and still exits 0
    status.write("Train finished successfully.")


def tao_infer(c: dict, action: str, spec_file: str, status: Status, out: Path) -> None:

    build_model_checks(c, action)
    block = c[action]
    if block["checkpoint"] in ("", "???") or not Path(block["checkpoint"]).is_file():
        raise FileNotFoundError(f"checkpoint {block['checkpoint']} missing")
    which = "infer_dataset" if action == "inference" else "test_dataset"
    entry = c["dataset"]["classify"][which]
    df = read_dataset(c, which, lights_of(c), c["dataset"]["classify"]["image_ext"])
    status.write(f"Loading checkpoint: {block['checkpoint']}")
    scores = scores_for(c, df, block["checkpoint"], spec_file, entry["images_dir"], entry["csv_path"])
    if action == "inference":
        df["siamese_score"] = scores
        if MODE == "no_score":
            df = df.drop(columns=["siamese_score"])
        df.to_csv(out / "inference.csv", index=False)
    else:
        margin = c["model"]["classify"]["eval_margin"]
        if c["model"]["classify"]["difference_module"] == "learnable" and margin > 1:
            margin = 0.5
        pred = [s > margin for s in scores]
        truth = [lab != "PASS" for lab in df["label"]]
        n_pass = max(1, sum(not t for t in truth))
        n_fail = max(1, sum(truth))
        status.kpi = {"test_acc": sum(p == t for p, t in zip(pred, truth)) / len(df),
                      "test_fpr": sum(p and not t for p, t in zip(pred, truth)) / n_pass,
                      "test_fnr": sum(t and not p for p, t in zip(pred, truth)) / n_fail,
                      "defect_acc": sum(p and t for p, t in zip(pred, truth)) / n_fail}
        status.write("Evaluation metrics generated.")


def tao_embed(c: dict) -> None:
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(c["input_parquet"])
    vectors = []
    for f in df["filepath"]:
        try:
            from PIL import Image

            with Image.open(f) as im:
                v = np.asarray(im.convert("L").resize((8, 8)), dtype=np.float32).ravel()
            v = v - v.mean()
        except Exception:  # noqa: BLE001 - placeholder bytes in unit-test workspaces
            v = np.array([hash_score(f"{f}#{i}") for i in range(64)], dtype=np.float32)
        vectors.append(v.tolist())
    df["embedding"] = vectors
    df[["filepath", "embedding"]].to_parquet(c["output_parquet"], index=False)


def visual_changenet(action: str, spec_file: str) -> int:
    cfg = load_merged(spec_file, "changenet")
    c = plain(cfg)
    try:
        out = results_dir(c, action)
    except TaoFailure as exc:
        print(f"ValueError: {exc}", flush=True)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    from omegaconf import OmegaConf

    OmegaConf.save(cfg, out / "experiment.yaml")
    status = Status(out / "status.json")
    mode = {"inference": "inference", "evaluate": "evaluate", "train": "train"}[action]
    status.write(f"Starting Visual ChangeNet {mode}.", status="STARTED")
    try:
        if action == "train":
            tao_train(c, spec_file, status, out)
            return 0
        tao_infer(c, action, spec_file, status, out)
    except (TaoFailure, AssertionError, FileNotFoundError) as exc:
        status.kpi = {}
        status.write(f"Parameter validation error: {exc}", status="FAILURE")
        print(f"Error: {exc}", flush=True)
        return 1
    status.write(f"{mode.capitalize()} finished successfully.")
    return 0


def read_by(action: str, key: str) -> bool:
    """Does this TAO action open the path under ``key``? (train reads train/validation data and its
    checkpoints; evaluate/inference their own dataset and checkpoint; every action builds the model.)"""
    ds = "dataset.classify."
    own = {"train": (f"{ds}train_dataset.", f"{ds}validation_dataset.", "train."),
           "evaluate": (f"{ds}test_dataset.", "evaluate."), "inference": (f"{ds}infer_dataset.", "inference.")}
    if action == "embed" or not key.startswith((ds, "train.", "evaluate.", "inference.")):
        return True
    return key.startswith(own[action])


def run_number() -> int:
    """This ``docker run`` call's number (1, 2, ...), counted under a lock (workers run in parallel)."""
    import fcntl

    with open(STATE / "runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = STATE / "runs.count"
        n = int(counter.read_text() or 0) + 1 if counter.exists() else 1
        counter.write_text(str(n))
    return n


def injected(env: str, number: int) -> bool:
    return str(number) in {x.strip() for x in os.environ.get(env, "").split(",")}


def killed_mid_run(cmd: list[str], spec_file: str) -> int:
    """What a container killed mid-run leaves: TAO's start, a partial epoch checkpoint; exit 137."""
    if cmd[:1] == ["visual_changenet"]:
        cfg = load_merged(spec_file, "changenet")
        c = plain(cfg)
        action = cmd[1]
        try:
            out = results_dir(c, action)
        except TaoFailure:
            return 137
        out.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        OmegaConf.save(cfg, out / "experiment.yaml")
        status = Status(out / "status.json")
        status.write(f"Starting Visual ChangeNet {action}.", status="STARTED")
        if action == "train":
            status.write("Starting Training Loop.", status="STARTED")
            (out / "model_epoch_000_step_00001.pth").write_bytes(b"partial")  # torn by the kill
    return 137


def run(args: list[str]) -> int:
    number = run_number()
    if injected("FAKE_DOCKER_DAEMON_DOWN_RUNS", number):
        die(125, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    o = parse_run(args)
    check_gpus(o["gpus"])
    name = o["name"] or "anon"
    mounts = []
    for m in o["mounts"]:
        parts = m.split(":")
        if len(parts) not in (2, 3) or parts[0] != parts[1] or not os.path.isabs(parts[0]):
            die(125, f"mount {m!r} is not host:container at the same absolute path")
        if not os.path.exists(parts[0]):
            die(125, f"invalid mount config: bind source path does not exist: {parts[0]}")
        mounts.append((os.path.normpath(parts[0]), len(parts) == 2 or parts[2] != "ro"))
    images = STATE / "images.txt"
    if "--pull=never" in o["flags"] and images.exists() and o["image"] not in images.read_text().split():
        die(125, f"Unable to find image '{o['image']}' locally")
    cmd = o["command"]
    spec_file = cmd[cmd.index("-e") + 1]
    if not inside(spec_file, mounts):
        die(1, f"spec {spec_file} is not visible in the container")
    import yaml

    spec = yaml.safe_load(Path(spec_file).read_text())
    action = cmd[1] if cmd[:1] == ["visual_changenet"] else "embed"
    for key, value in spec_paths(spec):
        if not read_by(action, key):
            continue
        writes = key.endswith(("results_dir", "dirpath")) or key == "output_parquet"
        if not inside(value, mounts, write=writes):
            print(f"TAO: {key}={value} is not {'writable' if writes else 'visible'} in the container", flush=True)
            return 1
    (STATE / f"{name}.state").write_text(json.dumps({"Status": "running", "ExitCode": 0, "Running": True}))
    try:
        if injected("FAKE_TAO_KILL_RUNS", number):
            return killed_mid_run(cmd, spec_file)
        if MODE == "hang":
            while not (STATE / f"{name}.kill").exists():
                time.sleep(0.05)
            return 137
        if MODE == "exit3":
            print("Traceback (most recent call last):\nRuntimeError: NCCL init failed", flush=True)
            return 3
        if cmd[:1] == ["visual_changenet"] and cmd[1] in ("train", "inference", "evaluate"):
            if not o["image"].endswith("-pyt"):
                die(127, f"visual_changenet: command not found in {o['image']}")
            return visual_changenet(cmd[1], spec_file)
        if cmd[:2] == ["embedding", "image_embeddings"]:
            tao_embed(plain(load_merged(spec_file, "embedding")))
            return 0
        die(127, f"unknown command {cmd}")
    finally:
        (STATE / f"{name}.state").unlink(missing_ok=True)  # --rm: the container is gone
    return 0


def main() -> int:
    args = sys.argv[1:]
    with open(STATE / "calls.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"argv": args, "hf_token_in_env": bool(os.environ.get("HF_TOKEN"))}) + "\n")
    if not args:
        die(1, "usage")
    if args[0] == "run":
        return run(args[1:])
    if args[0] == "info":
        runtimes = os.environ.get("FAKE_DOCKER_RUNTIMES", "io.containerd.runc.v2,nvidia,runc").split(",")
        print(json.dumps({r: {"path": r} for r in runtimes if r}))
        return 0
    if args[0] == "image" and args[1:2] == ["inspect"]:
        images = STATE / "images.txt"
        return 0 if not images.exists() or args[-1] in images.read_text().split() else 1
    if args[0] == "inspect":
        st = STATE / f"{args[-1]}.state"
        if not st.exists():
            die(1, f"Error: No such container: {args[-1]}")
        print(st.read_text())
        return 0
    if args[0] == "kill":
        if not (STATE / f"{args[-1]}.state").exists():
            die(1, f"Error response from daemon: No such container: {args[-1]}")
        (STATE / f"{args[-1]}.kill").touch()
        print(args[-1])
        return 0
    die(1, f"fake docker: unsupported {args[0]}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
