"""PKPOTrainer: TRL's GRPOTrainer with PKPO-transformed rewards as advantages.

Where pkpo_trl relies on TRL beyond its public API (no other module does):

* this module: the private GRPOTrainer methods it overrides (below), its ``_metrics`` store and micro-batch
  counter ``_step``, and the type aliases and helpers of ``trl.trainer.grpo_trainer`` / ``trl.trainer.utils``;
* ``callbacks.py``: ``PassAtKCallback`` wraps a trainer instance's ``_calculate_rewards`` (the same point as
  here) and appends to its ``_metrics``, so that a plain ``GRPOTrainer`` logs the same metrics;
* ``rewards/registry.py``: ``TRL_CONTEXT_KWARGS``, the keyword arguments GRPOTrainer passes to reward functions
  besides dataset columns (checked against TRL's source by ``tests/test_rewards.py``);
* ``config.py``: ``trl.import_utils.is_vllm_available``, to validate ``use_vllm``.

(``train.py``'s ``--help`` grouping overrides a private method of transformers' ``HfArgumentParser``, which
``TrlParser`` inherits.)

GRPOTrainer computes advantages inline in ``_generate_and_score_completions``; there is no smaller
hook. We therefore wrap two methods and leave everything else (generation with transformers or
vLLM, PEFT, loss, logging) to TRL:

1. ``_calculate_rewards`` (unchanged behaviour): we keep its return value, the ``[B_global, F]``
   rewards of every reward function for the completions of *all* processes.
2. ``_generate_and_score_completions``: after TRL has built the batch, we replace its
   ``"advantages"`` entry (this process's slice) with the PKPO transform of the gathered rewards,
   group by group, and log PKPO metrics. On the first generation of a (resumed) run it also aligns TRL's
   micro-batch counter ``_step`` with the resumed step, so generation batches start where they would have.

``tests/test_trl_compat.py`` checks that both methods exist with the signatures and output keys we
rely on, so an incompatible TRL fails a test rather than a run.
"""

# No `from __future__ import annotations`: PKPOTrainer.__init__'s annotations are evaluated, as GRPOTrainer's
# are, so that the two signatures compare equal (tests/test_trl_compat.py).
import functools
import inspect
import logging
import textwrap
from collections.abc import Callable

import torch
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.trainer import utils as trl_utils
from trl.trainer.grpo_trainer import EnvironmentFactory, RewardFunc, RolloutFunc
from trl.trainer.utils import nanstd

from .annealing import KAnnealingCallback, KMixture, KMixtureCallback, KMixtureSchedule, KSchedule
from .callbacks import PassAtKCallback, combine_rewards, group_pass_at_k, prompt_key
from .config import PKPOConfig
from .estimators import (
    ESTIMATORS,
    is_binary,
    k_from_success_rate,
    maxg_at_k,
    transform_rewards,
    transform_rewards_mixture,
)
from .metrics import check_reward_values
from .vllm_cpu import prepare_vllm_for_weight_sync

__all__ = ["PKPOTrainer"]

logger = logging.getLogger(__name__)

# How GRPOTrainer tells an async reward function from a sync one: TRL >= 1.14's helper (which also sees an async
# `__call__` and partials), else the inspect.iscoroutinefunction that older TRLs call inline.
is_async_callable = getattr(trl_utils, "is_async_callable", inspect.iscoroutinefunction)


class PKPOTrainer(GRPOTrainer):
    """GRPOTrainer that optimises pass@k / max@k with PKPO's reward transformation.

    Takes exactly the arguments of :class:`trl.GRPOTrainer`; ``args`` must be a
    :class:`~pkpo_trl.PKPOConfig`. For each prompt's group of ``n = num_generations`` completions
    the combined reward ``g_i = sum_f w_f r_{f,i}`` is transformed by
    :func:`pkpo_trl.estimators.transform_rewards` (paper Eq. 21-33) and scaled per
    ``args.scale_rewards`` (a standard deviation over the scored completions, as TRL's ``nanstd``); those values
    are the advantages of TRL's loss. Completions that no reward
    function could score (NaN) get advantage 0 and are left out of their group's estimate.

    Metrics added to the trainer's logs (train and eval, per logging step):

    - ``pkpo/k``: the k used for the batch (annealed when a schedule is set; in evaluation, groups of
      ``num_generations_eval`` too small for k use the largest k they support); with ``pkpo_k_mixture`` the
      mixture's mean ``sum_k w_k k``, with ``pkpo_adaptive_k`` the mean of the groups' k.
    - ``pkpo/k_mixture/w<k>`` (with ``pkpo_k_mixture``): the weight of each k in the mixture in use.
    - ``pkpo/pass@1``, ``pkpo/pass@k_at_current_k``: unbiased estimates (Eq. 8) from the batch's groups,
      a completion counting as a success when its reward is ``>= args.pkpo_success_threshold``; the
      second at the k being optimised (the mixture's largest, or ``pkpo_k`` with ``pkpo_adaptive_k``), which
      annealing changes mid-run. For fixed ks (comparable across a run and with a GRPO baseline) see below.
    - ``pkpo/max@k``: the unbiased max@k estimate (Eq. 19) of the raw reward (continuous rewards only).
    - ``pkpo/frac_groups_no_success``: groups where no completion succeeded (no pass@k signal).
    - ``pkpo/frac_zero_advantage``: completions whose advantage is exactly 0.
    - From a :class:`~pkpo_trl.callbacks.PassAtKCallback` (the one passed in ``callbacks``, else one with its
      default ks), which logs the same numbers for a plain ``trl.GRPOTrainer``: ``pass@k/<k>`` at fixed ks,
      and ``solved/num_prompts``, ``solved/frac_prompts``, the distinct training prompts solved at least once
      so far (the paper's "unblocking" signal).
    """

    _tag_names = ["trl", "grpo", "pkpo"]
    _name = "PKPO"
    # TRL's generated model card (create_model_card) cites this paper, as GRPOTrainer's cites DeepSeekMath's.
    _paper = {
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

    def __init__(
        self,
        model: "str | PreTrainedModel | PeftModel",  # noqa: F821 - a string, exactly as in GRPOTrainer
        reward_funcs: RewardFunc | list[RewardFunc] | None = None,
        args: GRPOConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        reward_processing_classes: PreTrainedTokenizerBase | list[PreTrainedTokenizerBase] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: "BitsAndBytesConfig | None" = None,  # noqa: F821
        peft_config: "PeftConfig | None" = None,  # noqa: F821
        tools: list[Callable] | None = None,
        rollout_func: RolloutFunc | None = None,
        environment_factory: EnvironmentFactory | dict[str, EnvironmentFactory] | None = None,
    ):
        # The signature is GRPOTrainer's, parameter for parameter, so that any GRPO call (positional or not) works;
        # `args` is annotated GRPOConfig as there, but must be a PKPOConfig.
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
        # The one source of k for every batch: a schedule of k mixtures, stepped by its callback.
        self.pkpo_k_source = _k_source(callbacks, args)
        if self.pkpo_k_source not in callbacks:
            callbacks.append(self.pkpo_k_source)
        # vLLM's CPU build packs weights at load time in a way TRL's weight push cannot update (see vllm_cpu.py).
        prepare_vllm_for_weight_sync(args.use_vllm, args.vllm_mode)
        super().__init__(
            model,
            reward_funcs,
            args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )
        # TRL turns the values into a tensor with torch.tensor, whose error for a string ("too many dimensions
        # 'str'") names neither the function nor the value: check them on the way out of each function.
        self.reward_funcs = [
            func if isinstance(func, torch.nn.Module) else _checked_reward_func(func, name)
            for func, name in zip(self.reward_funcs, self.reward_func_names, strict=True)
        ]
        # A PassAtKCallback needs the trainer, which a callback is not given. One is always attached: it also
        # counts the prompts solved, the same way as for a plain GRPOTrainer baseline.
        pass_at_k = [callback for callback in callbacks if isinstance(callback, PassAtKCallback)]
        for callback in pass_at_k or [PassAtKCallback()]:
            callback.attach(self)
        self._pkpo_gathered_rewards: torch.Tensor | None = None
        self._pkpo_reward_calls = 0
        self._pkpo_warned_eval_clamp = False
        # pkpo_adaptive_k="history": prompt key -> success rate at its latest visit (restarts on resume).
        self._pkpo_success_history: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------
    # k

    @property
    def pkpo_k(self) -> int:
        """The k used to score the next training batch: the k schedule's (a fixed ``pkpo_k`` is a constant one);
        beside a k mixture, ``args.pkpo_k`` (the eval metrics' k)."""
        return self.args.pkpo_k if self.pkpo_k_mixture is not None else self.pkpo_k_source.k

    @property
    def pkpo_k_mixture(self) -> KMixture | None:
        """The k mixture used to score the next training batch (``pkpo_k_mixture``), else ``None`` (one k)."""
        source = self.pkpo_k_source
        return None if isinstance(source.schedule, KSchedule) else source.mixture

    def _k_for_group_size(self, n: int, mode: str) -> int:
        """The k for groups of ``n``: :attr:`pkpo_k` in training (validated against ``num_generations``), and
        in evaluation, whose groups (``num_generations_eval``) may be smaller, the nearest k they support
        (``grpo_passk``: ``n``, whatever its size)."""
        if mode == "train":
            return self.pkpo_k
        spec = ESTIMATORS[self.args.pkpo_estimator]
        k_min, k_max = spec.k_range(n)
        k = min(max(self.pkpo_k, k_min), k_max)
        if k != self.pkpo_k and not spec.k_is_n and not self._pkpo_warned_eval_clamp:
            logger.warning(
                "pkpo_trl: evaluation groups of num_generations_eval=%d support k <= %d; scoring them with k=%d "
                "instead of the training k=%d (logged as eval_pkpo/k).",
                n, k_max, max(k, 1), self.pkpo_k,
            )  # fmt: skip
            self._pkpo_warned_eval_clamp = True
        return k

    # ------------------------------------------------------------------------------------------
    # The override points.

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # A copy: TRL (or a subclass) may change its tensor in place before the batch is returned to us.
        self._pkpo_gathered_rewards = rewards_per_func.detach().clone()
        self._pkpo_reward_calls += 1
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self.model.training and self._buffered_inputs is None:
            # First generation of a train() call. TRL counts micro-batches in `_step` from 0 on every call, so a
            # run resumed in the middle of a generation batch would start its batches at other steps than the
            # uninterrupted run (and so score them with other k's). Count from the resumed step instead: the
            # batches then start where they would have, and this one serves the rest of the interrupted batch.
            self._step = self.state.global_step * self.args.gradient_accumulation_steps
        self._pkpo_gathered_rewards, self._pkpo_reward_calls = None, 0
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._pkpo_gathered_rewards
        if self._pkpo_reward_calls != 1 or "advantages" not in output:
            raise RuntimeError(
                f"pkpo_trl: during one GRPOTrainer._generate_and_score_completions, _calculate_rewards ran "
                f"{self._pkpo_reward_calls} times (PKPO needs exactly once) and 'advantages' was "
                f"{'' if 'advantages' in output else 'not '}returned; this TRL version is not supported "
                "(see pyproject.toml)."
            )
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval

        rewards = combine_rewards(rewards_per_func, self.reward_weights)
        groups = rewards.view(-1, n)
        k = self._k_for_group_size(n, mode)
        k_mean = None
        if k >= 1:
            advantages, k, k_mean = self._pkpo_transform(groups, k, mode)
            advantages = advantages.view(-1)
        else:  # a group too small for any baseline (e.g. num_generations_eval=1) carries no signal
            advantages = torch.zeros_like(rewards)
        advantages = self._scale(advantages, ~rewards.isnan(), n)

        local = output["advantages"]
        start = self.accelerator.process_index * local.shape[0]
        output["advantages"] = advantages[start : start + local.shape[0]].to(local.dtype)
        self._replace_logged_advantages(advantages)
        self._log_pkpo_metrics(mode, groups, advantages, max(k, 1), k_mean)
        if mode == "train" and not advantages.abs().gt(0).any():
            _warn_no_signal(self.state.global_step + 1, rewards)
        return output

    def _pkpo_transform(self, groups: torch.Tensor, k: int, mode: str) -> tuple[torch.Tensor, int, float]:
        """The transformed rewards of ``groups`` under the configured k (``k``, from :meth:`_k_for_group_size`),
        a mixture of k, or adaptive k per prompt (at most ``k``); also the largest k in use (for
        ``pkpo/pass@k_at_current_k``) and the mean k per group (``pkpo/k``)."""
        estimator = self.args.pkpo_estimator
        if self.pkpo_k_mixture is not None:  # its ks replace pkpo_k; eval groups smaller than a k use their largest k
            k_min, k_max = ESTIMATORS[estimator].k_range(groups.shape[-1])
            mixture = self.pkpo_k_mixture.capped(k_max, k_min)
            for k_i in self.pkpo_k_source.schedule.values:
                weight = mixture.as_dict().get(min(max(k_i, k_min), k_max), 0.0)
                self._metrics[mode][f"pkpo/k_mixture/w{k_i}"].append(weight)
            return transform_rewards_mixture(groups, mixture.as_dict(), estimator), max(mixture.ks), mixture.mean_k
        if self.args.pkpo_adaptive_k == "history" and mode == "train":
            per_group = self._history_k(groups, k)
            return transform_rewards(groups, per_group, estimator), k, per_group.double().mean().item()
        return transform_rewards(groups, k, estimator), k, float(k)

    def _history_k(self, groups: torch.Tensor, k_max: int) -> torch.Tensor:
        """``pkpo_adaptive_k="history"``: each group's k from its prompt's success rate at the prompt's latest
        earlier visit (:func:`~pkpo_trl.estimators.k_from_success_rate`), read before this batch is recorded,
        so k never depends on the samples it weights. Then records this batch's success rates."""
        keys = self._group_prompt_keys(groups.shape[0])
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

    def _scale(self, advantages: torch.Tensor, scored: torch.Tensor, n: int) -> torch.Tensor:
        """Divide by the std of the scored completions' advantages (batch or per group), as TRL does with nanstd.

        Unscored completions (advantage forced to 0) are left out of the std: counting their zeros would shrink
        it and so scale every other advantage up by how many completions no reward function could score.
        """
        mode = self.args.scale_rewards
        if mode == "none" or (mode == "group" and n < 2):
            return advantages
        # In float64: the variance of float32 rewards above ~1e19 overflows float32 to inf, which made every
        # advantage 0 without a word.
        wide = advantages.double()
        masked = wide.masked_fill(~scored, torch.nan)
        if mode == "batch":
            std = nanstd(masked)
        else:  # "group"
            std = nanstd(masked.view(-1, n), dim=1, keepdim=True).expand(-1, n).reshape(-1)
        # Fewer than two scored values give a NaN std; like TRL, such advantages become 0.
        return torch.nan_to_num(wide / (std + 1e-4), nan=0.0).to(advantages.dtype)

    def _replace_logged_advantages(self, advantages: torch.Tensor) -> None:
        # TRL appended its own (GRPO) advantages for the completions table; show ours instead.
        logged = self._logs["advantages"]
        for _ in range(min(len(logged), advantages.numel())):
            logged.pop()
        logged.extend(advantages.tolist())

    def _log_pkpo_metrics(
        self, mode: str, groups: torch.Tensor, advantages, k: int, k_mean: float | None = None
    ) -> None:
        metrics = self._metrics[mode]
        success = (groups >= self.args.pkpo_success_threshold).to(groups.dtype).masked_fill(groups.isnan(), torch.nan)
        metrics["pkpo/k"].append(float(k) if k_mean is None else k_mean)
        metrics["pkpo/pass@1"].append(success.nanmean().item())  # maxg@1 is the plain mean
        metrics["pkpo/pass@k_at_current_k"].append(group_pass_at_k(groups, [k], self.args.pkpo_success_threshold)[k])
        if not is_binary(groups):
            metrics["pkpo/max@k"].append(maxg_at_k(groups, k).nanmean().item())
        no_success = ~(success == 1).any(dim=1)
        metrics["pkpo/frac_groups_no_success"].append(no_success.float().mean().item())
        metrics["pkpo/frac_zero_advantage"].append((advantages == 0).float().mean().item())

    def _group_prompt_keys(self, num_groups: int) -> list[str]:
        """A key (hash) of the prompt of each of the batch's ``num_groups`` groups, in the order of the gathered
        rewards."""
        # TRL has just appended the prompts of all processes, in the order of the gathered rewards, to its
        # completions-table log (a deque of one generation batch): group g holds prompts [g*n, (g+1)*n). These are
        # the prompts the model saw, so they also exist when an environment's reset() supplied them (no `prompt`
        # column), and reading them costs no second gather_object.
        logged = self._logs["prompt"]
        total = len(logged)
        n = self.num_generations
        if total < num_groups * n:
            raise RuntimeError(
                "pkpo_trl: GRPOTrainer logged fewer prompts than it scored completions; this TRL version is not "
                "supported (see pyproject.toml)."
            )
        start = total - num_groups * n
        return [prompt_key(logged[start + group * n]) for group in range(num_groups)]


def _warn_no_signal(step: int, rewards: torch.Tensor) -> None:
    """Say loudly that a training batch has no reward signal (every advantage 0), and why, instead of training on
    it quietly."""
    scored = rewards[~rewards.isnan()]
    if scored.numel() == 0:
        why = "no reward function scored any completion (all NaN/None)"
    elif not scored.isfinite().all():
        why = "a reward is infinite (it overflowed float32)"
    else:
        why = "the rewards are constant within every group"
    logger.warning("pkpo_trl: step %d has no reward signal, %s: every advantage is 0 and the step learns nothing.",
                   step, why)  # fmt: skip


def _k_source(callbacks: list, args: PKPOConfig) -> KMixtureCallback:
    """The trainer's k source: the k callback passed in ``callbacks`` (a :class:`KAnnealingCallback` or
    :class:`KMixtureCallback`), else one built from ``pkpo_k_mixture``, ``pkpo_k_schedule`` or the fixed ``pkpo_k``
    (a constant schedule). A passed one is checked here, at construction: PKPOConfig validated only its own k
    options, and a k the groups cannot support would be clamped silently (a mixture's logged as a weight of a k
    never used)."""
    passed = [callback for callback in callbacks if isinstance(callback, KMixtureCallback)]
    if len(passed) > 1:
        raise ValueError(f"callbacks holds {len(passed)} k callbacks ({', '.join(c._label for c in passed)}): "
                         "pass one, it sets k for every batch")  # fmt: skip
    if passed:
        passed[0].check(args)
        return passed[0]
    if args.pkpo_k_mixture is not None:
        return KMixtureCallback(KMixtureSchedule.parse(args.pkpo_k_mixture, args.k_max()))
    return KAnnealingCallback(KSchedule.parse(args.pkpo_k if args.pkpo_k_schedule is None else args.pkpo_k_schedule))


def _checked_reward_func(func: Callable, name: str) -> Callable:
    """``func`` with its output checked by :func:`~pkpo_trl.metrics.check_reward_values`; async ones stay async."""
    if is_async_callable(func):

        @functools.wraps(func)
        async def checked_async(*args, **kwargs):
            return check_reward_values(name, await func(*args, **kwargs))

        return checked_async

    @functools.wraps(func)
    def checked(*args, **kwargs):
        return check_reward_values(name, func(*args, **kwargs))

    return checked
