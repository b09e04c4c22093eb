"""`pkpo-train`: fine-tune a causal LM for pass@k with PKPOTrainer, from a YAML recipe.

    accelerate launch --config_file recipes/accelerate/cpu.yaml --num_cpu_threads_per_process 2 \
        -m pkpo_trl.train --config recipes/quickstart.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m pkpo_trl.train \
        --config recipes/gemma2_9b_it_gsm8k_lora_vllm.yaml --learning_rate 5e-6

Every field of :class:`TrainScriptArguments`, :class:`~pkpo_trl.data.DataArguments`,
:class:`~pkpo_trl.PKPOConfig` and TRL's ``ModelConfig`` can be set in the recipe and overridden on
the command line (``--help`` lists them). Like ``trl/scripts/grpo.py``, this is a thin ``main``:
the work is in the library.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from trl import GRPOConfig, ModelConfig, TrlParser, get_peft_config, get_quantization_config

from .callbacks import PassAtKCallback
from .choices import check_fixed_values
from .config import PKPOConfig, check_group_sizes
from .console import LOG_FORMATS, data_phase, model_phase, say, training_phase, use_log_format
from .data import DataArguments, load_datasets
from .metrics import default_ks
from .model_card import write_model_card
from .models import load_model_and_tokenizer
from .rewards import get_reward_funcs
from .run_dir import RUN_CONFIG_FILE, check_output_dir, remove_checkpoints, resume_checkpoint, run_config
from .vllm_cpu import prepare_vllm_for_weight_sync

__all__ = ["TrainInputError", "TrainScriptArguments", "main", "make_parser", "parse_args", "run"]

logger = logging.getLogger(__name__)


TRAINERS = ("pkpo", "grpo")


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


def check_trainer(trainer: object) -> str:
    """``trainer`` if it is one of :data:`TRAINERS`, else a TrainInputError: a recipe's value never meets argparse's
    ``choices``, and anything but ``"pkpo"`` would otherwise train TRL's GRPOTrainer."""
    if trainer not in TRAINERS:
        raise TrainInputError(f"trainer={trainer!r} is unknown: use trainer: pkpo (PKPOTrainer) or grpo (TRL's GRPO).")
    return trainer


@dataclass
class TrainScriptArguments:
    """Options of the `pkpo-train` script itself."""

    trainer: str = field(
        default="pkpo",
        metadata={
            "help": "'pkpo' (PKPOTrainer) or 'grpo' (TRL's GRPOTrainer on a plain GRPOConfig with TRL's defaults, "
            "for baselines: pkpo_* options are then ignored, with one log line).",
            "choices": list(TRAINERS),
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
            "help": "Start a new run in an output directory that holds another run (checkpoints, or a different "
            "config); its old checkpoint-* folders are deleted. Without it, such a directory is refused unless "
            "resuming."
        },
    )
    pass_at_ks: list[int] | None = field(
        default=None,
        metadata={
            "help": "Fixed ks whose pass@k is logged as `pass@k/<k>` for both trainers (PassAtKCallback); default: "
            "powers of 2 up to num_generations, and num_generations (pkpo_trl.metrics.default_ks)."
        },
    )
    plot: bool = field(
        default=True,
        metadata={"help": "Write a plot of pass@1 / pass@k against step next to the output directory at the end."},
    )
    log_format: str = field(
        default="compact",
        metadata={
            "help": "Console line per logged step: 'compact' (step, loss, reward, pass@1, pass@k, k, s/step) or "
            "'raw' (transformers' full metrics dict). trainer_state.json and the trackers get the full dict.",
            "choices": list(LOG_FORMATS),
        },
    )


# `--help` headings, in the order they are printed: what a user of this script sets first, then TRL's
# ~300 GRPO / transformers training options last.
_HEADINGS = {
    TrainScriptArguments: "script options (pkpo-train)",
    DataArguments: "data options (pkpo_trl.data.DataArguments, a trl.ScriptArguments)",
    "pkpo": "PKPO options (pkpo_trl.PKPOConfig)",
    ModelConfig: "model and LoRA options (trl.ModelConfig)",
    "training": "GRPO and training options (trl.GRPOConfig, transformers.TrainingArguments)",
}


class _TrainParser(TrlParser):
    """TrlParser whose ``--help`` shows ``--config`` and groups the options under headings (script, data, PKPO,
    model, then GRPO/training), instead of one flat list where PKPO's options come after TRL's."""

    def __init__(self, dataclass_types):
        self._groups: dict[str, argparse._ArgumentGroup] = {}
        super().__init__(
            dataclass_types,
            prog="pkpo-train",
            # argparse's generated usage lists all ~400 options; the headings below say what there is.
            usage="accelerate launch -m pkpo_trl.train [--config RECIPE.yaml] [--OPTION VALUE ...]\n"
            "       pkpo-train [--config RECIPE.yaml] [--OPTION VALUE ...]",
            description="Fine-tune a causal LM for pass@k with PKPOTrainer (or TRL's GRPOTrainer, --trainer grpo). "
            "Every option can be set in a YAML recipe passed with --config and overridden on the command line.",
        )
        # argparse prints groups in creation order: move TRL's long list of training options to the end.
        training = self._groups.get(_HEADINGS["training"])
        if training is not None:
            self._action_groups.remove(training)
            self._action_groups.append(training)

    def _group(self, heading: str) -> argparse._ArgumentGroup:
        if heading not in self._groups:
            self._groups[heading] = self.add_argument_group(heading)
            if not self._groups.get("recipe"):
                # TrlParser reads --config itself (before argparse sees the arguments); listed here for --help.
                # SUPPRESS keeps it out of the parsed namespace.
                self._groups["recipe"] = self._groups[heading]
                self._groups[heading].add_argument(
                    "--config",
                    metavar="RECIPE.yaml",
                    default=argparse.SUPPRESS,
                    help="YAML recipe (e.g. recipes/quickstart.yaml) whose keys set any option below; options given "
                    "on the command line override it.",
                )
        return self._groups[heading]

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """argparse's parse, then the group sizes checked on the parsed values: HfArgumentParser builds the configs
        from them right after this, and a plain GRPOConfig (``--trainer grpo``) fails on ``num_generations=0`` with
        a ZeroDivisionError in its ``__post_init__``, before any check of ours could see the built config."""
        parsed, remaining = super().parse_known_args(args, namespace)
        if hasattr(parsed, "num_generations"):  # a parser of other dataclasses (none here today) has no such field
            check_group_sizes(parsed)
        return parsed, remaining

    def _add_dataclass_arguments(self, dtype) -> None:
        hints = typing.get_type_hints(dtype)
        own = {f.name for f in dataclasses.fields(PKPOConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}
        for dc_field in dataclasses.fields(dtype):
            if not dc_field.init:
                continue
            if dtype in _HEADINGS:
                heading = _HEADINGS[dtype]
            elif dc_field.name in own or (dc_field.name == "scale_rewards" and dtype is PKPOConfig):
                heading = _HEADINGS["pkpo"]
            else:
                heading = _HEADINGS["training"]
            dc_field.type = hints[dc_field.name]
            self._parse_dataclass_field(self._group(heading), dc_field)


def make_parser(trainer: str = "pkpo") -> TrlParser:
    """The command-line parser: script, data, PKPO (or, for ``trainer="grpo"``, TRL's GRPO) and model options,
    YAML recipes via ``--config``."""
    config_class = GRPOConfig if trainer == "grpo" else PKPOConfig
    return _TrainParser((TrainScriptArguments, DataArguments, config_class, ModelConfig))


def _requested_trainer(argv: list[str]) -> str:
    """The ``trainer`` asked for on the command line, else in the ``--config`` recipe, else ``"pkpo"``."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--trainer")
    peek.add_argument("--config")
    known, _ = peek.parse_known_args(argv)
    if known.trainer is not None:
        return check_trainer(known.trainer)
    if known.config is not None and Path(known.config).is_file():
        recipe = yaml.safe_load(Path(known.config).read_text())
        if isinstance(recipe, dict) and recipe.get("trainer") is not None:
            return check_trainer(recipe["trainer"])
    return "pkpo"


def parse_args(argv: list[str] | None = None) -> tuple:
    """Parse the command line (and its ``--config`` recipe) into script, data, trainer and model arguments.

    With ``trainer: grpo`` the trainer config is a plain :class:`trl.GRPOConfig` with TRL's own defaults (e.g.
    ``scale_rewards="group"``), so the baseline is TRL's GRPO; the ``pkpo_*`` options a PKPO recipe carries are
    ignored, with one log line naming them. Any other unknown option is an error, as in TrlParser.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    trainer = _requested_trainer(argv)
    parser = make_parser(trainer)
    with _input_errors():
        if trainer != "grpo":
            parsed = parser.parse_args_and_config(args=argv)
            _check_parsed(parsed)
            return parsed
        *parsed, from_recipe, from_command_line = parser.parse_args_and_config(
            args=argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        _check_parsed(parsed)
    unknown = [item for item in from_recipe + from_command_line if item.startswith("--")]
    if not_pkpo := [item for item in unknown if not item.startswith("--pkpo_")]:
        parser.error(f"unrecognized arguments: {' '.join(not_pkpo)}")
    if unknown:
        names = ", ".join(sorted({item[2:].split("=")[0] for item in unknown}))
        logger.warning("--trainer grpo: the PKPO options %s are ignored (TRL's GRPOTrainer and GRPOConfig).", names)
    return tuple(parsed)


def _check_parsed(parsed) -> None:
    """Check what argparse checks only for values typed on the command line (``choices``), whatever their source,
    and TRL's fields with a fixed set of values but no ``choices``."""
    for arguments in parsed:
        check_fixed_values(arguments)
    check_trainer(parsed[0].trainer)


def _build(script_args, data_args, training_args: GRPOConfig, model_args: ModelConfig):
    """Everything :func:`run` does before training, where any bad input shows: ``(trainer, tokenizer, resume)``."""
    from trl import GRPOTrainer

    from .trainer import PKPOTrainer

    check_trainer(script_args.trainer)
    if script_args.trainer == "grpo" and isinstance(training_args, PKPOConfig):
        raise TypeError(
            "trainer='grpo' needs a plain trl.GRPOConfig (TRL's defaults, e.g. scale_rewards='group'), got a "
            "PKPOConfig; pkpo_trl.train.parse_args builds one for --trainer grpo."
        )
    check_group_sizes(training_args)  # a GRPOConfig built in Python may hold num_generations_eval=0 (TRL: unset)
    resume = resume_checkpoint(training_args)
    config = run_config(script_args, data_args, training_args, model_args)
    check_output_dir(training_args.output_dir, config, resume is not None, script_args.overwrite_output_dir)
    # Before the model: an unknown reward name must not wait for a model to load to be refused.
    reward_funcs = get_reward_funcs(script_args.reward_funcs, answer_column="answer")

    quantization = get_quantization_config(model_args)
    say(model_phase(model_args.model_name_or_path, script_args.gguf_file, model_args.dtype or "float32"))
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
    trainer_cls = PKPOTrainer if script_args.trainer == "pkpo" else GRPOTrainer
    ks = script_args.pass_at_ks or default_ks(training_args.num_generations)
    pass_at_k = PassAtKCallback(ks)  # the same fixed-k numbers and solved count for --trainer pkpo and grpo
    # PKPOTrainer does this itself; the GRPO baseline needs it too on vLLM's CPU build (see vllm_cpu.py).
    prepare_vllm_for_weight_sync(training_args.use_vllm, training_args.vllm_mode)
    trainer = trainer_cls(
        model,
        reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[pass_at_k],
    )
    pass_at_k.attach(trainer)  # PKPOTrainer attached it already; GRPOTrainer needs this
    use_log_format(trainer, script_args.log_format)  # here, not in PKPOTrainer: library users keep TRL's console
    if trainer.accelerator.is_main_process:
        if script_args.overwrite_output_dir and resume is None:
            removed = remove_checkpoints(training_args.output_dir)
            if removed:
                logger.warning(
                    "--overwrite_output_dir: removed %s from %s", ", ".join(removed), training_args.output_dir
                )
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(training_args.output_dir) / RUN_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return trainer, tokenizer, resume


def run(script_args, data_args, training_args: GRPOConfig, model_args: ModelConfig):
    """Load model, data and rewards, train, save the model/adapter and the plot; returns the trainer.

    ``script_args.trainer`` picks PKPOTrainer (``training_args`` a :class:`~pkpo_trl.PKPOConfig`) or TRL's
    GRPOTrainer (a plain :class:`trl.GRPOConfig`, as :func:`parse_args` builds it for ``--trainer grpo``).

    Raises:
        TrainInputError: something given is wrong (output directory, model, data, rewards, options); raised
            before training starts.
    """
    with _input_errors():
        trainer, tokenizer, resume = _build(script_args, data_args, training_args, model_args)
    say(training_phase(trainer.args, resume))
    trainer.train(resume_from_checkpoint=resume)
    say(f"saving the {'LoRA adapter' if model_args.use_peft else 'model'} to {training_args.output_dir}")
    with warnings.catch_warnings():
        # PEFT looks for the base's config.json to see whether the vocabulary was resized; a GGUF base has none,
        # and PEFT warns that it "will assume that the vocabulary was not modified", which is true here (the
        # embeddings are not trained). The model card says how to load such an adapter.
        warnings.filterwarnings("ignore", message="Could not find a config file in")
        trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        out = Path(training_args.output_dir)
        say(f"writing the model card {out / 'README.md'}{' and the plot' if script_args.plot else ''}")
        write_model_card(
            script_args, data_args, training_args, model_args, trainer.state.log_history, len(trainer.train_dataset)
        )
        if script_args.plot:
            from .plotting import plot_pass_at_k

            path = plot_pass_at_k(trainer.state.log_history, out.with_name(out.name + "-pass_at_k.png"))
            print(f"pass@1 / pass@k plot written to {path}")
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
