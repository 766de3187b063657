"""A results folder that fills up: one clear line (the folder, what to do), exit 2, nothing torn or
half-written, and the same command resumes once there is room. On a real small tmpfs (root needed:
support/tmpfs.py skips locally without it and fails under TAO_AOI_REQUIRE_TOOLS=1)."""
from __future__ import annotations

import json

import pytest
from conftest import run_script
from test_pipeline import combined_csvs, commits, deliverable, log_seqs, pipeline_argv, run, tiny  # noqa: F401

from support.tmpfs import resize, small_tmpfs
from tao_aoi import atomic
from tao_aoi.errors import DiskFull
from tao_aoi.state import deft_state, event_log


def test_a_full_disk_never_tears_the_log_nor_leaves_a_temp_file(tmp_path, monkeypatch):
    import os

    short: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:  # counts the writes the full file system cut short
        n = real_write(fd, data)
        if n < len(data):
            short.append(n)
        return n

    monkeypatch.setattr(os, "write", write)
    R = tmp_path / "R"
    with small_tmpfs(R, "32k"):
        filler = "x" * 3000  # lines of ~3.2 KB: the last one straddles the last free page and is cut short
        with pytest.raises(DiskFull) as err:
            for n in range(1, 100):
                deft_state.log(R, label="run", stage="note", status="ok", summary=f"{n} {filler}")
        assert str(err.value).startswith(f"{R}: no space left on the file system holding it; free space there")
        assert short  # the kernel took part of a line ...
        written = event_log.read_events(R / "loop_log.jsonl")  # ... yet every line is whole, the chain intact
        assert [e["seq"] for e in written] == list(range(1, n))
        proc = run_script("log_stage.py", "--results-dir", R, "--iter", "run", "--stage", "note", "--status", "ok",
                          "--summary", filler)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no space left" in proc.stderr
        with pytest.raises(DiskFull, match="rerun the same command"):
            atomic.write_text(R / "report.html", filler * 20)
        assert not (R / "report.html").exists() and not list(R.glob(".*.tmp"))  # nothing half-written
        resize(R, "1m")  # space freed: the same writes go through
        assert deft_state.log(R, label="run", stage="note", status="ok", summary="room again")["seq"] == n
        assert [e["seq"] for e in event_log.read_events(R / "loop_log.jsonl")] == list(range(1, n + 1))


@pytest.mark.slow
def test_the_results_folder_fills_up_during_assembly_then_the_run_resumes(tiny, tmp_path):  # noqa: F811
    reference = tmp_path / "reference"
    assert run(pipeline_argv(tiny, reference, "deft", iterations=1)).returncode == 0

    results = tmp_path / "full"
    dataset = results / "iter1" / "dataset"  # the assembly's output folder: 16 KB, less than its files need
    argv = pipeline_argv(tiny, results, "deft", iterations=1)
    with small_tmpfs(dataset, "16k"):
        first = run(argv)
        assert first.returncode == 2, first.stderr[-3000:]
        line = first.stderr.strip()
        assert "\n" not in line and line.startswith("error: iter1/assemble failed in assemble_dataset.py: "
                                                    f"{dataset}: no space left on the file system holding it")
        assert "free space there" in line and "rerun the same command" in line
        st = deft_state.load(results)  # the state agrees with the log and names the stage to retry
        assert st["status"] == "failed" and (st["failure"]["iter"], st["failure"]["stage"]) == ("iter1", "assemble")
        assert json.loads((results / "pipeline_state.json").read_text())["status"] == "failed"
        assert not list(dataset.glob(".*.tmp"))  # no half-written CSV
        resize(dataset, "4m")
        second = run(argv)
        assert second.returncode == 0, second.stderr[-3000:]
        assert log_seqs(results) == list(range(1, len(log_seqs(results)) + 1))
        assert deliverable(results) == deliverable(reference)
        assert combined_csvs(results) == combined_csvs(reference)
        trace = commits(results)
        assert trace.index(("iter1", "assemble", "error")) + 1 == trace.index(("iter1", "assemble", "ok"))
        assert [c for c in trace if c[2] == "ok"] == [c for c in commits(reference) if c[2] == "ok"]
