"""`pkpo-train`: fine-tune a causal LM for pass@k with PKPOTrainer, from a YAML recipe.

    accelerate launch -m pkpo_trl.train --config recipes/quickstart.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m pkpo_trl.train \
        --config recipes/gemma2_2b_gsm8k_lora_vllm.yaml --learning_rate 5e-6

Every field of :class:`TrainScriptArguments`, :class:`~pkpo_trl.data.DataArguments`,
:class:`~pkpo_trl.PKPOConfig` and TRL's ``ModelConfig`` can be set in the recipe and overridden on
the command line (``--help`` lists them). Like ``trl/scripts/grpo.py``, this is a thin ``main``:
the work is in the library.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from .config import PKPOConfig
from .data import DataArguments, load_datasets
from .models import load_model_and_tokenizer
from .rewards import get_reward_funcs
from .vllm_cpu import prepare_vllm_for_weight_sync

__all__ = ["TrainScriptArguments", "main", "make_parser"]

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "pkpo_run_config.json"
# Settings that may differ between a run and its continuation without making it a different run.
_RESUMABLE_KEYS = {
    "output_dir", "logging_dir", "resume_from_checkpoint", "overwrite_output_dir", "report_to", "run_name",
    "logging_steps", "save_steps", "save_total_limit", "max_steps", "num_train_epochs", "eval_steps",
    "push_to_hub", "hub_model_id", "hub_token", "dataloader_num_workers", "disable_tqdm", "plot",
}  # fmt: skip


@dataclass
class TrainScriptArguments:
    """Options of the `pkpo-train` script itself."""

    trainer: str = field(
        default="pkpo",
        metadata={
            "help": "'pkpo' (PKPOTrainer) or 'grpo' (TRL's GRPOTrainer on the same config, for baselines: the pkpo_* "
            "fields are then ignored).",
            "choices": ["pkpo", "grpo"],
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_verify"],
        metadata={
            "help": "Reward functions: registered names (math_verify, exact_match, numeric_match, first_number, "
            "format) or import paths 'module:function'. Combined with --reward_weights."
        },
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "GGUF file inside --model_name_or_path to load (transformers de-quantizes it)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start a new run in an output directory that holds a run with a different config."},
    )
    plot: bool = field(
        default=True,
        metadata={"help": "Write a plot of pass@1 / pass@k against step next to the output directory at the end."},
    )


def make_parser() -> TrlParser:
    """The command-line parser: script, data, PKPO and model options, YAML recipes via ``--config``."""
    return TrlParser((TrainScriptArguments, DataArguments, PKPOConfig, ModelConfig))


def _run_config(script_args, data_args, training_args, model_args) -> dict:
    config = {
        "script": asdict(script_args),
        "data": asdict(data_args),
        "model": asdict(model_args),
        "training": json.loads(json.dumps(training_args.to_dict(), default=str)),
    }
    return {
        section: {key: value for key, value in values.items() if key not in _RESUMABLE_KEYS}
        for section, values in config.items()
    }


def check_output_dir(output_dir: str | Path, run_config: dict, resuming: bool, overwrite: bool) -> None:
    """Refuse to mix two different runs in one output directory.

    Raises:
        ValueError: ``output_dir`` holds a run whose config differs, and we are neither resuming it nor
            told to overwrite it.
    """
    saved = Path(output_dir) / RUN_CONFIG_FILE
    if not saved.exists() or overwrite:
        return
    previous = json.loads(saved.read_text())
    if previous == run_config:
        return
    diff = sorted(
        f"{section}.{key}: {previous.get(section, {}).get(key)!r} -> {run_config[section].get(key)!r}"
        for section in run_config
        for key in set(run_config[section]) | set(previous.get(section, {}))
        if previous.get(section, {}).get(key) != run_config[section].get(key)
    )
    what = "resume it with" if not resuming else "a resumed run must keep"
    raise ValueError(
        f"{output_dir} holds a run with a different config ({'; '.join(diff[:8])}). Use another --output_dir, "
        f"pass --overwrite_output_dir to start over, or {what} the original config."
    )


def _resume_checkpoint(training_args: PKPOConfig) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    resume = training_args.resume_from_checkpoint
    if resume is None or str(resume).lower() in ("false", "none", ""):
        return None
    if str(resume).lower() in ("true", "last"):
        last = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint {resume}: no checkpoint in {training_args.output_dir}")
        return last
    return resume


def run(script_args, data_args, training_args: PKPOConfig, model_args: ModelConfig):
    """Load model, data and rewards, train with PKPOTrainer, save the model/adapter and the plot."""
    from trl import GRPOTrainer

    from .trainer import PKPOTrainer

    resume = _resume_checkpoint(training_args)
    run_config = _run_config(script_args, data_args, training_args, model_args)
    check_output_dir(training_args.output_dir, run_config, resume is not None, script_args.overwrite_output_dir)

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
    trainer_cls = PKPOTrainer if script_args.trainer == "pkpo" else GRPOTrainer
    # PKPOTrainer does this itself; the GRPO baseline needs it too on vLLM's CPU build (see vllm_cpu.py).
    prepare_vllm_for_weight_sync(training_args.use_vllm, training_args.vllm_mode)
    trainer = trainer_cls(
        model,
        get_reward_funcs(script_args.reward_funcs, answer_column="answer"),
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    if trainer.accelerator.is_main_process:
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(training_args.output_dir) / RUN_CONFIG_FILE).write_text(json.dumps(run_config, indent=2))
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        if script_args.plot:
            from .plotting import plot_pass_at_k

            out = Path(training_args.output_dir)
            path = plot_pass_at_k(trainer.state.log_history, out.with_name(out.name + "-pass_at_k.png"))
            print(f"pass@1 / pass@k plot written to {path}")
        print(f"model{' adapter' if model_args.use_peft else ''} saved to {training_args.output_dir}")
    return trainer


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`pkpo-train`, `python -m pkpo_trl.train`)."""
    script_args, data_args, training_args, model_args = make_parser().parse_args_and_config(args=argv)
    run(script_args, data_args, training_args, model_args)


if __name__ == "__main__":
    main()
