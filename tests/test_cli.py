"""The command-line contract every script shares (click, tao_aoi/cli.py).

Unknown options are refused with the option meant (all of them at once), long options are never
abbreviated, every usage error exits 2 with one line naming the option and pointing at --help,
--help ends with the usual next step, recall options take a percent everywhere, and human output
rounds numbers to 4 significant digits while --json keeps full precision.
"""
from __future__ import annotations

import importlib
import json
import math
import re

import click
import pytest
from conftest import SCRIPTS, run_script
from hypothesis import given
from hypothesis import strategies as st

from tao_aoi import cli, fmt
from tao_aoi.errors import UserError
from tao_aoi.state import deft_state, stage_plan, stages

COMMANDS = sorted(p.stem for p in (SCRIPTS / "tao_aoi" / "commands").glob("*.py") if p.stem != "__init__")


def module(name: str):
    return importlib.import_module(f"tao_aoi.commands.{name}")


def long_options(cmd: click.Command) -> list[str]:
    return [n for p in cmd.params if isinstance(p, click.Option) for n in (*p.opts, *p.secondary_opts)
            if n.startswith("--")]


def refusal(name: str, *argv: str) -> str:
    """The one-line message a command line is refused with (in-process, as the runner calls commands)."""
    with pytest.raises(cli.UsageError) as exc:
        module(name).main(list(argv))
    return str(exc.value)


def test_every_script_is_a_click_command_with_an_in_process_main():
    wrappers = sorted(p.stem for p in SCRIPTS.glob("*.py") if p.stem != "setup_env")  # setup_env: stdlib only
    assert wrappers == COMMANDS
    for name in COMMANDS:
        m = module(name)
        assert isinstance(m.command, click.Command) and m.command.name == f"{name}.py"
        assert m.main(["--help"]) == 0


def test_unknown_option_is_refused_with_the_option_meant_exit_2_one_line():
    proc = run_script("run_pipeline.py", "--workspace", "W", "--iterations", "3", "--kpi-target", "FAR < 2% at Recall=100%")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: run_pipeline.py: No such option: --iterations. Did you mean --max-iterations? "
                           "(see run_pipeline.py --help)\n")


def test_every_unknown_option_is_reported_at_once():
    msg = refusal("log_stage", "--results-dir", "R", "--itr", "baseline", "--bogus", "--summary", "--not-a-flag")
    # --not-a-flag is --summary's value, not an option
    assert "No such options: --itr (did you mean --iter?), --bogus (see log_stage.py --help)" in msg


@pytest.mark.parametrize("name", ["init_deft_state", "run_pipeline", "analyze_kpi", "preflight", "seed_baseline"])
def test_kpi_is_not_an_abbreviation_of_kpi_target(name):
    msg = refusal(name, "--kpi", "FAR < 2% at Recall=100%")
    assert "No such option: --kpi. Did you mean --kpi-target" in msg  # init_deft_state: "... or --kpi-csv?"


@pytest.mark.parametrize("name", COMMANDS)
def test_no_long_option_is_ever_abbreviated(name):
    cmd = module(name).command
    known = set(long_options(cmd)) | {"--help"}
    for opt in known:
        for cut in range(3, len(opt)):
            prefix = opt[:cut]
            if prefix in known or prefix.endswith("-"):
                continue
            with pytest.raises(cli.UsageError, match=f"No such option: {re.escape(prefix)}\\b"):
                cli.parse(cmd, [prefix, "x"])


@pytest.mark.parametrize("name, argv, needle", [
    ("log_stage", [], "Missing option '--results-dir'"),
    ("init_deft_state", ["--results-dir", "R", "--workspace", "W", "--kpi-target", "FAR < 2% at Recall=100%"],
     "Missing option '--max-iterations'"),
    ("run_pipeline", ["--workspace", "W", "--max-iterations", "x", "--kpi-target", "k"],
     "Invalid value for '--max-iterations': 'x' is not a valid integer"),
    ("train", ["--backend", "gpu"], "Invalid value for '--backend': 'gpu' is not one of 'local', 'docker', 'slurm'"),
    ("next_stage", ["--results-dir", "R", "extra"], "Got unexpected extra argument (extra)"),
    ("next_stage", ["--results-dir", "R", "--json=yes"], "Option '--json' does not take a value"),
    ("commit_stage", ["--results-dir", "R", "--iter", "baseline", "--stage", "deploy"], "Invalid value for '--stage'"),
    ("analyze_kpi", ["--output-dir", "o"], "Missing argument 'INFERENCE_CSV'"),
    ("assemble_dataset", ["--results-dir", "R", "--iter", "iter0"], "Invalid value for '--iter'"),
])
def test_usage_errors_exit_2_with_one_line_naming_the_option(capsys, name, argv, needle):
    with pytest.raises(SystemExit) as stop:
        cli.run(module(name).main, argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith(f"error: {name}.py: ") and err.endswith(f"(see {name}.py --help)\n")
    assert needle in err and err.count("\n") == 1


def test_a_usage_error_is_a_user_error_for_in_process_callers():
    """The headless runner commits a stage whose command line is refused as an error (not a crash)."""
    with pytest.raises(UserError):
        module("next_stage").main(["--result-dir", "R"])


@pytest.mark.parametrize("name", COMMANDS)
def test_help_ends_with_the_next_step_and_names_real_flags(capsys, name):
    assert module(name).main(["--help"]) == 0
    text = capsys.readouterr().out
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    assert paragraphs[-1].lstrip().startswith("Next: "), f"{name}.py --help does not end with the next step"
    for script, rest in re.findall(r"python3 scripts/(\w+\.py)((?: +[^;()]*)?)", paragraphs[-1]):
        assert (SCRIPTS / script).exists(), f"{name}.py --help names scripts/{script}"
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest))
        if (SCRIPTS / "tao_aoi" / "commands" / script).exists():
            accepted = set(long_options(module(script[:-3]).command)) | {"--help"}
            assert flags <= accepted, f"{name}.py --help: {script} does not accept {sorted(flags - accepted)}"


# ------------------------------------------------------------------ recall options take a percent


@pytest.mark.parametrize("name, flag, value, meant", [
    ("gap_analysis", "--min-recall", "1", "100"),
    ("init_deft_state", "--min-recall", "0.995", "99.5"),
    ("analyze_kpi", "--recall-target", "0.999", "99.9"),
])
def test_a_recall_given_as_a_fraction_is_refused_naming_the_percent_meant(name, flag, value, meant):
    msg = refusal(name, flag, value)
    assert f"Invalid value for '{flag}': {value} looks like a fraction" in msg and f"use {flag} {meant} " in msg


@pytest.mark.parametrize("text, value", [("100", 100.0), ("99.9", 99.9), ("99.9%", 99.9), ("0.5%", 0.5), ("1%", 1.0)])
def test_recall_percent_accepts_percents(text, value):
    assert cli.parse(module("gap_analysis").command, ["--min-recall", text]).min_recall == value


@pytest.mark.parametrize("text", ["0", "-5", "100.5", "nan", "inf", "abc", "0%"])
def test_recall_percent_refuses_what_is_not_a_recall(text):
    with pytest.raises(cli.UsageError, match="--min-recall"):
        cli.parse(module("gap_analysis").command, ["--min-recall", text])


@given(st.floats(min_value=1e-6, max_value=100, allow_nan=False))
def test_a_planned_recall_reads_back_as_the_same_percent(x):
    """stage_plan writes recall options with cli.percent_arg; the command must read the same value back."""
    kind = cli.RecallPercent()
    assert kind.convert(cli.percent_arg(x), None, None) == float(f"{x:g}")


def test_init_keeps_the_ratio_and_the_plan_writes_the_percent(stub_workspace, tmp_path):
    results = tmp_path / "run"
    assert module("init_deft_state").main(["--results-dir", str(results), "--workspace", str(stub_workspace),
                                           "--max-iterations", "2", "--kpi-target", "FAR < 2% at Recall=99.5%",
                                           "--min-recall", "99.9"]) == 0
    st_ = deft_state.load(results)
    assert st_["config"]["min_recall"] == 0.999  # deft_state.json keeps the ratio
    rca = stage_plan.plan(st_, stages.Step("baseline", "rca"), str(results))["run"][0]
    assert rca[rca.index("--min-recall") + 1] == "99.9"


# ------------------------------------------------------------------ argv round trip (AutoML workers)


def test_to_argv_gives_the_same_options_back():
    cmd = module("mine_pool").command
    argv = ["--targets", "t.parquet", "--mining-pool", "p.csv", "--images-root", "i", "--results-dir", "r",
            "--train-spec", "s.yaml", "--history", "h.json", "--iteration", "iter2", "--exclude", "a.csv",
            "--exclude", "b.csv", "--min-similarity", "0.85", "--json"]
    args = cli.parse(cmd, argv)
    assert args.exclude == ["a.csv", "b.csv"]
    assert cli.parse(cmd, cli.to_argv(cmd, args)) == args


def test_automl_workers_run_the_same_study_locally_and_quietly():
    automl_cmd = module("automl")
    args = cli.parse(automl_cmd.command, ["--workspace", "W", "--results-dir", "R", "--train-csv", "t.csv",
                                          "--val-csv", "v.csv", "--workers", "3", "--backend", "slurm", "--json",
                                          "--trials", "12", "--algorithm", "random"])
    argv = automl_cmd.worker_argv(args)
    worker = cli.parse(automl_cmd.command, argv[2:])
    assert (worker.worker, worker.quiet, worker.json, worker.backend, worker.workers) == (True, True, False, "local", 1)
    assert (worker.trials, worker.algorithm, worker.results_dir, worker.val_csv) == (12, "random", "R", "v.csv")


# ------------------------------------------------------------------ human output: 4 significant digits


def significant_digits(number: str) -> int:
    mantissa = re.sub(r"e[-+]?\d+$", "", number).lstrip("-")
    digits = mantissa.replace(".", "").lstrip("0")
    return len(digits if "." in mantissa else digits.rstrip("0")) or 1


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e4, max_value=1e4))
def test_num_keeps_four_significant_digits(x):
    text = fmt.num(x)
    assert significant_digits(text) <= 4, text
    assert math.isclose(float(text), x, rel_tol=5e-4)


def write_scores(path, n_pass_high: int, n_pass_low: int) -> None:
    rows = ["input_path,golden_path,label,object_name,siamese_score"]
    rows += [f"t/p{i},g/p{i},PASS,C{i},0.9" for i in range(n_pass_high)]
    rows += [f"t/q{i},g/q{i},PASS,D{i},0.1" for i in range(n_pass_low)]
    rows += ["t/d0,g/d0,MISSING,E0,0.5"]
    path.write_text("\n".join(rows) + "\n")


def test_human_output_rounds_and_json_keeps_full_precision(tmp_path, capsys):
    csv = tmp_path / "inference.csv"
    write_scores(csv, 13, 53)  # 13 of 66 PASS rows score above the one defect: FAR 19.6969...%
    analyze = module("analyze_kpi")
    assert analyze.main([str(csv), "--output-dir", str(tmp_path / "h")]) == 0
    human = capsys.readouterr().out
    assert human.startswith("FAR 19.7% at recall 100% (threshold ") and "precision 7.143%" in human
    without_threshold = re.sub(r"threshold [^;]+;", "", human.splitlines()[0])  # a threshold prints exactly
    assert all(significant_digits(n) <= 4 for n in re.findall(r"\d+(?:\.\d+)?", without_threshold)), human
    assert analyze.main([str(csv), "--output-dir", str(tmp_path / "j"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["far_pct"] == pytest.approx(100 * 13 / 66, rel=1e-15)


def test_the_phase1_line_shows_the_objective_the_trials_were_ranked_by():
    """The runner-up can have a lower plain FAR@100% than the best: the line shows the objective too."""
    from tao_aoi.pipeline import phases

    text = phases.render_summary({
        "phase1": {"val_far_pct": 20.0, "objective": 1.7904761904761903, "best_trial": 4,
                   "runner_up": {"trial": 6, "score": 15.142857142857142, "objective": 2.2}},
        "kpi_target": "FAR < 1% at Recall=100%", "trajectory": [], "deliverable": None, "results_dir": "R",
        "report": None})
    assert "Phase 1 best           val FAR@90-100%R 1.79%, val FAR@100%R 20%  (trial 4; runner-up trial 6 2.2% / " \
           "15.14%)" in text, text


def test_the_run_summary_rounds_its_figures():
    from tao_aoi.pipeline import phases

    far = 100 * 13 / 66
    text = phases.render_summary({
        "phase1": {"val_far_pct": 2 / 3, "best_trial": 4}, "kpi_target": "FAR < 2% at Recall=100%",
        "trajectory": [{"iteration": "baseline", "passed": False, "kpi_value": far}],
        "deliverable": {"iteration": "baseline", "passed": False, "kpi_value": far}, "results_dir": "R", "report": None})
    assert "val FAR@100%R 0.6667%" in text and "KPI 19.7%  (not met)" in text and "19.69" not in text
