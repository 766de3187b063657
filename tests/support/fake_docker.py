"""A stand-in for the ``docker`` client that behaves like a TAO container would.

The fixture in tests/test_docker_backend.py installs it as ``docker`` on PATH (with this
interpreter in its shebang). It logs every call to ``$FAKE_DOCKER_DIR/calls.jsonl``, enforces what a
real container run needs (same-path mounts covering every path in the spec, writes only under
read-write mounts, the image present when ``--pull=never``), then writes the files TAO writes:
status.json lines, ``model_epoch_<EEE>_step_<SSS>.pth`` + ``changenet_model_classify_latest.pth``,
``inference.csv`` with ``siamese_score``, embedding parquets.

``FAKE_TAO_MODE``: ok | exit3 | failure_status | no_ckpt | no_score | hang (until ``docker kill``).
Deliberately independent of tao_aoi: it checks the backend from the outside.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_DIR"])
MODE = os.environ.get("FAKE_TAO_MODE", "ok")


def die(code: int, msg: str) -> None:
    print(f"docker: {msg}", file=sys.stderr)
    sys.exit(code)


def score(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def parse_run(args: list[str]) -> dict:
    opts = {"flags": [], "mounts": [], "env": [], "name": None, "user": None}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--name", "-v", "-e", "--user"):
            key = {"--name": "name", "-v": "mounts", "-e": "env", "--user": "user"}[a]
            if isinstance(opts[key], list):
                opts[key].append(args[i + 1])
            else:
                opts[key] = args[i + 1]
            i += 2
        elif a.startswith("-"):
            opts["flags"].append(a)
            i += 1
        else:
            opts["image"], opts["command"] = a, args[i + 1:]
            return opts
    die(125, "no image given")
    return opts


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


def status_line(path: Path, **obj) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj) + "\n")


def tao_train(spec: dict) -> int:
    out = Path(spec["train"]["results_dir"])
    status = out / "status.json"
    status_line(status, status="STARTED", message="Starting Visual ChangeNet train")
    epochs = min(int(spec.get("train", {}).get("num_epochs", 2)), 3)
    for e in range(epochs):
        print(f"Epoch {e}: training ...", flush=True)
        status_line(status, epoch=e, max_epoch=epochs, status="RUNNING",
                    kpi={"val_loss": 1.0 / (e + 1), "val_far": 50.0 / (e + 1)})
        if MODE != "no_ckpt":
            (out / f"model_epoch_{e:03d}_step_{(e + 1) * 10:05d}.pth").write_bytes(b"PK-fake-epoch-%d" % e)
    if MODE != "no_ckpt":
        (out / "changenet_model_classify_latest.pth").write_bytes(b"PK-fake-latest-%d" % (epochs - 1))
    if MODE == "failure_status":
        status_line(status, status="FAILURE", message="CUDA error: out of memory")
        return 0  # TAO's launcher sometimes exits 0 after a logged failure
    status_line(status, status="SUCCESS", message="Train finished successfully.")
    return 0


def tao_infer(spec: dict, action: str) -> int:
    import pandas as pd

    block = spec[action]
    out = Path(block["results_dir"])
    ds = spec["dataset"]["classify"]["infer_dataset" if action == "inference" else "test_dataset"]
    if not Path(block["checkpoint"]).is_file():
        status_line(out / "status.json", status="FAILURE", message=f"checkpoint {block['checkpoint']} missing")
        return 1
    df = pd.read_csv(ds["csv_path"], dtype=str, keep_default_na=False)
    status_line(out / "status.json", status="STARTED", message=f"Starting Visual ChangeNet {action}")
    if action == "inference":
        df["siamese_score"] = [score(f"{r.input_path}/{r.object_name}") for r in df.itertuples()]
        if MODE == "no_score":
            df = df.drop(columns=["siamese_score"])
        df.to_csv(out / "inference.csv", index=False)
    status_line(out / "status.json", status="SUCCESS", message=f"{action} finished successfully.",
                kpi={"test_acc": 0.9})
    return 0


def tao_embed(spec: dict) -> int:
    import pandas as pd

    df = pd.read_parquet(spec["input_parquet"])
    df["embedding"] = [[score(f"{f}#{i}") for i in range(8)] for f in df["filepath"]]
    df[["filepath", "embedding"]].to_parquet(spec["output_parquet"], index=False)
    status_line(Path(spec["results_dir"]) / "status.json", status="SUCCESS", message="Embedding done")
    return 0


def run(args: list[str]) -> int:
    import yaml

    o = parse_run(args)
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
    spec = yaml.safe_load(Path(spec_file).read_text())
    for key, value in spec_paths(spec):
        writes = key.endswith("results_dir") or key == "output_parquet"
        if not inside(value, mounts, write=writes):
            print(f"TAO: {key}={value} is not {'writable' if writes else 'visible'} in the container", flush=True)
            return 1
    (STATE / f"{name}.state").write_text(json.dumps({"Status": "running", "ExitCode": 0, "Running": True}))
    try:
        if MODE == "hang":
            while not (STATE / f"{name}.kill").exists():
                time.sleep(0.05)
            return 137
        if MODE == "exit3":
            print("Traceback (most recent call last):\nRuntimeError: NCCL init failed", flush=True)
            return 3
        if cmd[:2] == ["visual_changenet", "train"]:
            return tao_train(spec)
        if cmd[:1] == ["visual_changenet"] and cmd[1] in ("inference", "evaluate"):
            return tao_infer(spec, cmd[1])
        if cmd[:2] == ["embedding", "image_embeddings"]:
            return tao_embed(spec)
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
