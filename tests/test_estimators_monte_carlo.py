"""Monte Carlo unbiasedness of :mod:`pkpo_trl.estimators` (seeded, 5 standard errors): the mean of maxg_at_k is
E[max of k], and the mean of sum_i A_i * (score of x_i) is the exact gradient of E[max of k], for Bernoulli,
discrete (tied), normal and softmax-categorical laws, under every max@k estimator.

Every expected value is an *independent* closed-form population quantity (1 - (1-p)^k, E[max of k] from the CDF
or by quadrature, central differences of the CDF formula), never a call of the code under test. The Monte Carlo
tests of mixtures and adaptive k are in test_per_group_k.py, the successors' in test_estimator_successors.py;
the shared helpers (assert_mc_mean, MC_GROUPS, MC_N) in tests/estimator_helpers.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from estimator_helpers import (
    ALL_ESTIMATORS,
    MC_GROUPS,
    MC_N,
    _one_torch_thread,  # noqa: F401 (an autouse fixture: importing it applies it here)
    assert_mc_mean,
    valid_ks,
)

from pkpo_trl.estimators import maxg_at_k, transform_rewards


@pytest.mark.parametrize("p", [0.1, 0.5, 0.85])
def test_mc_pass_at_k_value_unbiased_bernoulli(p: float) -> None:
    """Bernoulli(p) rewards: E[maxg_at_k] = 1 - (1-p)^k for every k <= n. (A rare outcome, e.g. a group of
    8 failures at p = 0.85, may never be drawn: the tolerance adds the resolution 1/G of a mean of G values
    in [0, 1].)"""
    gen = torch.Generator().manual_seed(10)
    x = (torch.rand(MC_GROUPS, MC_N, generator=gen) < p).to(torch.float64)
    for k in range(1, MC_N + 1):
        assert_mc_mean(maxg_at_k(x, k), 1 - (1 - p) ** k, resolution=1 / MC_GROUPS)


@pytest.mark.parametrize("p", [0.15, 0.6])
@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_gradient_unbiased_bernoulli(estimator: str, p: float) -> None:
    """Bernoulli(p): E[sum_i A_i * d/dp log p(x_i)] = d/dp (1-(1-p)^k) = k(1-p)^(k-1), every estimator."""
    gen = torch.Generator().manual_seed(11)
    x = (torch.rand(MC_GROUPS, MC_N, generator=gen) < p).to(torch.float64)
    score = x / p - (1 - x) / (1 - p)
    for k in (1, 2, 4, MC_N - 1, MC_N):
        if k in valid_ks(MC_N, estimator):
            a = transform_rewards(x, k, estimator)
            assert_mc_mean((a * score).sum(-1), k * (1 - p) ** (k - 1))


def _discrete_expected_max(values: Sequence[float], probs: Sequence[float], k: int) -> float:
    """E[max of k i.i.d. draws] = sum_v v * (F(v)^k - F(v-)^k), values ascending."""
    total, below = 0.0, 0.0
    for v, p in zip(values, probs):
        total += v * ((below + p) ** k - below**k)
        below += p
    return total


def _sample_discrete(values: Sequence[float], probs: Sequence[float], shape: tuple[int, ...], seed: int):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(torch.tensor(probs, dtype=torch.float64), math.prod(shape), True, generator=gen)
    return torch.tensor(values, dtype=torch.float64)[idx].view(shape), idx.view(shape)


@pytest.mark.parametrize(
    ("values", "probs"),
    [
        ([0.0, 1.0, 2.0, 3.0, 4.0], [0.2] * 5),  # uniform on {0, ..., 4}
        ([-2.0, -0.5, 0.0, 1.0, 3.0], [0.1, 0.3, 0.2, 0.25, 0.15]),
    ],
)
def test_mc_maxg_value_unbiased_discrete_law(values: list[float], probs: list[float]) -> None:
    """Discrete law (many ties, sorted path): E[maxg_at_k] = exact E[max of k] from the CDF."""
    x, _ = _sample_discrete(values, probs, (MC_GROUPS, MC_N), seed=12)
    for k in range(1, MC_N + 1):
        assert_mc_mean(maxg_at_k(x, k), _discrete_expected_max(values, probs, k))


def _normal_expected_max(k: int) -> float:
    """E[max of k N(0,1)] = int x * k phi(x) Phi(x)^(k-1) dx (trapezoid on [-12, 12], error << 1e-10)."""
    xs = np.linspace(-12.0, 12.0, 240_001)
    phi = np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(xs / math.sqrt(2)))
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 only has trapz
    return float(trapezoid(xs * k * phi * cdf ** (k - 1), xs))


def test_normal_expected_max_quadrature() -> None:
    """The quadrature reproduces the known E[max of 2] = 1/sqrt(pi) and E[max of 3] = 3/(2 sqrt(pi))."""
    assert abs(_normal_expected_max(2) - 1 / math.sqrt(math.pi)) < 1e-10
    assert abs(_normal_expected_max(3) - 1.5 / math.sqrt(math.pi)) < 1e-10


def test_mc_maxg_value_unbiased_normal() -> None:
    """N(0,1) rewards: E[maxg_at_k] = E[max of k], for k in 1, 2, 4, 8."""
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(MC_GROUPS, MC_N, generator=gen, dtype=torch.float64)
    for k in (1, 2, 4, MC_N):
        assert_mc_mean(maxg_at_k(x, k), _normal_expected_max(k))


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_gradient_unbiased_gaussian_shift(estimator: str) -> None:
    """x ~ N(theta, 1), g = x: E[max of k] = theta + const, so E[sum_i A_i (x_i - theta)] = 1 for every k
    (continuous rewards, sorted path)."""
    gen = torch.Generator().manual_seed(14)
    theta = 0.3
    x = theta + torch.randn(MC_GROUPS, MC_N, generator=gen, dtype=torch.float64)
    for k in (1, 2, 5, MC_N - 1, MC_N):
        if k in valid_ks(MC_N, estimator):
            assert_mc_mean((transform_rewards(x, k, estimator) * (x - theta)).sum(-1), 1.0)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_gradient_unbiased_categorical(estimator: str) -> None:
    """Softmax-categorical policy over tied reward levels: E[sum_i A_i * grad_theta log pi(x_i)] equals the
    exact gradient of E[max of k] (central differences of the CDF formula), every logit component."""
    values = [-1.0, 0.0, 0.5, 2.0]
    logits = np.array([0.3, 0.1, -0.2, -0.9])

    def expected_max(theta: np.ndarray, k: int) -> float:
        probs = np.exp(theta) / np.exp(theta).sum()
        return _discrete_expected_max(values, probs.tolist(), k)

    probs = np.exp(logits) / np.exp(logits).sum()
    x, idx = _sample_discrete(values, probs.tolist(), (MC_GROUPS, MC_N), seed=15)
    onehot = torch.nn.functional.one_hot(idx, len(values)).to(torch.float64)
    score = onehot - torch.tensor(probs)  # d/dtheta log softmax(theta)[x]
    for k in (1, 3, MC_N - 1):
        if k not in valid_ks(MC_N, estimator):
            continue
        a = transform_rewards(x, k, estimator)
        for comp in range(len(values)):
            e = np.zeros(len(values))
            e[comp] = 1e-5
            exact = (expected_max(logits + e, k) - expected_max(logits - e, k)) / 2e-5
            assert_mc_mean((a * score[..., comp]).sum(-1), exact)
