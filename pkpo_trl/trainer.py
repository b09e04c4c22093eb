"""PKPOTrainer: TRL's GRPOTrainer with PKPO-transformed rewards as advantages.

The only module that overrides TRL internals (private GRPOTrainer methods and metric stores). Two
other pieces of TRL knowledge live elsewhere, each in one place: the keyword arguments GRPOTrainer
passes to reward functions besides dataset columns (``pkpo_trl.rewards.registry.TRL_CONTEXT_KWARGS``,
checked against TRL's source by ``tests/test_rewards.py``) and ``trl.import_utils.is_vllm_available``
(``config.py``, to validate ``use_vllm``).

GRPOTrainer computes advantages inline in ``_generate_and_score_completions``; there is no smaller
hook. We therefore wrap two methods and leave everything else (generation with transformers or
vLLM, PEFT, loss, logging) to TRL:

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

from .annealing import KAnnealingCallback, KMixture, KMixtureCallback, KMixtureSchedule, KSchedule
from .config import PKPOConfig
from .estimators import (
    ESTIMATORS,
    is_binary,
    k_from_success_rate,
    maxg_at_k,
    transform_rewards,
    transform_rewards_mixture,
)

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

    - ``pkpo/k``: the k used for the batch (annealed when a schedule is set); with ``pkpo_k_mixture`` the
      mixture's mean ``sum_k w_k k``, with ``pkpo_adaptive_k`` the mean of the groups' k.
    - ``pkpo/k_mixture/w<k>`` (with ``pkpo_k_mixture``): the weight of each k in the mixture in use.
    - ``pkpo/pass@1``, ``pkpo/pass@k``: unbiased estimates (Eq. 8) from the batch's groups (``pkpo/pass@k`` at
      the largest k in use: the mixture's largest, or ``pkpo_k`` with ``pkpo_adaptive_k``), a
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
        if args.pkpo_k_mixture is not None and not any(isinstance(c, KMixtureCallback) for c in callbacks):
            callbacks.append(KMixtureCallback(KMixtureSchedule.parse(args.pkpo_k_mixture)))
        super().__init__(model, reward_funcs, args, *pos, callbacks=callbacks, **kwargs)
        self._pkpo_gathered_rewards: torch.Tensor | None = None
        self._pkpo_solved_prompts: set[str] = set()
        # pkpo_adaptive_k="history": prompt key -> success rate at its latest visit (restarts on resume).
        self._pkpo_success_history: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------
    # k

    @property
    def pkpo_k(self) -> int:
        """The k used to score the next training batch: the annealing callback's, else ``args.pkpo_k``."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, KAnnealingCallback):
                return callback.k
        return self.args.pkpo_k

    @property
    def pkpo_k_mixture(self) -> KMixture | None:
        """The k mixture used to score the next training batch (``pkpo_k_mixture``), else ``None``."""
        callback = self._pkpo_mixture_callback()
        return None if callback is None else callback.mixture

    def _pkpo_mixture_callback(self) -> KMixtureCallback | None:
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, KMixtureCallback):
                return callback
        return None

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
        k_mean = None
        if k >= 1:
            advantages, k, k_mean = self._pkpo_transform(groups, k, mode, inputs)
            advantages = advantages.view(-1)
        else:  # a group too small for any baseline (e.g. num_generations_eval=1) carries no signal
            advantages = torch.zeros_like(rewards)
        advantages = self._scale(advantages, n)

        local = output["advantages"]
        start = self.accelerator.process_index * local.shape[0]
        output["advantages"] = advantages[start : start + local.shape[0]].to(local.dtype)
        self._replace_logged_advantages(advantages)
        self._log_pkpo_metrics(mode, groups, advantages, max(k, 1), inputs, k_mean)
        return output

    def _pkpo_transform(self, groups: torch.Tensor, k: int, mode: str, inputs) -> tuple[torch.Tensor, int, float]:
        """The transformed rewards of ``groups`` under the configured k (``k``, from :meth:`_k_for_group_size`),
        a mixture of k, or adaptive k per prompt (at most ``k``); also the largest k in use (for ``pkpo/pass@k``)
        and the mean k per group (``pkpo/k``)."""
        estimator = self.args.pkpo_estimator
        callback = self._pkpo_mixture_callback()
        if callback is not None:  # its ks replace pkpo_k; eval groups smaller than a k use their largest k
            k = groups.shape[-1] - ESTIMATORS[estimator].min_others
            mixture = callback.mixture.capped(k)
            for k_i in callback.schedule.values:
                self._metrics[mode][f"pkpo/k_mixture/w{k_i}"].append(mixture.as_dict().get(min(k_i, k), 0.0))
            return transform_rewards_mixture(groups, mixture.as_dict(), estimator), max(mixture.ks), mixture.mean_k
        if self.args.pkpo_adaptive_k == "history" and mode == "train":
            per_group = self._history_k(groups, k, inputs)
            return transform_rewards(groups, per_group, estimator), k, per_group.double().mean().item()
        return transform_rewards(groups, k, estimator), k, float(k)

    def _history_k(self, groups: torch.Tensor, k_max: int, inputs: Sequence) -> torch.Tensor:
        """``pkpo_adaptive_k="history"``: each group's k from its prompt's success rate at the prompt's latest
        earlier visit (:func:`~pkpo_trl.estimators.k_from_success_rate`), read before this batch is recorded,
        so k never depends on the samples it weights. Then records this batch's success rates."""
        prompts = gather_object([_prompt_key(example["prompt"]) for example in inputs])
        keys = prompts[:: len(prompts) // groups.shape[0]]
        rates = [self._pkpo_success_history.get(key, float("nan")) for key in keys]
        k_min = min(self.args.pkpo_adaptive_k_min, k_max)
        per_group = k_from_success_rate(torch.tensor(rates, dtype=torch.float64), k_min, k_max).to(groups.device)
        success = (groups >= self.args.pkpo_success_threshold).to(torch.float64).masked_fill(groups.isnan(), torch.nan)
        for key, rate in zip(keys, success.nanmean(dim=1).tolist()):
            if rate == rate:  # a group with no scored completion leaves the history as it was
                self._pkpo_success_history[key] = rate
        return per_group

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

    def _log_pkpo_metrics(
        self, mode: str, groups: torch.Tensor, advantages, k: int, inputs: Sequence, k_mean: float | None = None
    ) -> None:
        metrics = self._metrics[mode]
        success = (groups >= self.args.pkpo_success_threshold).to(groups.dtype).masked_fill(groups.isnan(), torch.nan)
        metrics["pkpo/k"].append(float(k) if k_mean is None else k_mean)
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
