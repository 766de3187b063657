"""Runs for the report tests and bench: the real state machine with realistic stage outputs.

Like tests/deft_driver.py, every step asks the transition table what is next and commits through
commit_stage.main with the argv stage_plan produces; but the stage files are the real thing where
the library has landed (evaluation.analyze, gap_analysis.run with thumbnails, routing.run) and
follow the documented formats elsewhere (SDG allocation, mining, assembly, AutoML best_rec.json).
The RCA report's TODOs are filled in as the agent would. The run can be stopped after any stage,
failed at any stage, or finished with Phase 3.

Synthetic KPI: FAR at recall 100% is exact by construction, 8.5% -> 4.25% -> 1.75% -> 1.25% (the
2% default target is met at iter2); Phase 3 regresses to 2.25%. n_pass must be a multiple of 400.
TODO(issue 7): once scripts/make_demo_workspace.py + run_pipeline.py land, test_report's
real-pipeline test renders a genuine tiny run; keep this builder for partial/failed/hostile runs.
"""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tao_aoi import atomic
from tao_aoi.analysis import evaluation, metric_contract
from tao_aoi.commands import commit_stage, init_deft_state
from tao_aoi.data import changenet_csv
from tao_aoi.layout import Results, iteration_number
from tao_aoi.state import deft_state, stage_plan, stages

KPI = "FAR < 2% at Recall=100%"
LIGHTS = ("SolderLight", "UniformLight")
EXT = ".png"
FALSE_ALARMS = {"baseline": 34, "iter1": 17, "iter2": 7, "iter3": 5, "final_automl": 9}  # of N_PASS
DEFECTS = ("MISSING", "BRIDGE", "SHIFT", "TOMBSTONE")  # sdg+mining, sdg only, mining only, dropped
HOSTILE = '<script>window.__pwned=1</script>'
HOSTILE_ATTR = '"><img src=x onerror="window.__pwned=2">'


def far_pct(label: str) -> float:
    """The FAR the builder gives ``label`` (its false alarms scale with the PASS count)."""
    return 100.0 * FALSE_ALARMS[label] / 400


class RunBuilder:
    """One results folder (``self.results``) over one workspace (``self.ws``)."""

    def __init__(self, root: Path, *, n_pass: int = 400, n_defect: int = 100, train_rows: int = 300,
                 hostile: bool = False, image_px: int = 48, seed: int = 0):
        self.root = Path(root)
        self.ws, self.results = self.root / "ws", self.root / "run"
        self.n_pass, self.n_defect, self.train_rows = n_pass, n_defect, train_rows
        self.hostile, self.image_px, self.seed = hostile, image_px, seed
        self.R = Results.at(self.results)

    # ------------------------------------------------------------------ workspace + init
    def _rows(self, n: int, prefix: str, labels: list[str] | None = None) -> pd.DataFrame:
        rng = np.random.default_rng(zlib.crc32(prefix.encode()))
        lab = labels or list(np.where(rng.random(n) < 0.7, "PASS", rng.choice(DEFECTS[:3], n)))
        return pd.DataFrame({"input_path": [f"{prefix}/b{i % 7}/test" for i in range(n)],
                             "golden_path": [f"{prefix}/b{i % 7}/golden" for i in range(n)],
                             "label": lab, "object_name": [f"{prefix.upper()}_C{i}" for i in range(n)],
                             "boardname": [f"b{i % 7}" for i in range(n)]})

    def make_workspace(self) -> None:
        ws = self.ws
        (ws / "images").mkdir(parents=True, exist_ok=True)
        kpi_labels = ["PASS"] * self.n_pass + [DEFECTS[i % len(DEFECTS)] for i in range(self.n_defect)]
        for rel, df in (("train/base/training_set.csv", self._rows(self.train_rows, "train")),
                        ("train/base/validation_set.csv", self._rows(max(self.train_rows // 4, 10), "val")),
                        ("kpi/testing_set.csv", self._rows(len(kpi_labels), "kpi", kpi_labels)),
                        ("augmentation/mining_pool/mining_pool.csv", self._rows(60, "pool", ["MISSING", "SHIFT", "PASS"] * 20))):
            changenet_csv.write(df, ws / rel)
        spec = {"task": "classify", "train": {"num_epochs": 3, "optim": {"lr": 1e-4}},
                "dataset": {"classify": {"input_map": {light: i for i, light in enumerate(LIGHTS)},
                                         "image_ext": EXT, "num_input": len(LIGHTS)}}}
        atomic.write_text(ws / "specs" / "baseline_spec.yaml", yaml.safe_dump(spec))
        from PIL import Image

        for kind in ("reconstructed_image", "original_image"):  # AnomalyGen pool: MISSING and BRIDGE pairs
            for label in ("MISSING", "BRIDGE"):
                for idx in range(6):
                    for light in LIGHTS:
                        p = ws / "augmentation" / "anomalygen" / kind / f"T1+{label}_{idx}_{light}{EXT}"
                        p.parent.mkdir(parents=True, exist_ok=True)
                        Image.new("RGB", (16, 16), (90, 90, 90)).save(p)

    def init(self, *, max_iterations: int = 3, kpi: str = KPI) -> None:
        self.make_workspace()
        init_deft_state.main(["--results-dir", str(self.results), "--workspace", str(self.ws),
                              "--max-iterations", str(max_iterations), "--kpi-target", kpi, "--num-sdg", "12"])

    # ------------------------------------------------------------------ stepping
    def state(self) -> dict:
        return deft_state.load(self.results)

    def expected(self, phase3: bool = False) -> stages.Step | None:
        st = self.state()
        step = stages.expected_next(st)
        if step is None and phase3 and "final_automl" not in st["iterations"]:
            return stages.Step("final_automl", "train")
        return step

    def step(self, *, phase3: bool = False, status: str = "ok", summary: str | None = None) -> stages.Step | None:
        """Write the expected stage's outputs (unless status is error) and commit it."""
        step = self.expected(phase3)
        if step is None:
            return None
        st = self.state()
        argv = self._commit_argv(st, step)
        if status == "ok":
            getattr(self, f"_out_{step.stage}")(st, step)
        text = summary or f"{step} done"
        if self.hostile:
            text += f" {HOSTILE}"
        seconds = {"run": 1.0, "final_automl": 95.0}.get(step.iter) or 3.5 + 2 * iteration_number(step.iter)
        commit_stage.main(argv[1:] + ["--status", status, "--summary", text, "--duration-sec", str(seconds)]
                          + (["--source", "automl_phase1"] if step == ("baseline", "train") else []))
        return step

    def until(self, label: str, stage: str, *, phase3: bool = False) -> None:
        """Step until ``label/stage`` is committed."""
        while True:
            done = self.step(phase3=phase3)
            if done is None or tuple(done) == (label, stage):
                return

    def finish(self, *, phase3: bool = True, automl: bool = True) -> dict:
        if automl:
            self.automl("phase1", 24)
        while self.step(phase3=phase3) is not None:
            if phase3 and self.expected(True) == ("final_automl", "train") and automl:
                self.automl("phase3", 12)
        return self.state()

    def _commit_argv(self, st: dict, step: stages.Step) -> list[str]:
        if step == ("final_automl", "train"):
            out = self.R.stage_dir("final_automl", "train")
            best = metric_contract.pick_best(st["metric_contract"], deft_state.candidates(st))
            n = iteration_number(best) if best.startswith("iter") else 0
            csv = str(self.R.combined_csv(n)) if n else st["config"]["training_csv"]
            return ["commit_stage.py", "--results-dir", str(self.results), "--iter", "final_automl", "--stage", "train",
                    "--checkpoint", str(out / "best.ckpt"), "--training-spec", str(out / "experiment.yaml"),
                    "--train-csv", csv]
        return stage_plan.plan(st, step, str(self.results))["commit"]

    # ------------------------------------------------------------------ stage outputs
    def _dir(self, step: stages.Step) -> Path:
        d = self.R.stage_dir(step.iter, step.stage)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _out_train(self, st: dict, step: stages.Step) -> None:
        d = self._dir(step)
        atomic.write_bytes(d / "best.ckpt", np.arange(256, dtype=np.uint8).tobytes())
        spec = yaml.safe_load(Path(st["config"]["train_spec"]).read_text())
        spec["train"]["num_epochs"] = 3 + iteration_number(step.iter) % 7
        atomic.write_text(d / "experiment.yaml", yaml.safe_dump(spec))

    def inference_frame(self, label: str) -> pd.DataFrame:
        """KPI rows scored so that exactly FALSE_ALARMS[label] PASS rows reach the lowest defect score."""
        kpi = changenet_csv.read(self.ws / "kpi" / "testing_set.csv")
        rng = np.random.default_rng([self.seed, zlib.crc32(label.encode())])
        pos = (kpi["label"] != "PASS").to_numpy()
        scores = np.empty(len(kpi))
        scores[pos] = rng.uniform(0.5, 0.99, pos.sum())
        scores[np.flatnonzero(pos)[0]] = 0.5
        k = FALSE_ALARMS.get(label, FALSE_ALARMS["iter3"]) * self.n_pass // 400  # later iterations: iter3's
        pass_idx = np.flatnonzero(~pos)
        scores[pass_idx] = rng.uniform(0.01, 0.49, pass_idx.size)
        scores[pass_idx[:k]] = rng.uniform(0.5, 0.6, k)
        return kpi.assign(siamese_score=np.round(scores, 6))

    def validation_frame(self, label: str) -> pd.DataFrame:
        """The same model on the validation set (the calibrated KPI chooses its threshold there)."""
        val = changenet_csv.read(self.ws / "train" / "base" / "validation_set.csv")
        rng = np.random.default_rng([self.seed, zlib.crc32(label.encode()), 7])
        pos = (val["label"] != "PASS").to_numpy()
        scores = np.where(pos, rng.uniform(0.45, 0.99, pos.size), rng.uniform(0.01, 0.55, pos.size))
        return val.assign(siamese_score=np.round(scores, 6))

    def _out_evaluate(self, st: dict, step: stages.Step) -> None:
        d = self._dir(step)
        df = self.inference_frame(step.iter)
        changenet_csv.write(df, d / "inference.csv")
        changenet_csv.write(self.validation_frame(step.iter), d / "validation" / "inference.csv")
        point = st["metric_contract"]["operating_point"]
        result = evaluation.analyze(str(d / "inference.csv"), point_name=point["name"], point_target=point["target"],
                                    contract=st["metric_contract"],
                                    calibration_csv=str(d / "validation" / "inference.csv"))
        atomic.write_json(d / evaluation.RESULT_NAME, result)
        self._spot_images(df)

    def _spot_images(self, df: pd.DataFrame) -> None:
        """Images of the 5 highest-scoring PASS and 5 lowest-scoring defects (the RCA spot check)."""
        from PIL import Image, ImageDraw

        ps = df[df["label"] == "PASS"].nlargest(5, "siamese_score")
        ds = df[df["label"] != "PASS"].nsmallest(5, "siamese_score")
        rng = np.random.default_rng(1)
        px = self.image_px
        for row in pd.concat([ps, ds]).itertuples():
            for col in ("input_path", "golden_path"):
                for k, light in enumerate(LIGHTS):
                    p = self.ws / "images" / getattr(row, col) / f"{row.object_name}_{light}{EXT}"
                    if p.exists():
                        continue
                    p.parent.mkdir(parents=True, exist_ok=True)
                    noise = rng.integers(0, 40, (px, px, 3), dtype=np.uint8)
                    im = Image.fromarray(noise + np.uint8(30 + 60 * k))
                    draw = ImageDraw.Draw(im)
                    draw.rectangle((px // 4, px // 3, 3 * px // 4, 2 * px // 3), fill=(200, 190, 80))
                    if col == "input_path" and row.label != "PASS":
                        draw.ellipse((px // 2, px // 2, px // 2 + px // 5, px // 2 + px // 5), fill=(20, 20, 20))
                    im.save(p)

    def _out_rca(self, st: dict, step: stages.Step) -> None:
        from tao_aoi.analysis import gap_analysis

        d = self._dir(step)
        inf = self.R.stage_dir(step.iter, "evaluate") / "inference.csv"
        gap_analysis.run(inf, st["config"]["train_spec"], st["config"]["images_root"], d, min_recall=1.0, top_k=10,
                         report_mode="agent")
        self._act_as_agent(d, step.iter)

    def _act_as_agent(self, d: Path, label: str) -> None:
        """Fill the RCA report's judgement cells the way the agent does after the spot check."""
        path = d / "RCA_Report.md"
        text = path.read_text()
        verdict = "Mostly edge cases; the golden of board b3 is shifted." + (f" {HOSTILE}" if self.hostile else "")
        text = text.replace("TODO(agent): two or three sentences", verdict + " (was: two or three sentences", 1)
        filled = 0
        out = []
        for line in text.splitlines():
            if line.startswith("| ") and line.count("TODO(agent)") == 2 and filled < 3:
                why = ["label says PASS, solder bridge visible", "low contrast in UniformLight", f"why {HOSTILE_ATTR}"][filled]
                line = line.replace("TODO(agent) | TODO(agent)", f"{['mislabeled', 'data quality', 'edge case'][filled]} | "
                                    + (why if self.hostile or filled < 2 else "shadow on the pad").replace("|", "\\|"), 1)
                filled += 1
            out.append(line)
        atomic.write_text(path, "\n".join(out) + "\n")
        if self.hostile:
            m = json.loads((d / "metrics.json").read_text())
            m["per_label"][HOSTILE] = dict(next(iter(m["per_label"].values())))
            if m.get("rca_images"):
                m["rca_images"][0]["object_name"] = HOSTILE_ATTR
                m["rca_images"].append(dict(m["rca_images"][0], file="../../../etc/passwd", label=HOSTILE))
            atomic.write_json(d / "metrics.json", m)

    def _out_routing(self, st: dict, step: stages.Step) -> None:
        from tao_aoi.deft import routing

        prev = self.R.stage_dir(f"iter{iteration_number(step.iter) - 1}" if step.iter != "iter1" else "baseline", "rca")
        d = self._dir(step)
        routing.run(prev / "kpi_gaps.parquet", st["config"]["sdg_pool"], st["config"]["mining_pool_csv"], d,
                    sdg_labels=st["config"]["sdg_labels"])
        if self.hostile:
            s = json.loads((d / "routing_summary.json").read_text())
            s["per_label"][HOSTILE] = {"route": "dropped", "reason": HOSTILE_ATTR, "rows": 1, "samples": 1}
            atomic.write_json(d / "routing_summary.json", s)

    def _weak_counts(self, label: str) -> dict[str, int]:
        s = json.loads((self.R.stage_dir(label, "routing") / "routing_summary.json").read_text())
        return {k: v["samples"] for k, v in s["per_label"].items() if v.get("route") in ("sdg", "both")}

    def _out_sdg(self, st: dict, step: stages.Step) -> None:
        d = self._dir(step)
        weak = self._weak_counts(step.iter)
        num = int(st["config"]["num_sdg"])
        total = sum(weak.values()) or 1
        alloc = {k: num * v // total for k, v in weak.items()}
        first = next(iter(alloc), None)
        if first:
            alloc[first] += num - sum(alloc.values())
        rows = [{"input_path": f"sdg/{step.iter}/ng", "golden_path": f"sdg/{step.iter}/ok", "label": lab,
                 "object_name": f"T1+{lab}_{i}", "source": "sdg", "iteration": step.iter}
                for lab, n in alloc.items() for i in range(n)]
        changenet_csv.write(pd.DataFrame(rows, columns=["input_path", "golden_path", "label", "object_name", "source",
                                                        "iteration"]), d / "sdg_rows.csv")
        per = {k: {"weak": weak[k], "allocated": alloc[k], "pool_samples": 6, "used_earlier": 0, "available": 6}
               for k in alloc}
        if self.hostile:
            per[HOSTILE] = {"weak": 1, "allocated": 0, "pool_samples": HOSTILE_ATTR}
        atomic.write_json(d / "allocation.json", {
            "iteration": step.iter, "num_sdg": num, "weak_counts": weak, "allocated": alloc,
            "ingested": {k: v for k, v in alloc.items()}, "total_ingested": len(rows), "per_label": per,
            "lights": list(LIGHTS)})

    def _out_mining(self, st: dict, step: stages.Step) -> None:
        """mine_pool.py's outputs (mining.run's columns and summary keys) without the embedder."""
        d = self._dir(step)
        n = iteration_number(step.iter)
        mined = pd.DataFrame([{"input_path": f"pool/b{i % 7}/test", "golden_path": f"pool/b{i % 7}/golden",
                               "label": ["MISSING", "SHIFT"][i % 2], "object_name": f"POOL_{step.iter}_C{i}",
                               "source": "mined", "similarity": round(0.99 - 0.01 * i, 6),
                               "target": f"kpi/b{i % 7}/test/KPI_C{400 + i % 4}", "iteration": step.iter}
                              for i in range(6 + 2 * n)])
        changenet_csv.write(mined, d / "mined_rows.csv")
        knn = pd.DataFrame({"target": [f"kpi/b{i}/test/KPI_C{400 + i}" for i in range(4)],
                            "label": ["MISSING", "SHIFT"] * 2, "candidates": [5, 5, 5, 5],
                            "above_floor": [4, 3, 5, 2], "new": [3, 2, 3, 1],
                            "best_similarity": [0.981234, 0.953, 0.97, 0.9012]})
        if self.hostile:
            knn["target"] = knn["target"].astype(object)
            knn.loc[0, "target"] = HOSTILE
        changenet_csv.write(knn, d / "knn_summary.csv")
        atomic.write_json(d / "mining_summary.json", {
            "iteration": step.iter, "targets": 4, "top_k_per_target": 5, "min_similarity": 0.9, "pool_rows": 60,
            "excluded_heldout": 0, "method": "exact (numpy)", "embedder": {"name": "local-hist", "bins": 16},
            "candidates": 20, "above_floor": 14, "mined_earlier": n - 1, "mined": len(mined),
            "mined_labels": mined["label"].value_counts().sort_index().to_dict()})

    def _out_assemble(self, st: dict, step: stages.Step) -> None:
        n = iteration_number(step.iter)
        prev_csv = Path(st["config"]["training_csv"]) if n == 1 else self.R.combined_csv(n - 1)
        prev = changenet_csv.read(prev_csv)
        if n == 1:
            prev_prov = pd.DataFrame({"origin": "base_train", "added_in": "base", "detail": ""}, index=prev.index)
        else:
            prev_prov = changenet_csv.read(self.R.provenance_csv(n - 1), ("row", "origin", "added_in"))
        cols = list(changenet_csv.REQUIRED)
        sdg = changenet_csv.read(self.R.stage_dir(step.iter, "sdg") / "sdg_rows.csv", allow_empty=True)[cols]
        mined = changenet_csv.read(self.R.stage_dir(step.iter, "mining") / "mined_rows.csv", allow_empty=True)[cols]
        new = pd.concat([sdg, mined], ignore_index=True)
        combined = pd.concat([prev[[c for c in prev.columns if c in cols]], new], ignore_index=True)
        prov = pd.concat([prev_prov[["origin", "added_in", "detail"]].assign(source="base_train" if n == 1 else "previous_iter"),
                          pd.DataFrame({"origin": ["sdg"] * len(sdg) + ["mined"] * len(mined), "added_in": step.iter,
                                        "detail": "", "source": ["sdg"] * len(sdg) + ["mined"] * len(mined)})],
                         ignore_index=True)
        prov.insert(0, "row", range(len(prov)))
        changenet_csv.write(combined, self.R.combined_csv(n))
        changenet_csv.write(prov[["row", "source", "origin", "added_in", "detail"]], self.R.provenance_csv(n))
        atomic.write_json(self.R.combined_csv(n).parent / "validation_report.json", {
            "iteration": step.iter, "previous_csv": str(prev_csv), "previous_rows": len(prev), "new_rows": len(new),
            "new_by_source": {"sdg": len(sdg), "mined": len(mined)}, "combined_rows": len(combined),
            "duplicates_dropped": 0, "missing_file_count": 0, "leakage_count": 0, "bad_label_count": 0})

    def _out_finalize(self, st: dict, step: stages.Step) -> None:
        """Write best_model.json + the inference spec before the commit (the commit checks them)."""
        self._out_best_model(st)

    def _out_best_model(self, st: dict | None = None) -> None:
        st = st or self.state()
        try:
            from tao_aoi.pipeline import deliverable  # the real finalize, once it lands
        except ImportError:
            deliverable = None
        if deliverable is not None:
            deliverable.prepare(self.results)
            return
        best = metric_contract.pick_best(st["metric_contract"], deft_state.candidates(st))
        rec = st["iterations"][best]
        atomic.write_json(self.R.best_model, {"iteration": best, "checkpoint": rec["artifacts"]["checkpoint"],
                                              "threshold": rec["metric_result"].get("threshold"),
                                              "metric_result": rec["metric_result"],
                                              "passed": rec["metric_result"].get("passed")})
        atomic.write_text(self.R.inference_spec, yaml.safe_dump({"inference": {"checkpoint": rec["artifacts"]["checkpoint"]}}))

    # ------------------------------------------------------------------ AutoML
    def automl(self, phase: str, n_trials: int) -> dict[str, Any]:
        """automl/<phase>/best_rec.json in automl.best_record's shape (flat dotted params, every trial)."""
        rng = np.random.default_rng(7 if phase == "phase1" else 8)
        trials = []
        for i in range(n_trials):
            state_ = "PRUNED" if i % 5 == 3 else "FAIL" if i == n_trials - 2 else "COMPLETE"
            value = None if state_ == "FAIL" else round(float(12 - 6 * (1 - np.exp(-i / 6)) + rng.normal(0, 1.2)), 4)
            params = {"train.optim.lr": float(10 ** rng.uniform(-5, -3)),
                      "train.optim.weight_decay": float(rng.choice([0.0, 1e-4, 1e-3])),
                      "model.backbone.type": str(rng.choice(["vit_small", "vit_base"]))}
            if self.hostile and i == 0:
                params[HOSTILE] = HOSTILE_ATTR
            trials.append({"number": i, "state": state_, "value": value, "params": params,
                           "feasible": None if state_ != "COMPLETE" else i != 2,  # trial 2 collapsed to one class
                           "duration_sec": round(float(rng.uniform(20, 90)), 1),
                           "checkpoint": str(self.R.automl(phase) / f"trial_{i}" / "best.ckpt")})
        ok = [t for t in trials if t["state"] == "COMPLETE" and t["feasible"]]
        best = min(ok, key=lambda t: (t["value"], t["number"]))
        doc = {"schema_version": 1, "metric_name": "val_far_pct_at_recall_100", "metric_set": "validation",
               "direction": "minimize", "algorithm": "bayesian",
               "best": {"trial": best["number"], "score": best["value"], "params": best["params"],
                        "checkpoint": best["checkpoint"]},
               "counts": {s: sum(1 for t in trials if t["state"] == s) for s in ("COMPLETE", "PRUNED", "FAIL")},
               "trials": trials}
        atomic.write_json(self.R.automl(phase) / "best_rec.json", doc)
        return doc


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
