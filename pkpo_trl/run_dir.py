"""A run's directory: the run config `pkpo-train` writes there (which pkpo-eval reads back), the guard that keeps a
new run from writing over another, the checkpoints a resume may use, and the message that says how two configs
differ (a run resumed with another config, a sample cache written with other settings)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_CONFIG_FILE",
    "check_output_dir",
    "config_diff",
    "newest_complete_checkpoint",
    "remove_checkpoints",
    "resume_checkpoint",
    "run_config",
]

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "pkpo_run_config.json"  # written by pkpo-train next to its checkpoints, read by pkpo-eval


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for every key whose value differs between ``old`` and ``new`` (a missing key reads as
    None), nested dicts by dotted key (``"training.learning_rate: 0.001 -> 0.002"``), sorted."""
    lines = []
    for key in set(old) | set(new):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            lines += config_diff(before, after, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return sorted(lines)


# Settings that may differ between a run and its continuation without making it a different run.
_RESUMABLE_KEYS = {
    "output_dir", "logging_dir", "resume_from_checkpoint", "overwrite_output_dir", "report_to", "run_name",
    "logging_steps", "save_steps", "save_total_limit", "max_steps", "num_train_epochs", "eval_steps",
    "push_to_hub", "hub_model_id", "hub_token", "dataloader_num_workers", "disable_tqdm", "plot", "pass_at_ks",
    "log_format",
    # trl.ScriptArguments fields that DataArguments refuses (always false): run configs saved before it had them match.
    "dataset_streaming", "ignore_bias_buffers",
}  # fmt: skip


def run_config(training_args, sections: dict | None = None) -> dict:
    """What makes a run this run: the trainer's options (``training``) and ``sections`` (``pkpo-train``'s script,
    data and model options), but for those a continuation may change (:data:`_RESUMABLE_KEYS`)."""
    config = {**(sections or {}), "training": json.loads(json.dumps(training_args.to_dict(), default=str))}
    return {
        section: {key: value for key, value in values.items() if key not in _RESUMABLE_KEYS}
        for section, values in config.items()
    }


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit())


def check_output_dir(output_dir: str | Path, run_config: dict, resuming: bool, overwrite: bool) -> None:
    """Refuse to start a run over another one in ``output_dir``, as ``transformers``' ``overwrite_output_dir`` did.

    Allowed: a new or empty directory; resuming (``resuming``) the run whose config is saved there; anything with
    ``overwrite``. Refused: checkpoints when not resuming (a fresh start would overwrite ``checkpoint-1``, ... and
    leave the old run's later checkpoints for a resume to pick up), a saved model or adapter that ``pkpo-train``
    did not write (no run config), and a run whose saved config differs.

    Raises:
        ValueError: the directory holds a run to keep; the message names it and the ways out. Also for a saved
            run config that is not valid JSON (the message names the file).
    """
    output_dir = Path(output_dir)
    if overwrite or not output_dir.is_dir():
        return
    ways_out = (
        "Resume it with --resume_from_checkpoint true (or a checkpoint's path), pass --overwrite_output_dir to start "
        "over (its checkpoints are deleted), or use another --output_dir."
    )
    saved = output_dir / RUN_CONFIG_FILE
    checkpoints = _checkpoints(output_dir)
    if checkpoints and not resuming:
        names = ", ".join(p.name for p in checkpoints[:4]) + (", ..." if len(checkpoints) > 4 else "")
        owner = "" if saved.exists() else f" of a run that pkpo-train did not write (no {RUN_CONFIG_FILE})"
        raise ValueError(f"{output_dir} holds checkpoints{owner} ({names}). {ways_out}")
    if not saved.exists():
        model_files = ("adapter_config.json", "adapter_model.safetensors", "model.safetensors", "pytorch_model.bin")
        found = [name for name in model_files if (output_dir / name).exists()]
        if found and not resuming:
            raise ValueError(
                f"{output_dir} holds a saved model ({', '.join(found)}) that pkpo-train did not write (no "
                f"{RUN_CONFIG_FILE}). Pass --overwrite_output_dir to write over it, or use another --output_dir."
            )
        return
    try:
        previous = json.loads(saved.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{saved} is not valid JSON ({err}); it records the config of the run in {output_dir}. Fix or delete "
            "it, or pass --overwrite_output_dir to start a new run there."
        ) from None
    if previous == run_config:
        return
    diff = config_diff({section: previous.get(section, {}) for section in run_config}, run_config)
    what = "resume it with" if not resuming else "a resumed run must keep"
    raise ValueError(
        f"{output_dir} holds a run with a different config ({'; '.join(diff[:8])}). Use another --output_dir, "
        f"pass --overwrite_output_dir to start over, or {what} the original config."
    )


def remove_checkpoints(output_dir: str | Path) -> list[str]:
    """Delete the ``checkpoint-<step>`` folders in ``output_dir`` (a run started over with --overwrite_output_dir),
    so that a later ``--resume_from_checkpoint true`` cannot pick up the previous run's. Returns their names."""
    removed = []
    for checkpoint in _checkpoints(Path(output_dir)):
        shutil.rmtree(checkpoint)
        removed.append(checkpoint.name)
    return removed


_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin")


def _incomplete(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a run killed while writing it), or None when it is complete:
    transformers writes ``trainer_state.json`` after the weights, so both must be there and the state readable."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return "trainer_state.json is not valid JSON"
    weights = [name for name in _WEIGHT_FILES if (checkpoint / name).is_file()]
    sharded = list(checkpoint.glob("model-*-of-*.safetensors"))
    if not weights and not sharded:
        return "no model or adapter weights"
    return None


def newest_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-<step>`` of ``output_dir`` that is complete; each newer, incomplete one is logged
    (which, and why it was skipped)."""
    for checkpoint in reversed(_checkpoints(Path(output_dir))):
        reason = _incomplete(checkpoint)
        if reason is None:
            return str(checkpoint)
        logger.warning("--resume_from_checkpoint: skipping %s, which is incomplete (%s).", checkpoint, reason)
    return None


def resume_checkpoint(training_args) -> str | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``true``/``last``: the newest complete one), or None."""
    resume = training_args.resume_from_checkpoint
    if resume is None or str(resume).lower() in ("false", "none", ""):
        return None
    if str(resume).lower() in ("true", "last"):
        output_dir = training_args.output_dir
        last = newest_complete_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint {resume}: no complete checkpoint in {output_dir}")
        logger.warning("--resume_from_checkpoint %s: resuming from %s.", resume, last)
        return last
    if not Path(resume).is_dir():
        raise ValueError(f"--resume_from_checkpoint {resume}: no such checkpoint directory.")
    if reason := _incomplete(Path(resume)):
        raise ValueError(f"--resume_from_checkpoint {resume}: the checkpoint is incomplete ({reason}).")
    return resume
