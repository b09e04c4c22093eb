"""Variance of the PKPO gradient estimators on the 1D toy (paper Figure 4).

For a fixed policy ``theta`` and group size ``n`` we draw many independent groups, form one gradient
estimate per group with each estimator (``grad_hat = sum_i A_i (x_i - theta) / sigma^2``, see
:func:`experiments.toy.gradient_estimates`) and report its variance as a function of ``k``.
PKPO's estimators (``s``, ``sloo``, ``sloo_minus_one``, ``l2o``) are unbiased for ``d/dtheta maxg@k``, so
among them lower variance is strictly better; the paper finds ``sloo_minus_one < sloo < s``. The same
samples are reused for every ``(k, estimator)`` (common random numbers), so differences between curves
are not sampling noise between curves.

``sloo`` and ``l2o`` need ``k <= n - 1`` (their baseline is a max@k estimate on the ``n - 1`` other
samples). ``grpo_passk`` exists only at ``k = n``, where it equals ``sloo_minus_one``. With
``binary=True`` the rewards are the 0/1 :func:`~experiments.toy.success` and the target is
``d/dtheta pass@k``; ``pass_at_k_training`` (0/1 rewards only) joins there. It is not unbiased (its mean is
reported next to the exact gradient), so its variance is on another scale than the others'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pkpo_trl.estimators import ESTIMATORS

from .toy import SIGMA, exact_grad_maxg_at_k, exact_grad_pass_at_k, gradient_estimates, sample_policy

__all__ = ["DEFAULT_ESTIMATORS", "VarianceResult", "gradient_variance"]

DEFAULT_ESTIMATORS: tuple[str, ...] = ("s", "sloo", "sloo_minus_one", "l2o", "grpo_passk", "pass_at_k_training")


@dataclass
class VarianceResult:
    """Per-estimator variance and mean of the gradient estimate, indexed like ``ks``.

    ``variance[e][j]`` and ``mean[e][j]`` are ``nan`` where estimator ``e`` is undefined for ``ks[j]``.
    ``exact_gradient[j]`` is the exact ``d/dtheta maxg@ks[j]`` (``pass@k`` when ``binary``).
    """

    theta: float
    n: int
    num_groups: int
    seed: int
    ks: list[int]
    exact_gradient: list[float]
    variance: dict[str, list[float]] = field(default_factory=dict)
    mean: dict[str, list[float]] = field(default_factory=dict)
    binary: bool = False

    def standard_error(self, estimator: str) -> list[float]:
        """Monte Carlo standard error of ``mean[estimator]``, ``sqrt(variance / num_groups)``."""
        return [math.sqrt(v / self.num_groups) if v == v else math.nan for v in self.variance[estimator]]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def gradient_variance(
    theta: float = 0.5,
    n: int = 16,
    ks: Sequence[int] | None = None,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    num_groups: int = 100_000,
    seed: int = 0,
    sigma: float = SIGMA,
    chunk: int = 50_000,
    progress: Any = None,
    binary: bool = False,
) -> VarianceResult:
    """Variance over groups of the per-group gradient estimate, for every ``k`` and estimator.

    Args:
        theta: policy mean at which the gradient is estimated.
        n: group size (fixed, as in paper Figure 4).
        ks: values of ``k`` (default ``1..n``).
        estimators: names in :data:`pkpo_trl.estimators.ESTIMATORS`.
        num_groups: independent groups (Monte Carlo size).
        seed: seed of the torch generator.
        chunk: groups per vectorised call (bounds memory).
        progress: optional ``tqdm`` bar; ``update(1)`` is called once per ``k``.
        binary: 0/1 rewards (the toy's :func:`~experiments.toy.success`), target ``pass@k``;
            without it, binary-only estimators are skipped (``nan``).

    Returns:
        A :class:`VarianceResult`.
    """
    ks = list(range(1, n + 1)) if ks is None else list(ks)
    for e in estimators:
        if e not in ESTIMATORS:
            raise ValueError(f"unknown estimator {e!r}")
    gen = torch.Generator().manual_seed(seed)
    x = sample_policy(theta, (num_groups, n), sigma, gen)
    result = VarianceResult(
        theta=theta,
        n=n,
        num_groups=num_groups,
        seed=seed,
        ks=ks,
        exact_gradient=[
            float(exact_grad_pass_at_k(theta, k, sigma) if binary else exact_grad_maxg_at_k(theta, k, sigma))
            for k in ks
        ],
        binary=binary,
    )
    for e in estimators:
        result.variance[e] = []
        result.mean[e] = []
    for k in ks:
        for e in estimators:
            spec = ESTIMATORS[e]
            k_min, k_max = spec.k_range(n)
            if not k_min <= k <= k_max or (spec.binary_only and not binary):
                result.variance[e].append(math.nan)
                result.mean[e].append(math.nan)
                continue
            est = torch.cat(
                [
                    gradient_estimates(theta, k, n, 0, e, sigma, x=x[i : i + chunk], binary=binary)
                    for i in range(0, num_groups, chunk)
                ]
            )
            result.variance[e].append(float(est.var()))
            result.mean[e].append(float(est.mean()))
        if progress is not None:
            progress.update(1)
    return result
