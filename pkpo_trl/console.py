"""What ``pkpo-train`` prints while it runs: one line before each long phase, and one short line per logged step.

A run on a CPU spends minutes loading a model and seconds to minutes per step; transformers' ``ProgressCallback``
writes each step's whole metrics dict (40-odd keys on one line), which hides the few numbers a person watches.
:func:`use_log_format` swaps that console printing, and only it, for :class:`CompactProgressCallback` (or, with
``disable_tqdm``, :class:`CompactPrinterCallback` for ``PrinterCallback``): ``Trainer.log`` has already appended
the full dict to ``trainer_state.json``'s ``log_history`` and the tracker callbacks (``report_to``) still receive
it unchanged. The swap is done by the CLI (``pkpo_trl.train``), not by ``PKPOTrainer``, so a library user of the
trainer keeps TRL's console output; ``--log_format raw`` keeps it in the CLI too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accelerate import PartialState
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from .model_card import k_description

__all__ = [
    "LOG_FORMATS",
    "CompactPrinterCallback",
    "CompactProgressCallback",
    "compact_log_line",
    "data_phase",
    "duration",
    "model_phase",
    "say",
    "training_phase",
    "use_log_format",
]

LOG_FORMATS = ("compact", "raw")
PREFIX = "pkpo-train: "


def say(message: str) -> None:
    """Print one phase line (``pkpo-train: <message>``) on the main process only, flushed: under ``accelerate
    launch`` every process runs the script, and the next phase may be silent for minutes."""
    if PartialState().is_main_process:
        print(PREFIX + message, flush=True)


def model_phase(name: str, gguf_file: str | None, dtype: str) -> str:
    """The line before loading the model: its name and dtype, and whether a GGUF file is de-quantised (the slow
    part of the quickstart's minute-long silent start)."""
    from .models import DEMO_MODEL

    if gguf_file or name == DEMO_MODEL or str(name).endswith(".gguf"):
        where = f" file {gguf_file}" if gguf_file else ""
        return f"loading model {name} (GGUF{where}: de-quantising it to {dtype})"
    return f"loading model {name} ({dtype})"


def data_phase(data_args: Any, train: Any, evaluation: Any) -> str:
    """The line once the data is ready: the rows of each split (after rows without a readable answer were
    dropped), before the trainer is built."""
    rows = f"{len(train)} training prompts (split {data_args.dataset_train_split})"
    if evaluation is None:
        return f"data {data_args.dataset_name}: {rows}, no evaluation split"
    return (
        f"data {data_args.dataset_name}: {rows}, {len(evaluation)} evaluation prompts ({data_args.dataset_test_split})"
    )


def training_phase(args: Any, resume: str | None) -> str:
    """The line before training: steps, completions per optimizer step (one generation batch each, as
    tests/test_recipes.py checks the recipes), and the k option in use."""
    steps = f"{args.max_steps} steps" if args.max_steps > 0 else f"{args.num_train_epochs:g} epochs"
    completions = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    prompts = completions // args.num_generations
    per_step = f"{completions} completions per step ({prompts} prompt{'s' * (prompts != 1)} x {args.num_generations})"
    resuming = f" · resuming from {resume}" if resume else ""
    return f"training {steps} · {per_step} · {k_description(args)}{resuming}"


def _num(value: Any) -> str:
    """A metric for the console: 3 significant digits; None or NaN (no reward could be scored) is ``n/a``."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.3g}" if isinstance(value, int | float) else str(value)


def _rate(value: Any) -> str:
    """A pass@k, which lies in [0, 1]: 2 decimals, so that equal rates read the same (``.3g`` shows 0.5625 as
    0.562 or 0.563 depending on float noise)."""
    return f"{value:.2f}" if isinstance(value, int | float) and value == value else "n/a"


def duration(seconds: float) -> str:
    """``5.3 s``, ``5 min 32 s`` or ``1 h 02 min``: how the docs state run times."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _largest_fixed_k(logs: Mapping[str, Any], prefix: str) -> int | None:
    """The largest k > 1 of the ``pass@k/<k>`` metrics in ``logs`` (PassAtKCallback's fixed ks)."""
    ks = [int(key.rsplit("/", 1)[1]) for key in logs if key.startswith(f"{prefix}pass@k/") and key[-1].isdigit()]
    ks = [k for k in ks if k > 1]
    return max(ks) if ks else None


def compact_log_line(logs: Mapping[str, Any], step: int, max_steps: int) -> str | None:
    """One short line for a logged dict, or None for a dict it does not know (printed raw instead).

    Training step: ``step 3/30 · loss -0.29 · reward 0.62 · pass@1 0.61 · pass@8 0.95 · k 2.72 · 14.0 s/step``,
    from ``loss``, ``reward``, PassAtKCallback's ``pass@k/1`` and its largest fixed k (else PKPO's
    ``pkpo/pass@1``), PKPO's ``pkpo/k`` (the mean k of a mixture) and TRL's ``step_time``; a metric that is absent
    (``--trainer grpo`` has no ``pkpo/k``) is left out. Evaluation (``eval_*`` keys) and the end-of-training
    summary (``train_runtime``) get lines of their own.
    """
    if "train_runtime" in logs:
        parts = [f"done · {step} steps in {duration(logs['train_runtime'])}"]
        if "train_loss" in logs:
            parts.append(f"mean loss {_num(logs['train_loss'])}")
        return " · ".join(parts)
    prefix = "eval_" if any(key.startswith("eval_") for key in logs) else ""
    if f"{prefix}loss" not in logs and f"{prefix}reward" not in logs:
        return None
    parts = [f"eval at step {step}" if prefix else f"step {step}/{max_steps}"]
    for name, key in (("loss", "loss"), ("reward", "reward")):
        if f"{prefix}{key}" in logs:
            parts.append(f"{name} {_num(logs[prefix + key])}")
    pass_at_1 = logs.get(f"{prefix}pass@k/1", logs.get(f"{prefix}pkpo/pass@1"))
    if f"{prefix}pass@k/1" in logs or f"{prefix}pkpo/pass@1" in logs:
        parts.append(f"pass@1 {_rate(pass_at_1)}")
    if (k := _largest_fixed_k(logs, prefix)) is not None:
        parts.append(f"pass@{k} {_rate(logs[f'{prefix}pass@k/{k}'])}")
    if f"{prefix}pkpo/k" in logs:
        parts.append(f"k {_num(logs[prefix + 'pkpo/k'])}")
    if not prefix and isinstance(logs.get("step_time"), int | float):
        parts.append(f"{logs['step_time']:.1f} s/step")
    return " · ".join(parts)


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar, writing :func:`compact_log_line` instead of the raw dict (which still goes to
    ``log_history`` and the trackers: ``on_log`` only prints, and ``logs`` is not changed)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and self.training_bar is not None and logs):
            return None
        line = compact_log_line(logs, state.global_step, state.max_steps)
        if line is None:  # a dict from another callback or a newer TRL: shown as transformers shows it
            return super().on_log(args, state, control, logs=logs, **kwargs)
        self.training_bar.write(line)
        return None


class CompactPrinterCallback(PrinterCallback):
    """transformers' ``PrinterCallback`` (used with ``disable_tqdm``), printing :func:`compact_log_line`; unlike
    it, leaves ``logs`` as it is (it pops ``total_flos`` from the dict the other callbacks receive)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and logs):
            return None
        line = compact_log_line(logs, state.global_step, state.max_steps)
        if line is None:
            return super().on_log(args, state, control, logs=dict(logs), **kwargs)
        print(line, flush=True)
        return None


def use_log_format(trainer: Any, log_format: str) -> None:
    """Make ``trainer`` print ``log_format`` on the console: ``"compact"`` replaces transformers' ProgressCallback
    (or PrinterCallback) with its compact subclass, through the documented ``Trainer.remove_callback`` /
    ``add_callback``; ``"raw"`` leaves transformers' dicts. A notebook's progress callback is left alone."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format={log_format!r} is not one of its values: choose one of {LOG_FORMATS}.")
    if log_format == "raw":
        return
    swaps: dict[type[TrainerCallback], type[TrainerCallback]] = {
        ProgressCallback: CompactProgressCallback,
        PrinterCallback: CompactPrinterCallback,
    }
    for callback in list(trainer.callback_handler.callbacks):
        compact = swaps.get(type(callback))
        if compact is not None:
            trainer.remove_callback(callback)
            trainer.add_callback(compact)
