"""The command line of `pkpo-eval`: its parser (the options of :class:`EvalArguments`, YAML via ``--config``) and
:func:`main`, which plans (:func:`~pkpo_trl.evaluation.plan.prepare`) and runs
(:func:`~pkpo_trl.evaluation.runner.run`) the evaluation."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from ..data import DataArguments, DatasetError
from .errors import EvalInputError
from .options import HIDDEN_OPTIONS, EvalArguments
from .plan import prepare
from .runner import run

__all__ = ["main", "make_parser", "parse_and_run", "parse_args"]


_USAGE = "pkpo-eval MODEL [MODEL ...] [--config EVAL.yaml] [--OPTION VALUE ...]"
_DESCRIPTION = """\
Measure pass@k of one or more models on the same prompts with the same seeds (a paired comparison), and
report it in one table (pass@k +- standard error), results.json and one plot. A MODEL is a hub id, a local
model directory, a PEFT adapter directory or a pkpo-train output directory (whose data, reward and sampling
settings become this evaluation's defaults). Samples are cached under --output_dir: an interrupted
evaluation resumes, and a re-score with other --reward_funcs generates nothing. Options can also be set in a
YAML file passed with --config; the command line overrides it. Example:

  pkpo-eval google/gemma-2-2b-it runs/gsm8k --dataset_name openai/gsm8k --num_samples 16 --ks 1 4 16"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written, and each option's default printed once: after its help, unless the help
    states its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, [], argparse.SUPPRESS)
            or action.option_strings[0].startswith("--no_")
        ):
            return text
        return f"{text} (default: {default})"

    def _format_action_invocation(self, action: argparse.Action) -> str:
        # One spelling per option: HfArgumentParser adds a dashed alias of each (`--num-samples`), which doubled
        # the help's length.
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        return (
            f"{action.option_strings[0]} {self._format_args(action, self._get_default_metavar_for_optional(action))}"
        )


def make_parser():
    """The command-line parser: evaluation and data options, YAML via ``--config``; ``--help`` lists only what
    evaluation reads."""
    from trl import TrlParser

    parser = TrlParser(
        (EvalArguments, DataArguments), prog="pkpo-eval", usage=_USAGE, description=_DESCRIPTION,
        formatter_class=_HelpFormatter, allow_abbrev=False,  # `--num_sample 4` is a typo, not --num_samples
    )  # fmt: skip
    # TrlParser reads --config itself, before argparse sees the arguments; listed for --help only (SUPPRESS keeps it
    # out of the parsed namespace).
    parser.add_argument(
        "--config", metavar="EVAL.yaml", default=argparse.SUPPRESS,
        help="YAML file whose keys set any of the options listed here; options on the command line override it.",
    )  # fmt: skip
    for action in parser._actions:
        if action.dest in HIDDEN_OPTIONS:
            action.help = argparse.SUPPRESS
        elif action.option_strings and action.option_strings[0] == "--no_plot":
            action.help = "Do not write the plot (the same as --plot false)."
        elif action.dest == "models":
            action.help += " (default: none)"
        elif action.dest in _DATA_HELP:  # TRL's help of these names a `datasets` option that pkpo-eval lacks
            action.help = _DATA_HELP[action.dest]
    return parser


_DATA_HELP = {
    "dataset_config": "Configuration (subset) of a hub data set: the `name` argument of `datasets.load_dataset`.",
    "dataset_test_split": "Split to evaluate on when --split is not given.",
}


def _did_you_mean(parser: argparse.ArgumentParser, option: str, prefix: str = "--") -> str:
    """`` (did you mean --x?)`` for the listed option closest to ``option`` (``--x`` or ``--x=value``), or ``""``;
    ``prefix=""`` names it as a YAML key."""
    names = [name for action in parser._actions if action.help != argparse.SUPPRESS for name in action.option_strings]
    close = difflib.get_close_matches(option.split("=")[0], names, n=1)
    return f" (did you mean {prefix}{close[0].removeprefix('--')}?)" if close else ""


def _split_positional(argv: list[str]) -> list[str]:
    # `pkpo-eval A B --opt x` means `--models A B --opt x`: HfArgumentParser has no positional arguments.
    positional = []
    while argv and not argv[0].startswith("-"):
        positional.append(argv.pop(0))
    return ["--models", *positional, *argv] if positional else argv


def parse_args(argv: Sequence[str]) -> tuple[EvalArguments, DataArguments]:
    """``(EvalArguments, DataArguments)`` of a command line whose model paths may come first, last or between
    options (``pkpo-eval --num_samples 4 runs/x``): what no option takes is a model; an unknown option is an error.

    Raises:
        EvalInputError: an option's value is refused (the message names it).
    """
    parser = make_parser()
    try:
        *parsed, from_config, remaining = parser.parse_args_and_config(
            args=_split_positional(list(argv)), return_remaining_strings=True, separate_remaining_strings=True
        )
    except EvalInputError:
        raise
    except ValueError as exc:  # a DataArguments value (prompt_format, num_eval_examples, ...)
        raise EvalInputError(str(exc)) from exc
    except (OSError, yaml.YAMLError) as exc:  # the --config file: missing, unreadable or not YAML
        raise EvalInputError(f"--config: {' '.join(str(exc).split())}") from exc  # one line
    args, data_args = parsed
    if unknown := [item for item in from_config if item.startswith("--")]:
        config = argv[list(argv).index("--config") + 1]
        raise EvalInputError(f"{config}: unknown key {unknown[0][2:]}{_did_you_mean(parser, unknown[0], '')}.")
    if unknown := [item for item in remaining if item.startswith("-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(parser, unknown[0])}")
    args.models = [*args.models, *remaining]
    args.typed = _typed_options(parser, list(argv))
    return args, data_args


def _typed_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options given on the command line or in its ``--config`` file: they win over a run directory's values,
    even where they equal the default."""
    typed = set()
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        with open(argv[argv.index("--config") + 1]) as f:
            typed.update(yaml.safe_load(f) or {})
    for action in parser._actions:
        if any(item == option or item.startswith(f"{option}=") for option in action.option_strings for item in argv):
            typed.add(action.dest)
    return typed


def parse_and_run(argv: Sequence[str]) -> dict[str, Any]:
    """Parse command-line arguments (:func:`parse_args`), plan the evaluation and run it: :func:`main` without
    the exit. Returns the results."""
    return run(prepare(*parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (`pkpo-eval`, `python -m pkpo_trl.evaluation`): bad input ends with a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    if not {"-h", "--help"} & set(argv):
        print("[pkpo-eval] checking models, data and caches", flush=True)
    try:
        parse_and_run(argv)
    except (EvalInputError, DatasetError) as exc:
        raise SystemExit(f"pkpo-eval: error: {exc}") from exc


if __name__ == "__main__":
    main()
