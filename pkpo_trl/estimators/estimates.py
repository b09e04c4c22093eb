"""The unbiased pass@k and max@k estimates of a group (paper Eq. 8 and 19), the binomial ratios they and the
estimators are made of (in log space, so that groups of thousands of samples stay finite), and the adaptive-k rule
read off an estimate of pass@1."""

from __future__ import annotations

import torch

from .inputs import as_float64, check_k, check_rewards, sort_groups


def log_binom(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log C(a, b) for float64 tensors, -inf where C(a, b) = 0 (b < 0 or b > a or a < 0)."""
    valid = (b >= 0) & (b <= a) & (a >= 0)
    a_, b_ = torch.where(valid, a, 0.0), torch.where(valid, b, 0.0)
    out = torch.lgamma(a_ + 1) - torch.lgamma(b_ + 1) - torch.lgamma(a_ - b_ + 1)
    return torch.where(valid, out, -torch.inf)


def binom_ratio(a, b, c, d) -> torch.Tensor:
    """C(a, b) / C(c, d); 0 where C(a, b) = 0 (callers keep C(c, d) > 0)."""
    return torch.exp(log_binom(a, b) - log_binom(c, d))


def maxg_at_k(rewards, k: int) -> torch.Tensor:
    """Unbiased estimate of max@k (pass@k for 0/1 rewards) for each group.

    ``rho(n, k) = 1/C(n,k) * sum_i C(i-1, k-1) * g_(i)`` with rewards sorted ascending (paper Eq. 19);
    for binary rewards with ``c`` correct this is ``1 - C(n-c, k)/C(n, k)`` (Eq. 8, Chen et al. 2021).

    Args:
        rewards: ``[..., n]`` rewards; NaN (or ``None`` in a list) marks an unscored completion, which is
            dropped from its group (a group with fewer than ``k`` scored completions uses ``k' = n'``, one
            with none gives NaN).
        k: number of attempts, ``1 <= k <= n``.

    Returns:
        ``[...]`` estimates in the input's floating dtype.
    """
    g, out_dtype = as_float64(rewards)
    n, has_nan = check_rewards(g)
    k = check_k(k)
    if k > n:
        raise ValueError(f"k={k} > n={n}: no unbiased estimator of max@k exists from fewer than k samples")
    g_sorted, ranks, n_valid, _ = sort_groups(g, has_nan)
    if n_valid is None:
        n_valid = torch.full((1,), float(n), dtype=torch.float64, device=g.device)
    kk = torch.clamp(torch.full_like(n_valid, float(k)), max=n_valid)
    out = (binom_ratio(ranks - 1, kk - 1, n_valid, kk) * g_sorted).sum(-1, keepdim=True)
    out = torch.where(n_valid > 0, out, torch.nan)
    return out.squeeze(-1).to(out_dtype)


def pass_at_k(num_samples, num_correct, k: int) -> torch.Tensor:
    """Closed-form unbiased pass@k, ``1 - C(n-c, k) / C(n, k)`` (paper Eq. 8), elementwise.

    Args:
        num_samples: ``n``, int or integer tensor.
        num_correct: ``c``, int or integer tensor broadcastable with ``num_samples``.
        k: ``1 <= k <= n``.

    Returns:
        float64 tensor of estimates.
    """
    k = check_k(k)
    n = torch.as_tensor(num_samples, dtype=torch.float64)
    c = torch.as_tensor(num_correct, dtype=torch.float64)
    if (n != n.round()).any() or (c != c.round()).any():
        raise ValueError("num_samples and num_correct must be integers")
    if (k > n).any():
        raise ValueError(f"k={k} exceeds num_samples={n.min().item():.0f}")
    if ((c < 0) | (c > n)).any():
        raise ValueError("num_correct must lie in [0, num_samples]")
    kk = torch.full_like(n + c, float(k))
    return 1.0 - binom_ratio(n - c, kk, n, kk)


def k_from_success_rate(success_rate, k_min: int, k_max: int) -> torch.Tensor:
    """Adaptive k per prompt from an earlier estimate ``p`` of its pass@1 (adaptive k in ``PKPOConfig.pkpo_k``)::

        k(p) = clamp(floor(1 / p), k_min, k_max),    k(0) = k(NaN) = k_max (unsolved / no estimate yet)

    ``floor(1/p)`` is the integer k that maximises ``d pass@k / d p = k (1-p)^(k-1)`` (the ratio of
    consecutive terms, ``(k+1)(1-p)/k``, is >= 1 exactly while ``k <= 1/p - 1``; ties go to the larger k):
    the k at which a prompt's pass@k responds most to an improvement of its pass@1. Easy prompts get small
    k (``p > 1/2`` gives 1), hard ones large k. When ``p`` comes from samples other than the ones being
    weighted (earlier visits of the prompt) k is independent of the current samples given the policy, and
    the transform stays an unbiased gradient of ``sum_x pass@k_x(x)``; choosing k from the current samples
    instead is biased (README, "Adaptive k").

    Args:
        success_rate: ``[...]`` pass@1 estimates in [0, 1], NaN for "unknown".
        k_min, k_max: ``1 <= k_min <= k_max``.

    Returns:
        ``[...]`` int64 tensor of k.
    """
    if not 1 <= k_min <= k_max:
        raise ValueError(f"need 1 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    p = torch.as_tensor(success_rate, dtype=torch.float64)
    # p = 0 gives inf; the relative 1e-6 sends an integer 1/p that float rounding put just below it
    # (1/(1/3) in float32) to the tie's larger k.
    k = torch.floor((1.0 + 1e-6) / p.clamp(0.0, 1.0))
    k = torch.where(torch.isnan(p), float(k_max), k.clamp(k_min, k_max))
    return k.to(torch.int64)
