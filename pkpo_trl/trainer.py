"""PKPOTrainer: TRL's GRPOTrainer with PKPO-transformed rewards as advantages.

GRPOTrainer computes advantages inline in ``_generate_and_score_completions``; there is no smaller hook. So this
module, the one place that knows TRL's internals, overrides the two methods TRL forces and touches the names in
:data:`TRL_PRIVATE_NAMES` (``tests/test_trl_compat.py`` pins each, so a TRL upgrade that moves one fails a test):

1. ``_calculate_rewards``: unchanged, but its return value, the ``[B_global, F]`` rewards of every reward function
   for the completions of all processes, is captured (the one capture: :class:`~pkpo_trl.callbacks.RewardBatch`).
2. ``_generate_and_score_completions``: after TRL has built the batch, its ``"advantages"`` (this process's slice)
   are replaced by the PKPO transform of the captured rewards, and PKPO's metrics are logged.
"""

import inspect
import logging
import textwrap
import warnings

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import nanstd

from .callbacks import PassAtKCallback, RewardBatch, RunArtifactsCallback, logged_prompts
from .config import PKPOConfig
from .estimators import (
    ESTIMATORS,
    is_binary,
    k_from_success_rate,
    maxg_at_k,
    transform_rewards,
    transform_rewards_mixture,
)
from .k import KCallback
from .metrics import checked_reward_func, combine_rewards, group_pass_at_k, prompt_key
from .vllm_cpu import prepare_vllm_for_weight_sync

__all__ = ["PKPOTrainer"]

logger = logging.getLogger(__name__)

# Every private name of TRL's GRPOTrainer the package uses (here and in callbacks.py); tests/test_trl_compat.py.
TRL_PRIVATE_NAMES = (
    "_calculate_rewards",  # overridden: the gathered rewards
    "_generate_and_score_completions",  # overridden: the advantages
    "_metrics",  # PKPO's and PassAtKCallback's metrics, averaged per logging step by GRPOTrainer.log
    "_logs",  # the completions table: its gathered "prompt"s (prompt keys), "rewards" (GRPOTrainer's pass@k),
    #           "advantages" (shown as PKPO's)
    "_step",  # the micro-batch counter, aligned with a resumed step
    "_buffered_inputs",  # None before a train() call's first generation; a new list per generation batch
)


class PKPOTrainer(GRPOTrainer):
    """GRPOTrainer that optimises pass@k / max@k with PKPO's reward transformation.

    Takes exactly the arguments of :class:`trl.GRPOTrainer` (forwarded to it); ``args`` must be a
    :class:`~pkpo_trl.PKPOConfig`. For each prompt's group of ``n`` completions the combined reward
    ``g_i = sum_f w_f r_{f,i}`` is transformed by :func:`pkpo_trl.estimators.transform_rewards_mixture` (paper
    Eq. 21-33, for the k mixture of ``args.pkpo_k`` at this step) and scaled per ``args.scale_rewards``; those are the
    advantages of TRL's loss. Completions no reward function could score (NaN) get advantage 0 and are left out of
    their group's estimate. Metrics (docs/trainer.md): ``pkpo/k``, ``pkpo/k_mixture/w<k>`` (a scheduled mixture),
    ``pkpo/pass@k_at_current_k``, ``pkpo/max@k``, ``pkpo/frac_groups_no_success``, ``pkpo/frac_zero_advantage``, and
    from :class:`~pkpo_trl.callbacks.PassAtKCallback` (the one passed, else one with default ks) ``pass@k/<k>`` and
    ``solved/*``. A :class:`~pkpo_trl.callbacks.RunArtifactsCallback` (the one passed, else a default one) writes the
    run config, the model card and the pass@k plot at the end of training.
    """

    _tag_names = ["trl", "grpo", "pkpo"]
    _name = "PKPO"
    _paper = {  # TRL's create_model_card cites it, as GRPOTrainer's cites DeepSeekMath's
        "title": "Pass@K Policy Optimization: Solving Harder Reinforcement Learning Problems",
        "id": "2505.15201",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{walder2025pkpo,
                title        = {{Pass@K Policy Optimization: Solving Harder Reinforcement Learning Problems}},
                author       = {Christian Walder and Deep Karkhanis},
                year         = 2025,
                eprint       = {arXiv:2505.15201},
            }"""),
    }

    def __init__(self, model, reward_funcs=None, args=None, *positional, **kwargs):
        bound = inspect.signature(GRPOTrainer.__init__).bind(self, model, reward_funcs, args, *positional, **kwargs)
        args = bound.arguments.get("args")
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = bound.arguments["args"] = PKPOConfig(f"{str(name).split('/')[-1]}-PKPO")
        if not isinstance(args, PKPOConfig):
            kind = "a GRPOConfig" if isinstance(args, GRPOConfig) else type(args).__name__
            raise TypeError(
                f"PKPOTrainer needs a PKPOConfig, got {kind}. PKPOConfig is a GRPOConfig with PKPO's "
                "options: replace `GRPOConfig(...)` with `pkpo_trl.PKPOConfig(...)`."
            )
        callbacks = list(bound.arguments.get("callbacks") or [])
        self.k_source = KCallback(args.k_spec())
        own = [self.k_source]
        for kind in (PassAtKCallback, RunArtifactsCallback):
            if not any(isinstance(callback, kind) for callback in callbacks):
                own.append(kind())
        bound.arguments["callbacks"] = callbacks + own
        if args.scale_rewards == "group":
            message = "scale_rewards='group' divides each group's PKPO-transformed rewards by their own standard "
            message += "deviation, which undoes PKPO's relative weighting between prompts; 'batch' or 'none' keep it."
            warnings.warn(message, UserWarning, stacklevel=2)
        prepare_vllm_for_weight_sync(args.use_vllm, args.vllm_mode)  # vLLM's CPU build: see vllm_cpu.py
        self.reward_batch: RewardBatch | None = None
        super().__init__(*bound.args[1:], **bound.kwargs)
        self.reward_funcs = [
            func if isinstance(func, torch.nn.Module) else checked_reward_func(func, name)
            for func, name in zip(self.reward_funcs, self.reward_func_names, strict=True)
        ]
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, PassAtKCallback | RunArtifactsCallback):
                callback.attach(self)
        self._captured: list[torch.Tensor] = []
        self._warned_eval_cap = False
        self._success_history: dict[str, float] = {}  # adaptive k: prompt key -> success rate at its latest visit

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._captured.append(rewards_per_func.detach().clone())  # a copy: TRL may change its tensor in place later
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self.model.training and self._buffered_inputs is None:
            # First generation of a train() call. TRL counts micro-batches in `_step` from 0 on every call, so a run
            # resumed in the middle of a generation batch would start its batches at other steps than the
            # uninterrupted run (and score them with other ks). Count from the resumed step instead.
            self._step = self.state.global_step * self.args.gradient_accumulation_steps
        self._captured = []
        output = super()._generate_and_score_completions(inputs)
        if len(self._captured) != 1 or "advantages" not in output:
            raise RuntimeError(
                f"pkpo_trl: during one GRPOTrainer._generate_and_score_completions, _calculate_rewards ran "
                f"{len(self._captured)} times (PKPO needs exactly once) and 'advantages' was "
                f"{'' if 'advantages' in output else 'not '}returned; this TRL version is not supported."
            )
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval
        groups = combine_rewards(self._captured[0], self.reward_weights).view(-1, n)
        prompts = logged_prompts(self, groups.shape[0], n) if mode == "train" else []
        serial = self.reward_batch.serial + 1 if self.reward_batch is not None else 0
        self.reward_batch = RewardBatch(mode, groups, prompts, serial)

        advantages = self._scale(self._transform(groups, mode), ~groups.isnan()).view(-1)
        local = output["advantages"]
        start = self.accelerator.process_index * local.shape[0]
        output["advantages"] = advantages[start : start + local.shape[0]].to(local.dtype)
        logged = self._logs["advantages"]  # TRL's (GRPO) advantages for the completions table: show ours instead
        for _ in range(min(len(logged), advantages.numel())):
            logged.pop()
        logged.extend(advantages.tolist())
        metrics = self._metrics[mode]
        success = (groups >= self.args.pkpo_success_threshold).to(groups.dtype).masked_fill(groups.isnan(), torch.nan)
        metrics["pkpo/frac_groups_no_success"].append((~(success == 1).any(dim=1)).float().mean().item())
        metrics["pkpo/frac_zero_advantage"].append((advantages == 0).float().mean().item())
        if mode == "train" and not advantages.abs().gt(0).any():
            _warn_no_signal(self.state.global_step + 1, groups)
        return output

    def _transform(self, groups: torch.Tensor, mode: str) -> torch.Tensor:
        """The transformed rewards of ``groups`` under this step's k mixture (moved into the k range of the group
        size, which is smaller for evaluation groups of ``num_generations_eval``), or adaptive k per prompt."""
        estimator = ESTIMATORS[self.args.pkpo_estimator]
        metrics, n = self._metrics[mode], groups.shape[-1]
        k_min, k_max = estimator.k_range(n)
        if k_max < 1:  # a group too small for any baseline (num_generations_eval=1) carries no signal
            return torch.zeros_like(groups)
        spec, mixture = self.k_source.spec, self.k_source.mixture
        if not estimator.uses_k:  # its objective is fixed: no k to log
            return transform_rewards(groups, k_max, estimator.name)
        capped = mixture.capped(k_min, k_max)
        if capped != mixture and not self._warned_eval_cap:
            logger.warning(
                "pkpo_trl: evaluation groups of %d completions allow k <= %d; pkpo_k=%s is scored with the "
                "mixture %s there (logged as eval_pkpo/k).",
                n,
                k_max,
                spec.text,
                capped,
            )
            self._warned_eval_cap = True
        k = max(capped.ks)
        if spec.adaptive_min is not None and mode == "train":
            per_group = self._history_k(groups, min(spec.adaptive_min, k), k)
            metrics["pkpo/k"].append(per_group.double().mean().item())
            advantages = transform_rewards(groups, per_group, estimator.name)
        else:
            metrics["pkpo/k"].append(capped.mean_k)
            if spec.kind != "constant" and not spec.one_k:
                # The weight applied at each k (0 for a k the groups cannot take: it moved to the cap); they sum to 1.
                for k_i in sorted(set(spec.values) | set(capped.ks)):
                    metrics[f"pkpo/k_mixture/w{k_i}"].append(capped.as_dict().get(k_i, 0.0))
            weights = capped.as_dict()
            advantages = (
                transform_rewards(groups, k, estimator.name)
                if len(weights) == 1
                else transform_rewards_mixture(groups, weights, estimator.name)
            )
        metrics["pkpo/pass@k_at_current_k"].append(group_pass_at_k(groups, [k], self.args.pkpo_success_threshold)[k])
        if not is_binary(groups):
            metrics["pkpo/max@k"].append(maxg_at_k(groups, k).nanmean().item())
        return advantages

    def _history_k(self, groups: torch.Tensor, k_min: int, k_max: int) -> torch.Tensor:
        """Adaptive k: each group's k from its prompt's success rate at its latest earlier visit
        (:func:`~pkpo_trl.estimators.k_from_success_rate`), read before this batch is recorded, so k never depends
        on the samples it weights; then records this batch's success rates."""
        keys = [prompt_key(prompt) for prompt in self.reward_batch.prompts]
        rates = torch.tensor([self._success_history.get(key, float("nan")) for key in keys], dtype=torch.float64)
        per_group = k_from_success_rate(rates, k_min, k_max).to(groups.device)
        success = (groups >= self.args.pkpo_success_threshold).to(torch.float64).masked_fill(groups.isnan(), torch.nan)
        for key, rate in zip(keys, success.nanmean(dim=1).tolist()):
            if rate == rate:  # a group with no scored completion leaves the history as it was
                self._success_history[key] = rate
        return per_group

    def _scale(self, advantages: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """Divide by the standard deviation of the scored completions' advantages (of the batch, or per group), as
        TRL does with nanstd; unscored completions (advantage 0) are left out of it, as counting their zeros would
        scale every other advantage up. In float64: the variance of float32 rewards above ~1e19 overflows."""
        mode, n = self.args.scale_rewards, advantages.shape[-1]
        if mode == "none" or (mode == "group" and n < 2):
            return advantages
        masked = advantages.double().masked_fill(~scored, torch.nan)
        std = nanstd(masked.view(-1)) if mode == "batch" else nanstd(masked, dim=1, keepdim=True)
        # Fewer than two scored values give a NaN std; like TRL, such advantages become 0.
        return torch.nan_to_num(advantages.double() / (std + 1e-4), nan=0.0).to(advantages.dtype)


def _warn_no_signal(step: int, groups: torch.Tensor) -> None:
    """Say loudly that a training batch has no reward signal (every advantage 0), and why."""
    scored = groups[~groups.isnan()]
    if scored.numel() == 0:
        why = "no reward function scored any completion (all NaN/None)"
    elif not scored.isfinite().all():
        why = "a reward is infinite (it overflowed float32)"
    else:
        why = "the rewards are constant within every group"
    logger.warning(
        "pkpo_trl: step %d has no reward signal, %s: every advantage is 0 and the step learns nothing.", step, why
    )
