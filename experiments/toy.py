"""The paper's 1D toy problem (Walder & Karkhanis, arXiv 2505.15201, Figure 1).

Policy ``x ~ N(theta, sigma^2)`` with ``sigma = 0.1``; reward ``g(x) = x^2`` for ``0 <= x <= 1`` and
``0`` elsewhere. The objective is ``maxg@k(theta) = E[max(g(x_1), ..., g(x_k))]``: ``k = 1`` is the
ordinary expected reward, larger ``k`` rewards a policy whose *best* of ``k`` samples is good, which
pushes the optimal ``theta`` towards the reward's cliff at ``x = 1`` (risk seeking).

Closed form used here. The reward ``G = g(x)`` lies in ``[0, 1]``; for ``0 <= t < 1`` its CDF is

    F(t) = P(G <= t) = P(x < 0) + P(0 <= x <= sqrt t) + P(x > 1)
         = Phi((sqrt(t) - theta) / sigma) + 1 - Phi((1 - theta) / sigma),

and ``F(1) = 1``. The maximum of ``k`` i.i.d. copies has CDF ``F^k``, so for a reward in ``[0, 1]``

    maxg@k(theta) = int_0^1 (1 - F(t)^k) dt = int_0^1 2u (1 - F(u^2)^k) du       (t = u^2).

The ``u`` integrand is smooth (the ``sqrt`` kink at ``t = 0`` is gone), so composite Simpson on a
few thousand nodes is accurate to ~1e-10. Its derivative, the exact policy gradient, is

    d/dtheta maxg@k = -k int_0^1 2u F^(k-1) dF/dtheta du,
    dF/dtheta       = (phi((1 - theta)/sigma) - phi((u - theta)/sigma)) / sigma.

Stochastic side (paper Sec. 3-4): the score of the Gaussian policy is
``d/dtheta log N(x; theta, sigma) = (x - theta) / sigma^2``, and one group of ``n`` samples gives the
unbiased gradient estimate ``sum_i A_i (x_i - theta) / sigma^2`` with ``A`` from
:func:`pkpo_trl.estimators.transform_rewards`.
"""

from __future__ import annotations

import math

import torch
from torch.special import ndtr

from pkpo_trl.estimators import maxg_at_k, transform_rewards

__all__ = [
    "SIGMA",
    "exact_grad_maxg_at_k",
    "exact_grad_pass_at_k",
    "exact_maxg_at_k",
    "gradient_estimates",
    "mc_maxg_at_k",
    "optimal_theta",
    "reward",
    "reward_cdf",
    "success",
    "sample_policy",
    "score",
]

SIGMA: float = 0.1
"""Policy standard deviation of the paper's toy (the seed replication uses 0.1)."""

_NUM_NODES = 2001  # Simpson nodes on u in [0, 1]; must be odd.
_CHUNK = 1024  # thetas per vectorised quadrature call


def reward(x: torch.Tensor) -> torch.Tensor:
    """The toy reward ``g(x) = x^2`` for ``0 <= x <= 1``, else ``0`` (paper Figure 1)."""
    return torch.where((x >= 0) & (x <= 1), x * x, torch.zeros_like(x))


SUCCESS_LOW: float = 0.9
"""The binary variant of the toy: a sample succeeds when ``0.9 <= x <= 1`` (reward ``x^2 >= 0.81``)."""


def success(x: torch.Tensor) -> torch.Tensor:
    """0/1 reward of the binary variant: ``1`` for ``SUCCESS_LOW <= x <= 1``, else ``0``."""
    return ((x >= SUCCESS_LOW) & (x <= 1)).to(torch.float64)


def exact_grad_pass_at_k(theta: torch.Tensor | float, k: int, sigma: float = SIGMA) -> torch.Tensor:
    """``d/dtheta pass@k`` of the binary variant: ``pass@k = 1 - (1-p)^k`` with
    ``p = Phi((1-theta)/sigma) - Phi((0.9-theta)/sigma)``, so the gradient is ``k (1-p)^(k-1) dp/dtheta``,
    ``dp/dtheta = (phi((0.9-theta)/sigma) - phi((1-theta)/sigma)) / sigma``."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    lo, hi = (SUCCESS_LOW - theta) / sigma, (1 - theta) / sigma
    p = ndtr(hi) - ndtr(lo)
    dp = (torch.exp(-0.5 * lo * lo) - torch.exp(-0.5 * hi * hi)) / (math.sqrt(2 * math.pi) * sigma)
    return k * (1 - p) ** (k - 1) * dp


def reward_cdf(t: torch.Tensor, theta: torch.Tensor | float, sigma: float = SIGMA) -> torch.Tensor:
    """CDF of the reward ``G = g(x)``, ``x ~ N(theta, sigma^2)``, at ``t in [0, 1]``.

    ``F(t) = Phi((sqrt t - theta)/sigma) + 1 - Phi((1 - theta)/sigma)`` for ``t < 1`` and ``F(1) = 1``
    (``P(x < 0)`` and ``P(x > 1)`` both land on ``G = 0``). Broadcasts ``t`` against ``theta``.
    """
    t = torch.as_tensor(t, dtype=torch.float64)
    theta = torch.as_tensor(theta, dtype=torch.float64)
    f = ndtr((torch.sqrt(t.clamp(0, 1)) - theta) / sigma) + 1 - ndtr((1 - theta) / sigma)
    return torch.where(t >= 1, torch.ones_like(f), f)


def _simpson_weights(m: int) -> torch.Tensor:
    w = torch.ones(m, dtype=torch.float64)
    w[1:-1:2] = 4
    w[2:-1:2] = 2
    return w / (3 * (m - 1))


def _cdf_on_u(theta: torch.Tensor, sigma: float, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.linspace(0, 1, m, dtype=torch.float64)
    th = theta[..., None]
    return u, ndtr((u - th) / sigma) + 1 - ndtr((1 - th) / sigma)


def exact_maxg_at_k(
    theta: torch.Tensor | float, k: int, sigma: float = SIGMA, num_nodes: int = _NUM_NODES
) -> torch.Tensor:
    """``maxg@k(theta) = int_0^1 2u (1 - F(u^2)^k) du`` by composite Simpson (see module docstring).

    Args:
        theta: policy mean(s), any shape.
        k: number of attempts, ``k >= 1``.
        sigma: policy standard deviation.
        num_nodes: odd number of Simpson nodes.

    Returns:
        float64 tensor of the shape of ``theta``.
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    w = _simpson_weights(num_nodes)
    flat = theta.reshape(-1)
    out = torch.empty_like(flat)
    for i in range(0, flat.numel(), _CHUNK):  # bounds memory at _CHUNK * num_nodes doubles
        u, f = _cdf_on_u(flat[i : i + _CHUNK], sigma, num_nodes)
        out[i : i + _CHUNK] = ((2 * u * (1 - f**k)) * w).sum(-1)
    return out.reshape(theta.shape)


def exact_grad_maxg_at_k(
    theta: torch.Tensor | float, k: int, sigma: float = SIGMA, num_nodes: int = _NUM_NODES
) -> torch.Tensor:
    """``d/dtheta maxg@k = -k int_0^1 2u F^(k-1) dF/dtheta du`` with
    ``dF/dtheta = (phi((1-theta)/sigma) - phi((u-theta)/sigma)) / sigma`` (module docstring)."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    u, f = _cdf_on_u(theta, sigma, num_nodes)
    th = theta[..., None]

    def phi(z: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    dfdth = (phi((1 - th) / sigma) - phi((u - th) / sigma)) / sigma
    integrand = -k * 2 * u * f ** (k - 1) * dfdth
    return (integrand * _simpson_weights(num_nodes)).sum(-1)


def optimal_theta(
    k: int,
    sigma: float = SIGMA,
    lo: float = -0.5,
    hi: float = 1.5,
    grid: int = 401,
    tol: float = 1e-10,
) -> tuple[float, float]:
    """The ``theta`` maximising :func:`exact_maxg_at_k`, and the maximum.

    A grid search over ``[lo, hi]`` brackets the global maximum; golden-section search then refines it
    to ``tol``. (Paper Figure 1 marks these optima; they move towards 1 as ``k`` grows.)

    Returns:
        ``(theta_star, maxg@k(theta_star))``.
    """
    thetas = torch.linspace(lo, hi, grid, dtype=torch.float64)
    values = exact_maxg_at_k(thetas, k, sigma)
    i = int(values.argmax())
    a = float(thetas[max(i - 1, 0)])
    b = float(thetas[min(i + 1, grid - 1)])
    inv_phi = (math.sqrt(5) - 1) / 2

    def f(x: float) -> float:
        return float(exact_maxg_at_k(x, k, sigma))

    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = f(d)
    theta_star = (a + b) / 2
    return theta_star, f(theta_star)


def sample_policy(
    theta: torch.Tensor | float, shape: tuple[int, ...], sigma: float = SIGMA, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``x ~ N(theta, sigma^2)`` of shape ``theta.shape + shape`` (float64)."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    eps = torch.randn(*theta.shape, *shape, dtype=torch.float64, generator=generator)
    return theta.reshape(*theta.shape, *([1] * len(shape))) + sigma * eps


def score(x: torch.Tensor, theta: torch.Tensor | float, sigma: float = SIGMA) -> torch.Tensor:
    """Score of the Gaussian policy, ``d/dtheta log N(x; theta, sigma^2) = (x - theta) / sigma^2``.

    ``theta`` broadcasts against the leading dimensions of ``x``.
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    theta = theta.reshape(*theta.shape, *([1] * (x.ndim - theta.ndim)))
    return (x - theta) / sigma**2


def gradient_estimates(
    theta: torch.Tensor | float,
    k: int,
    n: int,
    num_groups: int,
    estimator: str = "sloo_minus_one",
    sigma: float = SIGMA,
    generator: torch.Generator | None = None,
    x: torch.Tensor | None = None,
    binary: bool = False,
) -> torch.Tensor:
    """One PKPO policy-gradient estimate of ``d/dtheta maxg@k`` per group of ``n`` samples.

    ``grad_hat = sum_i A_i (x_i - theta) / sigma^2`` with ``A = transform_rewards(g(x), k, estimator)``
    (paper Eq. 21/29/33, the zero-sum l2o, the successors' estimators), vectorised over
    ``theta.shape + (num_groups, n)``.

    Args:
        theta: policy mean(s); a tensor of shape ``[R]`` runs ``R`` independent policies at once.
        k, n: the objective's ``k`` and the group size (``k <= n``, ``k <= n-1`` for sloo/l2o, ``k = n`` for
            grpo_passk).
        num_groups: independent groups per ``theta``.
        estimator: a name in :data:`pkpo_trl.estimators.ESTIMATORS`.
        generator: torch random generator (ignored when ``x`` is given).
        x: optional pre-drawn samples of shape ``theta.shape + (num_groups, n)`` (common random numbers
            across estimators).
        binary: use the 0/1 reward :func:`success` instead of :func:`reward` (the estimate is then of
            ``d/dtheta pass@k``).

    Returns:
        ``theta.shape + (num_groups,)`` gradient estimates.
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    if x is None:
        x = sample_policy(theta, (num_groups, n), sigma, generator)
    advantages = transform_rewards(success(x) if binary else reward(x), k, estimator)
    return (advantages * score(x, theta, sigma)).sum(-1)


def mc_maxg_at_k(
    theta: torch.Tensor | float,
    k: int,
    n: int,
    num_groups: int,
    sigma: float = SIGMA,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo ``maxg@k`` from :func:`pkpo_trl.estimators.maxg_at_k` (paper Eq. 19) on sampled groups.

    Returns:
        ``(mean, standard_error)`` over ``num_groups`` groups of ``n`` samples, each of shape ``theta.shape``.
    """
    x = sample_policy(theta, (num_groups, n), sigma, generator)
    est = maxg_at_k(reward(x), k)
    return est.mean(-1), est.std(-1) / math.sqrt(num_groups)
