"""Callbacks any TRL GRPO-style trainer can use: fixed-k pass@k and the prompts solved (:class:`PassAtKCallback`),
and the files a run leaves beside its weights (:class:`RunArtifactsCallback`).

``PKPOTrainer`` attaches both by itself; with TRL's own trainer, attach them after building it (a
``TrainerCallback`` is not given its trainer)::

    trainer = GRPOTrainer(model, reward_funcs, args=config, train_dataset=train)
    PassAtKCallback(ks=(1, 4, 8, 16)).attach(trainer)
    trainer.train()

Where the rewards come from: each generation batch's gathered rewards and prompts, as :class:`RewardBatch`. A
``PKPOTrainer`` captures them once per batch (``trainer.reward_batch``: the advantages, its metrics and this callback
read the same capture). A plain ``GRPOTrainer`` has no capture; there the callback reads the rows TRL has just
added to its completions-table log (``_logs["prompt"]`` and ``_logs["rewards"]``, gathered from every process), at
the end of each optimizer step that generated a batch and after each evaluation batch. Nothing is gathered twice
and no method is patched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .metrics import combine_rewards, group_pass_at_k, prompt_key

__all__ = ["PassAtKCallback", "RewardBatch", "RunArtifactsCallback"]


@dataclass
class RewardBatch:
    """One generation batch as every process sees it: ``groups`` ``[G, n]`` combined rewards (NaN: unscored) and
    the ``prompts`` of the G groups, in the order TRL gathered them; ``serial`` counts the batches of a trainer."""

    mode: str
    groups: torch.Tensor
    prompts: list[Any]
    serial: int


def logged_prompts(trainer, num_groups: int, n: int) -> list[Any]:
    """The prompt of each of the last ``num_groups`` groups of ``n`` in TRL's completions-table log (a deque the
    size of a generation batch, holding the gathered prompts of every process, one per completion)."""
    logged = trainer._logs["prompt"]
    if len(logged) < num_groups * n:
        raise RuntimeError(
            f"pkpo_trl: TRL's completions log holds {len(logged)} prompts, fewer than the batch's {num_groups * n} "
            "completions (an evaluation batch larger than the generation batch?); this TRL version is not supported."
        )
    start = len(logged) - num_groups * n
    return [logged[start + group * n] for group in range(num_groups)]


class PassAtKCallback(TrainerCallback):
    """Log ``pass@k/<k>`` (train) and ``eval_pass@k/<k>`` (evaluation) for fixed ``ks``, and the training prompts
    solved so far, in the trainer's ``_metrics`` (averaged per logging step, like TRL's own).

    - ``pass@k/<k>``: mean unbiased pass@k (paper Eq. 8) of the batch's groups, a completion succeeding when its
      combined reward is ``>= success_threshold`` (default: the trainer's ``pkpo_success_threshold``, else 1.0).
    - ``solved/num_prompts``, ``solved/frac_prompts`` (train): distinct training prompts with at least one success so
      far (restarts on resume); the fraction is over ``len(train_dataset)``.

    Args:
        ks: the ks to log; a k larger than a batch's group size is not logged for that batch.
        success_threshold: see above.
    """

    def __init__(self, ks: Sequence[int] = (1, 4, 8, 16), success_threshold: float | None = None):
        if not ks or any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {list(ks)}.")
        self.ks = sorted({int(k) for k in ks})
        self.success_threshold = success_threshold
        self.trainer = None
        self.solved: set[str] = set()
        self._last: Any = None

    def attach(self, trainer) -> PassAtKCallback:
        """Log for ``trainer`` (a GRPOTrainer or subclass) and register as its callback."""
        if self.trainer is trainer:
            return self
        if self.trainer is not None:
            raise ValueError("This PassAtKCallback is attached to another trainer already.")
        if not hasattr(trainer, "_logs") or not hasattr(trainer, "_metrics"):
            raise TypeError(f"PassAtKCallback needs a TRL GRPOTrainer (or subclass), got {type(trainer).__name__}.")
        names = trainer.reward_func_names
        if not hasattr(trainer, "reward_batch") and len(set(names)) != len(names):
            raise ValueError(
                f"PassAtKCallback reads TRL's log of rewards by function name, and {names} repeats one: "
                "give each reward function its own __name__."
            )
        self.trainer = trainer
        if self.success_threshold is None:
            self.success_threshold = getattr(trainer.args, "pkpo_success_threshold", 1.0)
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            raise RuntimeError(
                "PassAtKCallback was given to a trainer but not attached to it: call "
                "`PassAtKCallback(ks).attach(trainer)` after building the trainer (a callback is not told its "
                "trainer)."
            )

    def on_step_end(self, args, state, control, **kwargs):
        self._record(self._new_batch("train"))

    def on_prediction_step(self, args, state, control, **kwargs):
        self._record(self._new_batch("eval"))

    def _new_batch(self, mode: str) -> RewardBatch | None:
        """The batch scored since the last call, or None (a step that reused its generation batch)."""
        trainer = self.trainer
        if hasattr(trainer, "reward_batch"):  # PKPOTrainer's capture
            batch = trainer.reward_batch
            if batch is None or batch.mode != mode or batch.serial == self._last:
                return None
            self._last = batch.serial
            return batch
        # TRL's GRPOTrainer: in training a new generation batch replaces the buffered micro-batches; in evaluation
        # every prediction step is a batch, as large as the (evenly split) evaluation batch of every process.
        if mode == "train":
            if trainer._buffered_inputs is self._last:
                return None
            self._last = trainer._buffered_inputs
            n, size = trainer.num_generations, len(trainer._logs["prompt"])
        else:
            n, size = trainer.num_generations_eval, args_eval_size(trainer)
        logged = [list(trainer._logs["rewards"][name])[-size:] for name in trainer.reward_func_names]
        rewards = torch.tensor(logged, dtype=torch.float32).T
        groups = combine_rewards(rewards, trainer.reward_weights.cpu()).view(-1, n)
        return RewardBatch(mode, groups, logged_prompts(trainer, groups.shape[0], n), 0)

    def _record(self, batch: RewardBatch | None) -> None:
        if batch is None:
            return
        metrics = self.trainer._metrics[batch.mode]
        for k, value in group_pass_at_k(batch.groups, self.ks, self.success_threshold).items():
            metrics[f"pass@k/{k}"].append(value)
        if batch.mode != "train":
            return
        hits = (batch.groups >= self.success_threshold).any(dim=1).tolist()
        self.solved.update(prompt_key(prompt) for prompt, hit in zip(batch.prompts, hits, strict=True) if hit)
        metrics["solved/num_prompts"].append(float(len(self.solved)))
        dataset = self.trainer.train_dataset
        if hasattr(dataset, "__len__") and len(dataset) > 0:
            metrics["solved/frac_prompts"].append(len(self.solved) / len(dataset))


def args_eval_size(trainer) -> int:
    """Completions in one evaluation batch of every process (accelerate splits it evenly)."""
    return trainer.args.per_device_eval_batch_size * trainer.accelerator.num_processes


class RunArtifactsCallback(TrainerCallback):
    """At the end of training, on the main process, write beside the weights in ``output_dir``: the run config
    (``pkpo_run_config.json``, which pkpo-eval reads back), the model card (TRL's, which cites the trainer's paper,
    with what it lacks added: see :mod:`pkpo_trl.model_card`) and, with ``plot``, ``<output_dir>-pass_at_k.png``.

    Args:
        run_config: the sections of the run config besides ``training`` (the trainer's args), e.g. the script, data
            and model options of ``pkpo-train``.
        gguf_file: the GGUF file of a GGUF base, for the model card's loading code.
        plot: write the pass@k plot.
    """

    def __init__(self, run_config: dict | None = None, gguf_file: str | None = None, plot: bool = True):
        self.run_config = dict(run_config or {})
        self.gguf_file = gguf_file
        self.plot = plot
        self.trainer = None

    def attach(self, trainer) -> RunArtifactsCallback:
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _write_run_config(self, args) -> Path:
        from .run_dir import RUN_CONFIG_FILE, run_config

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_CONFIG_FILE).write_text(json.dumps(run_config(args, self.run_config), indent=2))
        return out

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is not None and self.trainer.is_world_process_zero():
            self._write_run_config(args)  # first: a run killed before its end still owns its directory

    def on_train_end(self, args, state, control, **kwargs):
        if self.trainer is None or not self.trainer.is_world_process_zero():
            return
        from .model_card import write_model_card

        out = self._write_run_config(args)
        write_model_card(self.trainer, self.run_config, self.gguf_file)
        if self.plot:
            from .plotting import plot_pass_at_k

            path = plot_pass_at_k(state.log_history, out.with_name(out.name + "-pass_at_k.png"))
            print(f"pass@1 / pass@k plot written to {path}", flush=True)
