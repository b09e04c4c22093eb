"""`pkpo-train`: fine-tune a causal LM for pass@k with PKPOTrainer, from a YAML recipe.

    accelerate launch --config_file recipes/accelerate/cpu.yaml --num_cpu_threads_per_process 2 \
        -m pkpo_trl.train --config recipes/quickstart.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m pkpo_trl.train \
        --config recipes/gemma2_9b_it_gsm8k_lora_vllm.yaml --learning_rate 5e-6

Like ``trl/scripts/grpo.py``, a thin ``main`` over ``TrlParser``: parse, build, train, save. The run config, model
card and plot are written by :class:`~pkpo_trl.callbacks.RunArtifactsCallback`, as for a library user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import sys
import textwrap
import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser, get_peft_config, get_quantization_config

from .callbacks import PassAtKCallback, RunArtifactsCallback
from .config import REMOVED_K_FIELDS, PKPOConfig
from .console import LOG_FORMATS, data_phase, model_phase, say, training_phase, use_log_format
from .data import DataArguments, load_datasets
from .metrics import default_ks
from .models import load_model_and_tokenizer
from .rewards import get_reward_funcs
from .run_dir import check_output_dir, remove_checkpoints, resume_checkpoint, run_config
from .trainer import PKPOTrainer
from .vllm_cpu import prepare_vllm_for_weight_sync

__all__ = ["TrainInputError", "TrainScriptArguments", "main", "make_parser", "parse_args", "run"]

logger = logging.getLogger(__name__)


class TrainInputError(ValueError):
    """A run cannot start: an option, the recipe, the data, the model or the output directory is wrong. Raised
    before training; ``pkpo-train`` prints it as one line (no traceback)."""


@contextlib.contextmanager
def _input_errors():
    """Turn the ValueError (and, loading a model or a file, OSError) of a user's mistake into a TrainInputError."""
    try:
        yield
    except TrainInputError:
        raise
    except (ValueError, OSError) as exc:
        raise TrainInputError(str(exc)) from exc


@dataclass
class TrainScriptArguments:
    """Options of the `pkpo-train` script itself."""

    trainer: str = field(
        default="pkpo",
        metadata={
            "help": "'pkpo' (PKPOTrainer) or 'grpo' (TRL's GRPOTrainer with TRL's defaults and the run's other "
            "options, for baselines; pkpo_* options are then ignored, with one log line).",
            "choices": ["pkpo", "grpo"],
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_verify"],
        metadata={
            "help": "Reward functions: registered names (math_verify, exact_match, numeric_match, first_number, "
            "format) or import paths 'module:function' or 'pkg.module.function'. Combined with --reward_weights."
        },
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "GGUF file inside --model_name_or_path to load (transformers de-quantizes it)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an output directory that holds another run (its checkpoint-* folders are "
            "deleted). Without it, such a directory is refused unless resuming."
        },
    )
    pass_at_ks: list[int] | None = field(
        default=None,
        metadata={
            "help": "Fixed ks whose pass@k is logged as `pass@k/<k>` (PassAtKCallback); default: powers of 2 up to "
            "num_generations, and num_generations."
        },
    )
    plot: bool = field(
        default=True,
        metadata={"help": "Whether to write a plot of pass@1 / pass@k against step next to the output directory."},
    )
    log_format: str = field(
        default="compact",
        metadata={
            "help": "Console line per logged step: 'compact' (step, loss, reward, pass@1, pass@k, k, s/step) or "
            "'raw' (transformers' full metrics dict). trainer_state.json and the trackers get the full dict.",
            "choices": list(LOG_FORMATS),
        },
    )

    def __post_init__(self):
        # A recipe's values never meet argparse's types or choices: check them here, before anything loads.
        for name in ("trainer", "log_format"):
            choices = next(f for f in dataclasses.fields(self) if f.name == name).metadata["choices"]
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {choices}.")
        if not isinstance(self.reward_funcs, list) or not all(isinstance(name, str) for name in self.reward_funcs):
            raise ValueError(f"reward_funcs={self.reward_funcs!r} must be a list of names, e.g. [math_verify].")
        if self.pass_at_ks is not None and (
            not isinstance(self.pass_at_ks, list)
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.pass_at_ks)
        ):
            raise ValueError(f"pass_at_ks={self.pass_at_ks!r} must be a list of integers >= 1, e.g. [1, 4, 8].")


# `--help` shows these (and every option of the script, the data and PKPO); `--help-all` adds TRL's ~300 others.
COMMON_OPTIONS = ("model_name_or_path", "use_peft", "output_dir", "num_generations", "per_device_train_batch_size",
                  "gradient_accumulation_steps", "max_steps", "learning_rate", "use_vllm", "seed")  # fmt: skip
USAGE = "accelerate launch -m pkpo_trl.train --config RECIPE.yaml [--OPTION VALUE ...]   (or: pkpo-train ...)"


def short_help() -> str:
    """``--help``: the script's, the data's and PKPO's options and the common TRL ones, each with its help."""
    sections = [
        ("script options", TrainScriptArguments, None),
        ("data options", DataArguments, {f.name for f in dataclasses.fields(DataArguments)} - {"dataset_streaming",
                                                                                                "ignore_bias_buffers"}),
        ("PKPO options", PKPOConfig, {"pkpo_k", "pkpo_estimator", "pkpo_success_threshold", "scale_rewards"}),
        ("common TRL options (--help-all lists all)", (PKPOConfig, ModelConfig), set(COMMON_OPTIONS)),
    ]  # fmt: skip
    lines = [f"usage: {USAGE}", "", "  --config RECIPE.yaml  a YAML recipe; command-line options override its keys"]
    for heading, types, names in sections:
        lines += ["", f"{heading}:"]
        for dtype in types if isinstance(types, tuple) else (types,):
            for f in dataclasses.fields(dtype):
                if f.init and (names is None or f.name in names):
                    text = " ".join(str(f.metadata.get("help", "")).split())
                    lines.append(f"  --{f.name}\n      " + "\n      ".join(textwrap.wrap(text, 100)))
    return "\n".join(lines)


def make_parser() -> TrlParser:
    """The command-line parser: script, data, PKPO and model options; YAML recipes via ``--config``."""
    return TrlParser((TrainScriptArguments, DataArguments, PKPOConfig, ModelConfig), prog="pkpo-train")


def _unknown_options(parser: TrlParser, argv: list[str], from_recipe: list[str], from_cli: list[str]) -> str | None:
    """One line for the first unknown option: the one it replaced (a removed k field) or the closest valid name,
    and where it came from."""
    known = sorted({action.dest for action in parser._actions})
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    for items, where in ((from_cli, "on the command line"), (from_recipe, f"in {config}")):
        for item in items:
            if not item.startswith("--"):
                continue
            name = item[2:].split("=")[0]
            if name in REMOVED_K_FIELDS:
                return f"{name} ({where}) was removed: k is one option now, e.g. {REMOVED_K_FIELDS[name]}."
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else " (pkpo-train --help lists the options)"
            return f"unknown option {name} {where}{hint}"
    return None


def parse_args(argv: list[str] | None = None) -> tuple:
    """Parse the command line (and its ``--config`` recipe) into script, data, trainer and model arguments. With
    ``trainer: grpo`` the trainer arguments are :meth:`~pkpo_trl.PKPOConfig.to_grpo_config`'s TRL config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if "--help-all" in argv:
        parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        print(short_help())
        raise SystemExit(0)
    with _input_errors():
        *parsed, from_recipe, from_cli = parser.parse_args_and_config(
            args=argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        if problem := _unknown_options(parser, argv, from_recipe, from_cli):
            raise TrainInputError(problem)
        for arguments in parsed:  # argparse checks `choices` only for values typed on the command line
            for f in dataclasses.fields(arguments):
                value, choices = getattr(arguments, f.name, None), f.metadata.get("choices")
                if choices is not None and value is not None and value not in choices:
                    raise TrainInputError(
                        f"{f.name}={value!r} is not one of its values: {', '.join(map(str, choices))}."
                    )
                if "list[" in str(f.type) and value is not None and not isinstance(value, list | tuple):
                    raise TrainInputError(f"{f.name}={value!r} must be a list, e.g. {f.name}: [{value}] in a recipe.")
        script, data, training, model = parsed
        if script.trainer == "grpo":
            training = training.to_grpo_config()
    return script, data, training, model


def build_trainer(script_args, data_args, training_args: GRPOConfig, model_args: ModelConfig):
    """Everything :func:`run` does before training, where any bad input shows: ``(trainer, tokenizer, resume)``."""
    resume = resume_checkpoint(training_args)
    sections = {name: dataclasses.asdict(args) for name, args in (("script", script_args), ("data", data_args),
                                                                  ("model", model_args))}  # fmt: skip
    check_output_dir(training_args.output_dir, run_config(training_args, sections), resume is not None,
                     script_args.overwrite_output_dir)  # fmt: skip
    reward_funcs = get_reward_funcs(script_args.reward_funcs, answer_column="answer")  # before the model loads
    say(model_phase(model_args.model_name_or_path, script_args.gguf_file, model_args.dtype or "float32"))
    quantization = get_quantization_config(model_args)
    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path,
        gguf_file=script_args.gguf_file,
        torch_dtype=model_args.dtype or "float32",
        attn_implementation=model_args.attn_implementation,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        **({"quantization_config": quantization} if quantization is not None else {}),
    )
    train_dataset, eval_dataset = load_datasets(data_args, tokenizer, model.config.model_type)
    say(data_phase(data_args, train_dataset, eval_dataset))
    callbacks = [
        PassAtKCallback(script_args.pass_at_ks or default_ks(training_args.num_generations)),
        RunArtifactsCallback(sections, gguf_file=script_args.gguf_file, plot=script_args.plot),
    ]
    prepare_vllm_for_weight_sync(training_args.use_vllm, training_args.vllm_mode)  # the GRPO baseline needs it too
    trainer = (PKPOTrainer if script_args.trainer == "pkpo" else GRPOTrainer)(
        model,
        reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    for callback in callbacks:
        callback.attach(trainer)  # PKPOTrainer attached them already; GRPOTrainer needs this
    use_log_format(trainer, script_args.log_format)  # here, not in PKPOTrainer: library users keep TRL's console
    if script_args.overwrite_output_dir and resume is None and trainer.accelerator.is_main_process:
        if removed := remove_checkpoints(training_args.output_dir):
            logger.warning("--overwrite_output_dir: removed %s from %s", ", ".join(removed), training_args.output_dir)
    return trainer, tokenizer, resume


def run(script_args, data_args, training_args: GRPOConfig, model_args: ModelConfig):
    """Load model, data and rewards, train, save the model or adapter (and tokenizer); returns the trainer.

    Raises:
        TrainInputError: something given is wrong (output directory, model, data, rewards, options); raised
            before training starts.
    """
    with _input_errors():
        trainer, tokenizer, resume = build_trainer(script_args, data_args, training_args, model_args)
    say(training_phase(trainer.args, resume))
    trainer.train(resume_from_checkpoint=resume)
    say(f"saving the {'LoRA adapter' if model_args.use_peft else 'model'} to {training_args.output_dir}")
    with warnings.catch_warnings():
        # PEFT looks for the base's config.json to see whether the vocabulary was resized; a GGUF base has none, and
        # PEFT warns that it "will assume that the vocabulary was not modified", which is true here.
        warnings.filterwarnings("ignore", message="Could not find a config file in")
        trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        print(f"model{' adapter' if model_args.use_peft else ''} saved to {training_args.output_dir}")
    return trainer


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`pkpo-train`, `python -m pkpo_trl.train`): bad input ends with a one-line message."""
    try:
        run(*parse_args(argv))
    except TrainInputError as exc:
        raise SystemExit(f"pkpo-train: error: {exc}") from exc


if __name__ == "__main__":
    main()
