"""PKPOTrainer: TRL's GRPOTrainer with PKPO-transformed rewards as advantages.

The only place in the package that knows TRL internals. GRPOTrainer computes advantages inline in
``_generate_and_score_completions``; there is no smaller hook. We therefore wrap two methods and
leave everything else (generation with transformers or vLLM, PEFT, loss, logging) to TRL:

1. ``_calculate_rewards`` (unchanged behaviour): we keep its return value, the ``[B_global, F]``
   rewards of every reward function for the completions of *all* processes.
2. ``_generate_and_score_completions``: after TRL has built the batch, we replace its
   ``"advantages"`` entry (this process's slice) with the PKPO transform of the gathered rewards,
   group by group, and log PKPO metrics.

``tests/test_trl_compat.py`` checks that both methods exist with the signatures and output keys we
rely on, so an incompatible TRL fails a test rather than a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
from accelerate.utils import gather_object
from trl import GRPOConfig, GRPOTrainer

from .annealing import KAnnealingCallback, KSchedule
from .config import PKPOConfig
from .estimators import ESTIMATORS, is_binary, maxg_at_k, transform_rewards
from .vllm_cpu import prepare_vllm_for_weight_sync

__all__ = ["PKPOTrainer"]


class PKPOTrainer(GRPOTrainer):
    """GRPOTrainer that optimises pass@k / max@k with PKPO's reward transformation.

    Takes exactly the arguments of :class:`trl.GRPOTrainer`; ``args`` must be a
    :class:`~pkpo_trl.PKPOConfig`. For each prompt's group of ``n = num_generations`` completions
    the combined reward ``g_i = sum_f w_f r_{f,i}`` is transformed by
    :func:`pkpo_trl.estimators.transform_rewards` (paper Eq. 21-33) and scaled per
    ``args.scale_rewards``; those values are the advantages of TRL's loss. Completions that no reward
    function could score (NaN) get advantage 0 and are left out of their group's estimate.

    Metrics added to the trainer's logs (train and eval, per logging step):

    - ``pkpo/k``: the k used for the batch (annealed when a schedule is set).
    - ``pkpo/pass@1``, ``pkpo/pass@k``: unbiased estimates (Eq. 8) from the batch's groups, a
      completion counting as a success when its reward is ``>= args.pkpo_success_threshold``.
    - ``pkpo/max@k``: the unbiased max@k estimate (Eq. 19) of the raw reward (continuous rewards only).
    - ``pkpo/frac_groups_no_success``: groups where no completion succeeded (no pass@k signal).
    - ``pkpo/frac_zero_advantage``: completions whose advantage is exactly 0.
    - ``pkpo/frac_prompts_solved``, ``pkpo/num_prompts_solved`` (train): distinct training prompts
      solved at least once so far, the paper's "unblocking" signal; the fraction is over
      ``len(train_dataset)``. The count restarts when a run is resumed.
    """

    _tag_names = ["trl", "grpo", "pkpo"]
    _name = "PKPO"

    def __init__(self, model, reward_funcs=None, args: PKPOConfig | None = None, *pos, callbacks=None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = PKPOConfig(f"{str(name).split('/')[-1]}-PKPO")
        if not isinstance(args, PKPOConfig):
            kind = "a GRPOConfig" if isinstance(args, GRPOConfig) else type(args).__name__
            raise TypeError(
                f"PKPOTrainer needs a PKPOConfig, got {kind}. PKPOConfig is a GRPOConfig with PKPO's options: "
                "replace `GRPOConfig(...)` with `pkpo_trl.PKPOConfig(...)`."
            )
        callbacks = list(callbacks or [])
        if args.pkpo_k_schedule is not None and not any(isinstance(c, KAnnealingCallback) for c in callbacks):
            callbacks.append(KAnnealingCallback(KSchedule.parse(args.pkpo_k_schedule)))
        # vLLM's CPU build packs weights at load time in a way TRL's weight push cannot update (see vllm_cpu.py).
        prepare_vllm_for_weight_sync(args.use_vllm, args.vllm_mode)
        super().__init__(model, reward_funcs, args, *pos, callbacks=callbacks, **kwargs)
        self._pkpo_gathered_rewards: torch.Tensor | None = None
        self._pkpo_solved_prompts: set[str] = set()

    # ------------------------------------------------------------------------------------------
    # k

    @property
    def pkpo_k(self) -> int:
        """The k used to score the next training batch: the annealing callback's, else ``args.pkpo_k``."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, KAnnealingCallback):
                return callback.k
        return self.args.pkpo_k

    def _k_for_group_size(self, n: int) -> int:
        # Eval groups (num_generations_eval) may be smaller than k: use the largest k they support.
        return min(self.pkpo_k, n - ESTIMATORS[self.args.pkpo_estimator].min_others)

    # ------------------------------------------------------------------------------------------
    # The override points.

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._pkpo_gathered_rewards = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._pkpo_gathered_rewards = None
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._pkpo_gathered_rewards
        if rewards_per_func is None or "advantages" not in output:
            raise RuntimeError(
                "pkpo_trl: GRPOTrainer._generate_and_score_completions no longer calls _calculate_rewards or no "
                "longer returns 'advantages'; this TRL version is not supported (see pyproject.toml)."
            )
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval

        rewards = self._combine_rewards(rewards_per_func)
        groups = rewards.view(-1, n)
        k = self._k_for_group_size(n)
        if k >= 1:
            advantages = transform_rewards(groups, k, self.args.pkpo_estimator).view(-1)
        else:  # a group too small for any baseline (e.g. num_generations_eval=1) carries no signal
            advantages = torch.zeros_like(rewards)
        advantages = self._scale(advantages, n)

        local = output["advantages"]
        start = self.accelerator.process_index * local.shape[0]
        output["advantages"] = advantages[start : start + local.shape[0]].to(local.dtype)
        self._replace_logged_advantages(advantages)
        self._log_pkpo_metrics(mode, groups, advantages, max(k, 1), inputs)
        return output

    # ------------------------------------------------------------------------------------------
    # Helpers.

    def _combine_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """``sum_f w_f r_f`` per completion (NaN-skipping, like TRL), NaN where no function scored it."""
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        return rewards.masked_fill(torch.isnan(rewards_per_func).all(dim=1), torch.nan)

    def _scale(self, advantages: torch.Tensor, n: int) -> torch.Tensor:
        mode = self.args.scale_rewards
        if mode == "none" or advantages.numel() < 2 or (mode == "group" and n < 2):
            return advantages
        if mode == "batch":
            std = advantages.std()
        else:  # "group"
            std = advantages.view(-1, n).std(dim=1, keepdim=True).expand(-1, n).reshape(-1)
        return advantages / (std + 1e-4)

    def _replace_logged_advantages(self, advantages: torch.Tensor) -> None:
        # TRL appended its own (GRPO) advantages for the completions table; show ours instead.
        logged = self._logs["advantages"]
        for _ in range(min(len(logged), advantages.numel())):
            logged.pop()
        logged.extend(advantages.tolist())

    def _log_pkpo_metrics(self, mode: str, groups: torch.Tensor, advantages, k: int, inputs: Sequence) -> None:
        metrics = self._metrics[mode]
        success = (groups >= self.args.pkpo_success_threshold).to(groups.dtype).masked_fill(groups.isnan(), torch.nan)
        metrics["pkpo/k"].append(float(k))
        metrics["pkpo/pass@1"].append(success.nanmean().item())  # maxg@1 is the plain mean
        metrics["pkpo/pass@k"].append(maxg_at_k(success, k).nanmean().item())
        if not is_binary(groups):
            metrics["pkpo/max@k"].append(maxg_at_k(groups, k).nanmean().item())
        solved = (success == 1).any(dim=1)
        metrics["pkpo/frac_groups_no_success"].append((~solved).float().mean().item())
        metrics["pkpo/frac_zero_advantage"].append((advantages == 0).float().mean().item())
        if mode == "train":
            self._update_solved_prompts(inputs, solved)
            metrics["pkpo/num_prompts_solved"].append(float(len(self._pkpo_solved_prompts)))
            if hasattr(self.train_dataset, "__len__") and len(self.train_dataset) > 0:
                metrics["pkpo/frac_prompts_solved"].append(len(self._pkpo_solved_prompts) / len(self.train_dataset))

    def _update_solved_prompts(self, inputs: Sequence, solved: torch.Tensor) -> None:
        # Gathered prompts line up with the gathered rewards: group g holds prompts [g*n, (g+1)*n).
        prompts = gather_object([_prompt_key(example["prompt"]) for example in inputs])
        n = len(prompts) // solved.numel()
        self._pkpo_solved_prompts.update(prompts[group * n] for group in solved.nonzero().flatten().tolist())


def _prompt_key(prompt) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()
