"""Metrics any TRL GRPO-style trainer can log: fixed-k pass@k of the training and evaluation batches, and the
distinct training prompts solved at least once so far.

``PKPOTrainer`` logs ``pkpo/pass@k_at_current_k`` at the k it optimises, which an annealing schedule
changes mid-run, and ``trl.GRPOTrainer`` logs no pass@k at all. :class:`PassAtKCallback` logs
``pass@k/<k>`` for a fixed set of ks with either trainer, so a GRPO baseline and a PKPO run are compared
on the same numbers, and it counts the training prompts solved at least once (``solved/num_prompts``,
``solved/frac_prompts``), the paper's "unblocking" signal, the same way for both::

    trainer = GRPOTrainer(model, reward_funcs, args=config, train_dataset=train)   # or PKPOTrainer
    PassAtKCallback(ks=(1, 4, 8, 16)).attach(trainer)
    trainer.train()

How it sees the rewards: a ``TrainerCallback`` is not given the trainer, and TRL's logged
``rewards/<name>/mean`` averages away the per-group information pass@k needs. ``attach`` therefore wraps
the trainer *instance's* ``_calculate_rewards`` (no class is patched): TRL calls it once per generation
batch, in training and evaluation, and it returns the rewards of every reward function for the
completions of all processes, ``[B_global, F]``, grouped by prompt in runs of ``num_generations`` (of
``num_generations_eval`` in evaluation). This is the same TRL point ``PKPOTrainer`` relies on;
``tests/test_trl_compat.py`` pins its signature. Its ``prompts`` argument holds this process's prompt of
each completion; gathered across processes (``gather_object``, as TRL gathers them for its completions
table) they line up with the gathered rewards. The metrics go into the trainer's ``_metrics[mode]``, which
TRL averages per logging step (``eval_`` prefix in evaluation), like its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback

from .metrics import combine_rewards, group_pass_at_k, prompt_key

# combine_rewards, group_pass_at_k and prompt_key live in pkpo_trl.metrics; importable from here as before.
__all__ = ["PassAtKCallback", "combine_rewards", "fixed_k_pass_at_k", "group_pass_at_k", "prompt_key"]


def fixed_k_pass_at_k(
    rewards_per_func: torch.Tensor, weights: torch.Tensor, group_size: int, ks: Sequence[int], threshold: float = 1.0
) -> dict[int, float]:
    """Mean unbiased pass@k over the prompt groups of one batch, for each ``k <= group_size``.

    The combined reward of completion ``i`` is ``g_i = sum_f w_f r_{f,i}`` (NaN-skipping, as TRL); it
    succeeds when ``g_i >= threshold``. For a group of ``n`` scored completions with ``c`` successes,
    ``pass@k = 1 - C(n-c, k) / C(n, k)`` (paper Eq. 8; equal to :func:`pkpo_trl.maxg_at_k` on the 0/1 successes);
    completions no reward function scored (NaN) are left out of their group, as in the trainers.

    Args:
        rewards_per_func: ``[B, F]`` rewards, ``B`` a multiple of ``group_size``.
        weights: ``[F]`` reward weights.
        group_size: completions per prompt.
        ks: the ks; those above ``group_size`` are skipped.
        threshold: success threshold on the combined reward.
    """
    return group_pass_at_k(combine_rewards(rewards_per_func, weights).view(-1, group_size), ks, threshold)


class PassAtKCallback(TrainerCallback):
    """Log ``pass@k/<k>`` (train) and ``eval_pass@k/<k>`` (evaluation) for fixed ``ks``, and the training
    prompts solved so far.

    Metrics (per logging step, in the trainer's ``_metrics``):

    - ``pass@k/<k>``: mean unbiased pass@k of the batch's groups (:func:`fixed_k_pass_at_k`).
    - ``solved/num_prompts``, ``solved/frac_prompts`` (train): distinct training prompts with at least one
      successful completion so far; the fraction is over ``len(train_dataset)``. Prompts are told apart by
      :func:`prompt_key` of the prompt the trainer generated from (environment-supplied prompts included). The
      count restarts when a run is resumed.

    Args:
        ks: the ks to log; a k larger than a batch's group size is not logged for that batch.
        success_threshold: a completion succeeds when its combined reward is ``>=`` this (default: the
            trainer's ``args.pkpo_success_threshold`` when it has one, else 1.0).

    Use :meth:`attach` on a built trainer. ``PKPOTrainer`` attaches the instance passed in its ``callbacks``, else
    one of its own with the default ks.
    """

    def __init__(self, ks: Sequence[int] = (1, 4, 8, 16), success_threshold: float | None = None):
        if not ks or any(int(k) != k or k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {list(ks)}.")
        self.ks = sorted({int(k) for k in ks})
        self.success_threshold = success_threshold
        self.trainer = None
        self.solved: set[str] = set()

    def attach(self, trainer) -> PassAtKCallback:
        """Record fixed-k pass@k on every batch ``trainer`` scores, and register as its callback."""
        if self.trainer is trainer:
            return self
        if self.trainer is not None:
            raise ValueError("This PassAtKCallback is attached to another trainer already.")
        if not hasattr(trainer, "_calculate_rewards") or not hasattr(trainer, "_metrics"):
            raise TypeError(f"PassAtKCallback needs a TRL GRPOTrainer (or subclass), got {type(trainer).__name__}.")
        self.trainer = trainer
        threshold = self.success_threshold
        if threshold is None:
            threshold = getattr(trainer.args, "pkpo_success_threshold", 1.0)
        calculate_rewards = trainer._calculate_rewards  # bound method: a subclass override keeps working

        def _calculate_rewards(inputs, prompts, completions, completion_ids_list):
            rewards_per_func = calculate_rewards(inputs, prompts, completions, completion_ids_list)
            mode = "train" if trainer.model.training else "eval"
            n = trainer.num_generations if mode == "train" else trainer.num_generations_eval
            groups = combine_rewards(rewards_per_func, trainer.reward_weights).view(-1, n)
            for k, value in group_pass_at_k(groups, self.ks, threshold).items():
                trainer._metrics[mode][f"pass@k/{k}"].append(value)
            if mode == "train":
                self._count_solved(gather_object(list(prompts))[::n], groups, threshold)
            return rewards_per_func

        trainer._calculate_rewards = _calculate_rewards
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _count_solved(self, prompts: list[Any], groups: torch.Tensor, threshold: float) -> None:
        """Add the batch's solved prompts (one prompt per row of combined rewards ``groups``) to :attr:`solved` and
        log the running count."""
        solved = (groups >= threshold).any(dim=1).tolist()
        self.solved.update(prompt_key(prompt) for prompt, hit in zip(prompts, solved, strict=True) if hit)
        metrics = self.trainer._metrics["train"]
        metrics["solved/num_prompts"].append(float(len(self.solved)))
        dataset = self.trainer.train_dataset
        if hasattr(dataset, "__len__") and len(dataset) > 0:
            metrics["solved/frac_prompts"].append(len(self.solved) / len(dataset))

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            raise RuntimeError(
                "PassAtKCallback was given to a trainer but not attached to it: call "
                "`PassAtKCallback(ks).attach(trainer)` after building the trainer (a callback is not told its "
                "trainer)."
            )
