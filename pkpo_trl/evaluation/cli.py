"""The command line of `pkpo-eval`: its options, the plan of an evaluation (everything checked before any
generation), and the run over every model."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data import DataArguments, DatasetError, load_task
from ..metrics import default_ks
from ..rewards import get_reward_funcs
from .cache import SampleCache
from .errors import EvalInputError
from .models import (
    ModelSpec,
    by_base,
    check_adapter,
    load_config,
    resolve_model,
)
from .report import markdown_table, write_results
from .runner import evaluate_models
from .sampling import SamplingSettings

__all__ = ["EvalArguments", "EvalPlan", "default_ks", "main", "make_parser", "parse_and_run", "parse_args",
           "prepare", "run"]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass
class EvalArguments:
    """Options of `pkpo-eval`. Options left unset (None), and data options left at their defaults, are taken from
    the first `pkpo-train` run directory among ``--models`` (its ``pkpo_run_config.json``), else from the defaults
    stated."""

    models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Models to compare: hub ids, local model directories, the demo model `gemma-3-270m-gguf`, "
            "PEFT adapter directories, or `pkpo-train` output directories. Also accepted as leading positional "
            "arguments: `pkpo-eval BASE runs/x`."
        },
    )
    adapters: list[str] = field(
        default_factory=list,
        metadata={"help": "PEFT adapters, one per entry of --models (`none` for none), applied on top of that model."},
    )
    labels: list[str] = field(
        default_factory=list,
        metadata={"help": "Names of the models in the table and plot, one per model (default: from the paths)."},
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside each model directory to load (as in pkpo-train)."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Model weights' dtype: `auto` (float32 on CPU, bfloat16 on GPU), `float32`, `bfloat16`."},
    )
    split: str | None = field(
        default=None,
        metadata={"help": "Split to evaluate on (default: the data options' `dataset_test_split`, else `test`)."},
    )
    num_examples: int | None = field(
        default=None,
        metadata={
            "help": "Number of problems, a seeded subset (default: `num_eval_examples`, e.g. a run's; 0: all rows of "
            "a hub split, 200 of a built-in task)."
        },
    )
    num_samples: int = field(default=16, metadata={"help": "Completions sampled per prompt (n)."})
    ks: list[int] | None = field(
        default=None,
        metadata={"help": "The k of pass@k to report, each <= num_samples (default: powers of 2 up to n, and n)."},
    )
    greedy: bool = field(
        default=False, metadata={"help": "Also decode one greedy completion per prompt and report its accuracy."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (default: the run's training temperature, else 1)."}
    )
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling (default: the run's, else 1)."})
    top_k: int | None = field(
        default=None, metadata={"help": "Top-k sampling, 0 for none (default: the run's, else 0)."}
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Completion length limit (default: the run's max_completion_length, else 256)."},
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Reward functions, as in pkpo-train: registered names or import paths 'module:function' or "
            "'pkg.module.function' (default: the run's, else math_verify)."
        },
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of the reward functions (default: the run's, else all 1)."}
    )
    success_threshold: float | None = field(
        default=None,
        metadata={
            "help": "A completion succeeds when its combined reward is >= this (default: the run's "
            "pkpo_success_threshold, else 1)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed (the same for every model: paired comparison)."})
    batch_size: int = field(
        default=64,
        metadata={"help": "Sequences per transformers `generate` call (prompts per call = batch_size // n)."},
    )
    use_vllm: bool = field(
        default=False,
        metadata={"help": "Generate with vLLM (must be installed); adapters are served with vLLM's LoRA support."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.85, metadata={"help": "Fraction of GPU memory vLLM may take."}
    )
    vllm_max_model_len: int | None = field(
        default=None, metadata={"help": "vLLM's max_model_len (prompt + completion); default: the model's."}
    )
    output_dir: str = field(
        default="eval_results",
        metadata={"help": "Where results.json, the plot and the sample caches (samples/<label>.jsonl) go."},
    )
    overwrite_cache: bool = field(
        default=False,
        metadata={"help": "Discard sample caches written with other settings instead of refusing to run."},
    )
    plot: bool = field(default=True, metadata={"help": "Write the pass@k-vs-k plot (pass_at_k.png)."})
    suggest_k: bool = field(
        default=False,
        metadata={
            "help": "k advisor: from each model's per-prompt success counts, print for every k (and the harmonic "
            "mixture) the fraction of prompts whose training groups of --num_generations get a nonzero PKPO "
            "signal, the expected advantage norm, and its share on the hardest quarter of prompts "
            "(docs/choosing-k.md)."
        },
    )
    num_generations: int | None = field(
        default=None, metadata={"help": "Training group size the k advisor assumes (default: --num_samples)."}
    )
    estimator: str = field(
        default="sloo_minus_one", metadata={"help": "PKPO estimator the k advisor assumes (pkpo_estimator)."}
    )

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise EvalInputError(f"--num_samples must be >= 1, got {self.num_samples}.")
        if self.ks is not None:
            if not self.ks or min(self.ks) < 1:
                raise EvalInputError(f"--ks must be positive integers, got {self.ks}.")
            if max(self.ks) > self.num_samples:
                raise EvalInputError(
                    f"--ks asks for pass@{max(self.ks)} but --num_samples is {self.num_samples}: no unbiased "
                    f"estimate of pass@k exists from fewer than k samples. Raise --num_samples or lower --ks."
                )
            self.ks = sorted(set(self.ks))
        if self.batch_size < 1:
            raise EvalInputError(f"--batch_size must be >= 1, got {self.batch_size}.")
        if self.suggest_k:
            from ..estimators import ESTIMATORS

            if self.estimator not in ESTIMATORS:
                raise EvalInputError(f"--estimator {self.estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}.")
            size = self.num_samples if self.num_generations is None else self.num_generations
            if not 2 <= size <= self.num_samples:
                raise EvalInputError(
                    f"--num_generations {size} must lie in [2, --num_samples={self.num_samples}]: the k advisor "
                    "draws each training group from a prompt's samples. Raise --num_samples."
                )


_TRAIN_ONLY_DATA_FIELDS = ("dataset_train_split", "num_train_examples")
# Not listed by --help but accepted (a run's config may carry them): what only pkpo-train reads, and what
# DataArguments refuses anyway.
_HIDDEN_OPTIONS = (*_TRAIN_ONLY_DATA_FIELDS, "dataset_streaming", "ignore_bias_buffers")

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


def make_parser():
    """The command-line parser: evaluation and data options, YAML via ``--config``; ``--help`` lists only what
    evaluation reads."""
    from trl import TrlParser

    parser = TrlParser(
        (EvalArguments, DataArguments), prog="pkpo-eval", usage=_USAGE, description=_DESCRIPTION,
        formatter_class=_HelpFormatter,
    )  # fmt: skip
    # TrlParser reads --config itself, before argparse sees the arguments; listed for --help only (SUPPRESS keeps it
    # out of the parsed namespace).
    parser.add_argument(
        "--config", metavar="EVAL.yaml", default=argparse.SUPPRESS,
        help="YAML file whose keys set any of the options listed here; options on the command line override it.",
    )  # fmt: skip
    for action in parser._actions:
        if action.dest in _HIDDEN_OPTIONS:
            action.help = argparse.SUPPRESS
        elif action.option_strings and action.option_strings[0] == "--no_plot":
            action.help = "Do not write the plot (the same as --plot false)."
        elif action.dest == "models":
            action.help += " (default: none)"
    return parser


def _apply_run_config(args: EvalArguments, data_args: DataArguments, specs: list[ModelSpec]) -> None:
    """Fill unset options from the first run directory's config (data fields left at their defaults, too)."""
    runs = [s for s in specs if s.run_config is not None]
    if not runs:
        return
    run = runs[0].run_config
    for other in runs[1:]:
        mine = {k: v for k, v in run.get("data", {}).items() if k not in _TRAIN_ONLY_DATA_FIELDS}
        theirs = {k: v for k, v in other.run_config.get("data", {}).items() if k not in _TRAIN_ONLY_DATA_FIELDS}
        if mine != theirs:
            logger.warning(
                "%s and %s were trained on different data settings; evaluating both on %s's.",
                runs[0].label, other.label, runs[0].label,
            )  # fmt: skip
    defaults = DataArguments()
    for f in fields(DataArguments):
        if f.name in run.get("data", {}) and getattr(data_args, f.name) == getattr(defaults, f.name):
            setattr(data_args, f.name, run["data"][f.name])
    data_args.__post_init__()
    training, script = run.get("training", {}), run.get("script", {})
    for name in ("temperature", "top_p", "top_k"):
        if getattr(args, name) is None and training.get(name) is not None:
            setattr(args, name, training[name])
    if args.max_new_tokens is None:
        args.max_new_tokens = training.get("max_completion_length")
    if args.reward_funcs is None:
        args.reward_funcs = script.get("reward_funcs")
    if args.reward_weights is None:
        args.reward_weights = training.get("reward_weights")
    if args.success_threshold is None:
        args.success_threshold = training.get("pkpo_success_threshold")


def _labels(args: EvalArguments, specs: list[ModelSpec]) -> None:
    seen: dict[str, int] = {}
    for spec in specs:
        base = spec.label
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            spec.label = f"{base}-{seen[base]}"


@dataclass
class EvalPlan:
    """What :func:`prepare` resolved and checked: everything an evaluation needs, before any generation."""

    specs: list[ModelSpec]  # the models, in the order asked for (labels made unique)
    dataset: Any  # the prompts (a `datasets.Dataset` with "prompt", "answer" and the task's other columns)
    split: str
    reward_funcs: list[Callable[..., Any]]
    reward_names: list[str]
    reward_weights: list[float]
    success_threshold: float
    settings: SamplingSettings
    ks: list[int]
    caches: dict[str, SampleCache]  # label -> that model's sample cache


def prepare(args: EvalArguments, data_args: DataArguments) -> EvalPlan:
    """Resolve and check everything that can be wrong before any generation: models, adapters, data, rewards,
    caches."""
    if not args.models:
        raise EvalInputError("No model to evaluate: pass model paths/ids (`pkpo-eval MODEL [MODEL ...]`).")
    for option in ("adapters", "labels"):
        given = getattr(args, option)
        if given and len(given) != len(args.models):
            raise EvalInputError(f"--{option} needs one entry per model ({len(args.models)}), got {len(given)}.")
    specs = [
        resolve_model(
            entry,
            args.adapters[i] if args.adapters else None,
            args.labels[i] if args.labels else None,
            args.gguf_file,
        )
        for i, entry in enumerate(args.models)
    ]
    _labels(args, specs)
    _apply_run_config(args, data_args, specs)
    # A GGUF config takes seconds to read: once per base.
    configs = {base: load_config(group[0]) for base, group in by_base(specs).items()}
    for spec in specs:
        if spec.adapter:
            check_adapter(spec, configs[spec.base, spec.gguf_file])
    reward_names = list(args.reward_funcs or ["math_verify"])
    try:
        reward_funcs = get_reward_funcs(reward_names, answer_column="answer")
    except ValueError as exc:  # an unknown name or an import path that does not resolve: the user's to fix
        raise EvalInputError(f"--reward_funcs: {exc}") from exc
    weights = args.reward_weights or [1.0] * len(reward_names)
    if len(weights) != len(reward_names):
        raise EvalInputError(f"{len(weights)} reward weights for {len(reward_names)} reward functions.")
    split = args.split or data_args.dataset_test_split or "test"
    num_examples = args.num_examples if args.num_examples is not None else data_args.num_eval_examples
    num_examples = num_examples or None  # 0: all
    model_type = next(iter(configs.values())).model_type  # the first model's
    dataset = load_task(data_args, split, num_examples=num_examples, model_type=model_type)
    ks = list(args.ks or default_ks(args.num_samples))
    settings = SamplingSettings(
        num_samples=args.num_samples,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_p=1.0 if args.top_p is None else args.top_p,
        top_k=0 if args.top_k is None else args.top_k,
        max_new_tokens=args.max_new_tokens or 256,
        seed=args.seed,
        batch_size=args.batch_size,
        greedy=args.greedy,
        engine="vllm" if args.use_vllm else "transformers",
    )
    if args.use_vllm:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise EvalInputError("--use_vllm needs vLLM: pip install 'pkpo-trl[vllm]'.") from exc
    caches = {
        spec.label: SampleCache(
            Path(args.output_dir) / "samples" / f"{spec.label}.jsonl",
            {"model": spec.identity(), "sampling": asdict(settings)},
            overwrite=args.overwrite_cache,
        )
        for spec in specs
    }
    threshold = 1.0 if args.success_threshold is None else args.success_threshold
    return EvalPlan(specs, dataset, split, reward_funcs, reward_names, weights, threshold, settings, ks, caches)


def run(args: EvalArguments, data_args: DataArguments) -> dict[str, Any]:
    """Evaluate every model of ``args``; write results.json and the plot; print the table. Returns the results."""
    plan = prepare(args, data_args)
    results: dict[str, Any] = {
        "settings": {
            "sampling": asdict(plan.settings),
            "ks": plan.ks,
            "rewards": plan.reward_names,
            "reward_weights": plan.reward_weights,
            "success_threshold": plan.success_threshold,
            "data": {**asdict(data_args), "split": plan.split},
            "num_prompts": len(plan.dataset),
        },
        "models": {},
    }
    results["models"] = evaluate_models(
        plan, dtype=args.dtype, vllm_max_model_len=args.vllm_max_model_len,
        vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
    )  # fmt: skip
    out = Path(args.output_dir)
    write_results(results, out)
    print(markdown_table(results))
    if args.suggest_k:
        _print_k_advice(args, results)
        write_results(results, out)
    print(f"\nresults: {out / 'results.json'}")
    if args.plot:
        from ..plotting import plot_pass_at_k_curves

        path = plot_pass_at_k_curves(results, out / "pass_at_k.png")
        results["plot"] = str(path)
        print(f"plot: {path}")
    return results


def _print_k_advice(args: EvalArguments, results: dict[str, Any]) -> None:
    """The k advisor's table per model (``--suggest_k``), also stored under each model's ``"k_advice"``."""
    from dataclasses import asdict as as_dict

    from ..k_advisor import advice_table, suggest_k

    size = args.num_samples if args.num_generations is None else args.num_generations
    for label, stats in results["models"].items():
        advice = suggest_k(stats["correct"], stats["num_samples"], size, args.estimator)
        stats["k_advice"] = {"num_generations": size, "estimator": args.estimator,
                             "candidates": [as_dict(a) for a in advice]}  # fmt: skip
        print(f"\nk advisor, {label}: training groups of {size}, estimator {args.estimator}\n")
        print(advice_table(advice))


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
        *parsed, remaining = parser.parse_args_and_config(
            args=_split_positional(list(argv)), return_remaining_strings=True
        )
    except EvalInputError:
        raise
    except ValueError as exc:  # a DataArguments value (prompt_format, num_eval_examples, ...)
        raise EvalInputError(str(exc)) from exc
    args, data_args = parsed
    if unknown := [item for item in remaining if item.startswith("-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.models = [*args.models, *remaining]
    return args, data_args


def parse_and_run(argv: Sequence[str]) -> dict[str, Any]:
    """Parse command-line arguments (:func:`parse_args`) and :func:`run` them."""
    return run(*parse_args(argv))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (`pkpo-eval`, `python -m pkpo_trl.evaluate`): bad input ends with a one-line message."""
    try:
        parse_and_run(sys.argv[1:] if argv is None else argv)
    except (EvalInputError, DatasetError) as exc:
        raise SystemExit(f"pkpo-eval: error: {exc}") from exc


if __name__ == "__main__":
    main()
