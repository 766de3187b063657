"""The CLI layer every command shares: click, the options several commands take, the one error handler.

Every command module defines ``command`` (a click command built by ``cli.command``) and
``main(argv) -> int`` (``cli.invoke``), which tests and the headless runner call in-process. click
refuses unknown options (with a suggestion; long options are never abbreviated) and bad values; every
such usage error becomes a ``UsageError``, so it is reported like any ``UserError``: one
``error: ...`` line on stderr, exit 2. An option that several commands take is declared once in
``SHARED`` so it has the same meaning, unit and help everywhere. Recall options take a percent.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import textwrap
from types import SimpleNamespace
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Any, Callable, NoReturn, Sequence

import click

from tao_aoi import defaults, labels
from tao_aoi.errors import UserError

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class UsageError(UserError):
    """A command line click refused (unknown or missing option, bad value): exit 2 like any UserError."""


class RecallPercent(click.ParamType):
    """A recall in percent: ``99.5`` or ``99.5%``. A bare number in (0, 1] is refused, naming the percent it
    most likely meant (the toolkit once took recall as a fraction in one script and a percent in
    another); a recall of 1% or less must carry its % sign (``0.5%``)."""

    name = "PERCENT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        text = str(value).strip()
        explicit = text.endswith("%")
        x = finite_float(self, text[:-1] if explicit else value, param, ctx)
        flag = param.opts[0] if param is not None and param.opts else "the option"
        if not 0 < x <= 100:
            self.fail(f"{text} is not a recall in percent (0, 100]", param, ctx)
        if x <= 1 and not explicit:
            self.fail(f"{x:g} looks like a fraction; recall options take a percent: use {flag} {x * 100:g} "
                      f"(or {flag} {x:g}% if you mean {x:g} percent)", param, ctx)
        return x


def percent_arg(x: float) -> str:
    """A recall percent written as RecallPercent reads it back: ``100``, ``99.5``; ``0.5%`` (1% or less)."""
    text = f"{x:g}"
    return text if float(text) > 1 else f"{text}%"


class Percent(click.ParamType):
    """A rate in percent, [0, 100] (FAR)."""

    name = "PERCENT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        x = finite_float(self, value, param, ctx)
        if not 0 <= x <= 100:
            self.fail(f"{x:g} is not a percent in [0, 100]", param, ctx)
        return x


def finite_float(kind: click.ParamType, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        kind.fail(f"{value!r} is not a number", param, ctx)
    if not math.isfinite(x):
        kind.fail(f"{value!r} is not a finite number", param, ctx)
    return x


def recall_ratio(percent: float) -> float:
    """A recall option's percent as the ratio the libraries and deft_state.json keep (0.999, not 0.99900...01)."""
    return round(percent / 100.0, 10)


BACKEND = click.Choice(defaults.BACKENDS)
# Options several commands take: one declaration, so the same flag means the same thing everywhere.
SHARED: dict[str, dict[str, Any]] = {
    "--results-dir": dict(required=True, help="the run's results folder"),
    "--workspace": dict(required=True, help="workspace root (images/, train/base/, kpi/, specs/, augmentation/)"),
    "--backend": dict(type=BACKEND, default="local", help="where jobs run"),
    "--kpi-target": dict(help="the KPI contract, e.g. 'FAR < 0.1% at Recall=100%'"),
    "--max-iterations": dict(type=int, help="DEFT iterations at most (never guessed)"),
    "--images-root": dict(help="folder the CSVs' input_path/golden_path are relative to"),
    "--train-spec": dict(help="TAO train spec (lights from dataset.classify.input_map, image_ext)"),
    "--spec": dict(help="TAO-shaped train spec (YAML)"),
    "--num-sdg": dict(type=int, default=defaults.NUM_SDG, help="synthetic rows ingested per iteration"),
    "--top-k-per-label": dict(type=int, default=defaults.TOP_K_PER_LABEL, help="RCA: weakest samples kept per label"),
    "--top-k-per-target": dict(type=int, default=defaults.TOP_K_PER_TARGET, help="mining: neighbours per weak sample"),
    "--min-similarity": dict(type=float, default=None, help="mining: cosine floor in [-1, 1] (default: the floor the "
                             "embedder was calibrated for, defaults.MIN_SIMILARITY_BY_EMBEDDER)"),
    "--min-recall": dict(type=RecallPercent(), default=defaults.MIN_RECALL_PCT,
                         help="RCA: defect recall in percent the operating threshold must keep"),
    "--sdg-labels": dict(default=",".join(defaults.SDG_LABELS), help="labels the AnomalyGen pool can supply (comma-separated)"),
    "--pass-label": dict(default=labels.PASS, help="the negative class (any case)"),
    "--trials": dict(type=int, default=defaults.AUTOML_TRIALS, help="AutoML trials per phase"),
    "--algorithm": dict(type=click.Choice(defaults.AUTOML_ALGORITHMS), default=defaults.AUTOML_ALGORITHM,
                        help="AutoML search: bayesian (TPE), random, cmaes, hyperband/asha (TPE + pruning)"),
    "--seed": dict(type=int, default=defaults.SEED),
    "--history": dict(required=True, help="ledger of samples used by earlier iterations"),
    "--iteration": dict(required=True, help="this iteration's label, e.g. iter2"),
    "--iter": dict(required=True, help="baseline, iterN (N >= 1), final_automl or run (for finalize)"),
    "--output-dir": dict(required=True),
    "--search-space": dict(help="YAML/JSON search space (default: the backend's model space)"),
    "--phases": dict(type=click.Choice(defaults.PHASE_SETS), default="all",
                     help="all (AutoML -> DEFT -> AutoML), automl or deft alone"),
    "--time-limit": dict(help="a time budget such as 8h, 90m, 1h30m or 3600s: a dry run on this host turns it "
                              "into max_iterations and trials (values you give are kept)"),
    "--epoch-sec": dict(type=click.FloatRange(min=0, min_open=True),
                        help="a known seconds per training epoch on the base set (docker/slurm) instead of a "
                             "measured one"),
    "--holdout-csv": dict(default=None, help="sealed holdout set (ChangeNet CSV): rows no decision of the run sees, "
                          "scored once by the deliverable at the shipped threshold (best_model.json holdout)"),
    "--max-retries": dict(type=click.IntRange(min=0), default=None, show_default=False,
                          help="docker/slurm: retries of a job ended by an infrastructure fault (container killed "
                               "or out of memory, docker daemon or image pull failure, SLURM node failure, "
                               "preemption or OUT_OF_MEMORY), each in a fresh job folder after a doubling backoff; "
                               "the job's own errors (schema, TAO assert, bad input) are never retried "
                               f"(default {defaults.MAX_RETRIES})"),
    "--quiet": dict(is_flag=True, help="no progress output"),
    "--json": dict(is_flag=True, help="print the result as JSON (full precision)"),
}


def option(flag: str, *names: str, **overrides: Any) -> Callable:
    """A shared option (``SHARED[flag]``) with per-command overrides such as ``required`` or ``help``."""
    return click.option(flag, *names, **{**SHARED[flag], **overrides})


def options(*flags: str) -> Callable:
    """Several shared options at once, in this order."""
    def apply(fn: Callable) -> Callable:
        for flag in reversed(flags):
            fn = option(flag)(fn)
        return fn
    return apply


# The DEFT loop's knobs that run_pipeline.py, preflight.py and seed_baseline.py pass on to init_deft_state.py.
deft_knobs = options("--num-sdg", "--top-k-per-target", "--min-similarity")


def command(prog: str, doc: str | None, *, next_step: str) -> Callable[[Callable], click.Command]:
    """A click command named after its script; ``--help`` shows ``doc`` and ends with the usual next step.

    The decorated function receives the options as one namespace (``args.results_dir``), so helpers
    can take ``args`` and ``parse`` can hand the same namespace to callers reusing a command's checks.
    """
    def wrap(fn: Callable) -> click.Command:
        def callback(**params: Any) -> Any:
            return fn(namespace(params))

        callback.__name__ = fn.__name__
        callback.__click_params__ = getattr(fn, "__click_params__", [])  # type: ignore[attr-defined]
        epilog = "\b\n" + "\n".join(textwrap.wrap(f"Next: {next_step}", 78, subsequent_indent="  ",
                                                     break_on_hyphens=False, break_long_words=False))
        return click.command(prog, help=doc, epilog=epilog, context_settings=CONTEXT)(callback)
    return wrap


def namespace(params: dict[str, Any]) -> SimpleNamespace:
    """Options as attributes; repeatable options as lists (JSON-ready, like argparse's append)."""
    return SimpleNamespace(**{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()})


def invoke(cmd: click.Command, argv: Sequence[str] | None = None) -> int:
    """Run a command in-process: its exit code; UserError (and usage errors as UsageError) propagate."""
    args = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        rv = cmd.main(list(args), prog_name=cmd.name, standalone_mode=False)  # click consumes its list
    except click.Abort:  # click turns Ctrl-C (and EOF at a prompt) into Abort
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        raise refused(cmd, args, exc) from None
    return EXIT_OK if rv is None else int(rv)


def parse(cmd: click.Command, argv: Sequence[str]) -> SimpleNamespace:
    """A command line's options without running the command (callers reusing a command's checks)."""
    args = [str(a) for a in argv]
    try:
        with cmd.make_context(cmd.name, list(args)) as ctx:  # click consumes its list
            return namespace(ctx.params)
    except click.ClickException as exc:
        raise refused(cmd, args, exc) from None


def refused(cmd: click.Command, args: Sequence[str], exc: click.ClickException) -> UsageError:
    """click's refusal as one line naming the script, the option and where help is."""
    message = (isinstance(exc, click.NoSuchOption) and unknown_options(cmd, args)) or exc.format_message()
    text = " ".join(message.split()).rstrip(".")
    return UsageError(f"{cmd.name}: {text} (see {cmd.name} --help)")


def to_argv(cmd: click.Command, args: SimpleNamespace, *, drop: Sequence[str] = ()) -> list[str]:
    """The command line that gives ``args`` again (flags set, values not None), without the options in ``drop``."""
    out: list[str] = []
    for p in cmd.params:
        value = getattr(args, p.name or "", None)
        if not isinstance(p, click.Option) or p.name in drop or value is None or value is False:
            continue
        if p.is_flag:
            out.append(p.opts[0])
        else:
            for v in value if p.multiple else [value]:
                out += [p.opts[0], str(v)]
    return out


def unknown_options(cmd: click.Command, args: Sequence[str]) -> str:
    """Every unknown option of a command line at once, each with the option it most likely meant."""
    takes_value: dict[str, bool] = {name: False for name in CONTEXT["help_option_names"]}
    for p in cmd.params:
        if isinstance(p, click.Option):
            for name in (*p.opts, *p.secondary_opts):
                takes_value[name] = not (p.is_flag or p.count)
    unknown, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--":
            break
        name = a.split("=", 1)[0]
        if name in takes_value:
            skip = takes_value[name] and "=" not in a
        elif a.startswith("-") and len(a) > 1 and not _is_number(a) and name not in unknown:
            unknown.append(name)
    known = [n for n in takes_value if n.startswith("--")]
    hints = {u: suggestion(u, known) for u in unknown}
    if not unknown:
        return ""
    if len(unknown) == 1:
        u = unknown[0]
        return f"No such option: {u}" + (f". Did you mean {hints[u]}?" if hints[u] else "")
    return "No such options: " + ", ".join(f"{u} (did you mean {hints[u]}?)" if hints[u] else u for u in unknown)


def suggestion(name: str, known: Sequence[str]) -> str:
    """The option(s) an unknown one most likely meant: those it abbreviates, else the closest spellings."""
    import difflib

    matches = [k for k in known if k.startswith(name)] if name.startswith("--") else []
    matches = matches or difflib.get_close_matches(name, known, n=1)
    return " or ".join(matches)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def job_failures(what: str, output_dir: Any):
    """What a job meets outside its inputs (the disk, the output folder, memory) as one UserError line
    naming the file, instead of a traceback: train.py and infer.py run their backend call inside it."""
    try:
        yield
    except OSError as exc:
        import os

        from tao_aoi import atomic

        full = atomic.disk_full(exc, output_dir)
        if full is not None:  # the toolkit's one message for a full disk: free space, rerun the same command
            raise full from None
        name, out = exc.filename, os.path.abspath(output_dir)
        mine = name is None or os.path.abspath(name) == out or os.path.abspath(name).startswith(out + os.sep)
        fix = (f"--output-dir {output_dir} must be a folder you can write, with free space" if mine
               else "check that it exists and is readable")
        raise UserError(f"{what} failed: {exc.strerror or type(exc).__name__}"
                        f"{f': {name}' if name else ''}; {fix}") from None
    except MemoryError:
        raise UserError(f"{what} ran out of memory; free memory or use a smaller training set or batch") from None


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a command's main(); map UserError to exit 2 with one clean line on stderr."""
    try:
        code = main(argv)
    except UserError as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(EXIT_USER)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `next_stage.py | head`
        sys.exit(EXIT_OK)
    sys.exit(code or EXIT_OK)


def emit_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
