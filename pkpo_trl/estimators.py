"""Unbiased pass@k / max@k estimators and the PKPO reward transformation.

Pure torch, no TRL. Every function works on a batch of groups ``rewards[..., n]``:
the last dimension holds the ``n`` rewards of one prompt's completions.

Notation (Walder & Karkhanis, "Pass@K Policy Optimization", arXiv 2505.15201):
``g_(1) <= ... <= g_(n)`` are a group's rewards sorted ascending, ``C(a, b)`` is the
binomial coefficient, ``rho(n, k)`` the unbiased max@k estimate (paper Eq. 8 / 19):

    rho(n, k) = 1/C(n, k) * sum_i C(i-1, k-1) * g_(i)

and ``rho(-i, m)`` the same estimate computed on the ``n - 1`` rewards other than ``g_i``.
The transformed rewards ``A_i`` replace the raw rewards in ``sum_i A_i * grad log p(x_i)``:

===================  =============================================================
estimator            A_i
===================  =============================================================
``s``                ``s_i = 1/C(n,k) * sum_{S containing i, |S|=k} max_{j in S} g_j``
                     (paper Eq. 21, no baseline)
``sloo``             ``s_i - k/n * rho(-i, k)`` (leave-one-out baseline, Eq. 30)
``sloo_minus_one``   ``s_i - k/n * rho(-i, k-1)`` (Eq. 33; the paper's lowest-variance
                     choice and our default). At ``k = 1`` it uses ``rho(-i, 1)``, the
                     mean of the others, i.e. RLOO.
``l2o``              MaxPO's leave-two-out baseline (arXiv 2606.06080), see
                     :func:`transform_rewards`.
===================  =============================================================

Ratios of binomial coefficients are evaluated in log space (``lgamma``) so that groups
of thousands of samples stay finite. Binary rewards take closed forms (no sort); other
rewards the sorted ``O(n log n)`` form; both give the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

try:
    import numpy as _np
except ImportError:  # pragma: no cover - torch works without numpy; then torch.sort is used everywhere
    _np = None

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "is_binary",
    "maxg_at_k",
    "pass_at_k",
    "transform_rewards",
]


@dataclass(frozen=True)
class Estimator:
    """How one estimator builds ``A_i`` from ``s_i`` and a leave-one-out value estimate.

    Attributes:
        name: registry name.
        baseline_k: maps the group's ``k`` to the order ``m`` of the baseline ``k/n * rho(-i, m)``,
            or ``None`` for no baseline.
        min_others: the largest ``k`` is ``n - min_others`` (1 where the baseline needs ``k``
            samples among the ``n - 1`` others).
        description: one line for docs and error messages.
    """

    name: str
    baseline_k: Callable[[torch.Tensor], torch.Tensor] | None
    min_others: int
    description: str


ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(estimator: Estimator) -> Estimator:
    """Add ``estimator`` to :data:`ESTIMATORS` under its name."""
    ESTIMATORS[estimator.name] = estimator
    return estimator


register_estimator(Estimator("s", None, 0, "no baseline (paper Eq. 21)"))
register_estimator(Estimator("sloo", lambda k: k, 1, "leave-one-out baseline k/n*rho(-i,k) (Eq. 30)"))
register_estimator(
    Estimator(
        "sloo_minus_one",
        lambda k: torch.clamp(k - 1, min=1),
        0,
        "baseline k/n*rho(-i,k-1), RLOO at k=1 (Eq. 33, lowest variance)",
    )
)
# MaxPO's leave-two-out estimator starts from the sloo_minus_one signal (n/k times it is the "batch
# expected improvement" EI_i = E_T[(g_i - max T)^+], T a (k-1)-subset of the others) and subtracts
# b_i = 1/(n-1) * sum_{j != i} EI_j^(-i), where EI_j^(-i) draws j's comparators from the n-2 samples
# other than i and j. b_i never sees g_i (unbiased) and sum_i b_i = sum_i EI_i (centered). Since
# rho(m) = rho(m-1) + mean EI on any set, b_i = rho(-i,k) - rho(-i,k-1), so k/n*(EI_i - b_i) equals
# s_i - k/n*rho(-i,k): the same O(n log n) weights as sloo. tests/test_estimators.py checks this
# against the O(n^2)-pairs definition by enumeration. At k = 1 EI has no comparators; we use RLOO.
register_estimator(Estimator("l2o", lambda k: k, 1, "MaxPO leave-two-out baseline: unbiased, advantages sum to 0"))


# --------------------------------------------------------------------------------------------------
# Binomial ratios in log space.


def _log_binom(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log C(a, b) for float64 tensors, -inf where C(a, b) = 0 (b < 0 or b > a or a < 0)."""
    valid = (b >= 0) & (b <= a) & (a >= 0)
    a_ = torch.where(valid, a, torch.zeros_like(a))
    b_ = torch.where(valid, b, torch.zeros_like(b))
    out = torch.lgamma(a_ + 1) - torch.lgamma(b_ + 1) - torch.lgamma(a_ - b_ + 1)
    return torch.where(valid, out, torch.full_like(out, -torch.inf))


def _binom_ratio(a, b, c, d) -> torch.Tensor:
    """C(a, b) / C(c, d), 0 where the numerator or denominator vanishes (callers mask the latter)."""
    num = _log_binom(a, b)
    den = _log_binom(c, d)
    ok = torch.isfinite(num) & torch.isfinite(den)
    diff = torch.where(ok, num - den, torch.full_like(num, -torch.inf))
    return torch.exp(diff)


# --------------------------------------------------------------------------------------------------
# Input checks.


def _as_float64(rewards) -> tuple[torch.Tensor, torch.dtype]:
    if not isinstance(rewards, torch.Tensor):
        rewards = torch.as_tensor(rewards)
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    return rewards.to(torch.float64), out_dtype


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        # numpy and 0-d torch integers are fine; floats (even 2.0) are a caller bug.
        if hasattr(k, "dtype") and not getattr(k.dtype, "is_floating_point", True) and k.ndim == 0:
            k = int(k)
        elif type(k).__module__ == "numpy" and "int" in type(k).__name__:
            k = int(k)
        else:
            raise ValueError(f"k must be an integer, got {k!r} of type {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    return k


def _check_rewards(rewards: torch.Tensor) -> tuple[int, bool]:
    """Returns ``n`` and whether every reward is finite (the common case: one pass, no NaN)."""
    if rewards.ndim == 0:
        raise ValueError("rewards must have shape [..., n] with one group of n rewards in the last dim")
    n = rewards.shape[-1]
    if n == 0:
        raise ValueError("empty group: rewards has size 0 in its last (group) dimension")
    all_finite = bool(torch.isfinite(rewards).all())
    if not all_finite and bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contain inf; use NaN to mark a completion that could not be scored")
    return n, all_finite


def is_binary(rewards: torch.Tensor, may_have_nan: bool = True) -> bool:
    """Whether every scored (non-NaN) reward is 0 or 1: pass@k rewards rather than max@k ones."""
    # Elementwise (no boolean-mask gather): NaN slots do not count against binary.
    binary = (rewards == 0) | (rewards == 1)
    if may_have_nan:
        binary |= torch.isnan(rewards)
    return bool(binary.all())


def _scored_counts(valid: torch.Tensor) -> torch.Tensor:
    """n' per group as float64 ``[..., 1]``; ``[1, ..., 1]`` when nothing is NaN.

    Without NaNs every group has the same n', so k', the ranks and every binomial weight are shared by
    the whole batch: keeping them at a broadcastable shape computes each weight table once per call
    instead of once per group (the log-space binomials dominate the cost otherwise).
    """
    if bool(valid.all()):
        return torch.full((1,) * valid.ndim, float(valid.shape[-1]), dtype=torch.float64, device=valid.device)
    return valid.sum(-1, keepdim=True).to(torch.float64)


# --------------------------------------------------------------------------------------------------
# Value estimators.


def maxg_at_k(rewards, k: int) -> torch.Tensor:
    """Unbiased estimate of max@k (pass@k for 0/1 rewards) for each group.

    ``rho(n, k) = 1/C(n,k) * sum_i C(i-1, k-1) * g_(i)`` with rewards sorted ascending
    (paper Eq. 19); for binary rewards with ``c`` correct this is ``1 - C(n-c, k)/C(n, k)``
    (Eq. 8, Chen et al. 2021).

    Args:
        rewards: ``[..., n]`` rewards; NaN marks an unscored completion, which is dropped from
            its group (a group with fewer than ``k`` scored completions uses ``k' = n'``, one
            with none gives NaN).
        k: number of attempts, ``1 <= k <= n``.

    Returns:
        ``[...]`` estimates in the input's floating dtype.
    """
    g, out_dtype = _as_float64(rewards)
    n, _ = _check_rewards(g)
    k = _check_k(k)
    if k > n:
        raise ValueError(f"k={k} > n={n}: no unbiased estimator of max@k exists from fewer than k samples")
    valid = ~torch.isnan(g)
    n_valid = _scored_counts(valid)
    kk = torch.clamp(torch.full_like(n_valid, float(k)), max=n_valid)
    if is_binary(g):
        c = torch.where(valid, g, torch.zeros_like(g)).sum(-1, keepdim=True)
        out = 1.0 - _binom_ratio(n_valid - c, kk, n_valid, kk)
    else:
        g_sorted, ranks, _ = _sort_groups(g, n_valid)
        out = (_binom_ratio(ranks - 1, kk - 1, n_valid, kk) * g_sorted).sum(-1, keepdim=True)
    out = torch.where(n_valid > 0, out, torch.full_like(out, torch.nan))
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
    k = _check_k(k)
    n = torch.as_tensor(num_samples, dtype=torch.float64)
    c = torch.as_tensor(num_correct, dtype=torch.float64)
    if (n != n.round()).any() or (c != c.round()).any():
        raise ValueError("num_samples and num_correct must be integers")
    if (k > n).any():
        raise ValueError(f"k={k} exceeds num_samples={n.min().item():.0f}")
    if ((c < 0) | (c > n)).any():
        raise ValueError("num_correct must lie in [0, num_samples]")
    kk = torch.full_like(n + c, float(k))
    return 1.0 - _binom_ratio(n - c, kk, n, kk)


# --------------------------------------------------------------------------------------------------
# The reward transformation.


# On CPU numpy's argsort beats torch.sort (torch 2.13, one thread: ~4x for rows of 64-256, ~1.5x at 4096);
# other devices use torch.sort. tests/test_estimators.py runs both paths.
_NUMPY_SORT_ON_CPU = _np is not None


def _sort_last(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.sort(dim=-1)``: ascending values and the permutation (ties in any order)."""
    if _NUMPY_SORT_ON_CPU and x.device.type == "cpu":
        order = torch.from_numpy(_np.argsort(x.detach().numpy(), axis=-1)).long()
        return x.gather(-1, order), order
    return x.sort(dim=-1)


def _sort_groups(g: torch.Tensor, n_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort each group ascending with NaNs first.

    Returns the sorted rewards (NaN slots set to 0), the 1-based ranks among the scored rewards
    (<= 0 for NaN slots) and the sorting permutation.
    """
    n = g.shape[-1]
    g_sorted, order = _sort_last(torch.nan_to_num(g, nan=-torch.inf))
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=g.device) - (n - n_valid)
    return torch.where(ranks >= 1, g_sorted, torch.zeros_like(g_sorted)), ranks, order


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(x, dim=-1) - x


def _exclusive_reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(torch.cumsum(torch.flip(x, dims=[-1]), dim=-1), dims=[-1]) - x


_Weights = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def _sorted_weights(r: torch.Tensor, n: torch.Tensor, k: torch.Tensor, m: torch.Tensor | None) -> _Weights:
    """Weights of ``A_(i) = own_(i) g_(i) + sum_{j>i} up_(j) g_(j) - sum_{j<i} down_(j) g_(j)`` (sorted ranks).

    ``s_(i) = [C(i-1,k-1) g_(i) + sum_{j>i} C(j-2,k-2) g_(j)] / C(n,k)`` (paper Eq. 21-22) and, for a
    baseline ``k/n * rho(-i, m)``, removing ``g_(i)`` keeps the ranks below it and lowers those above by one:
    ``rho(-i, m) = sum_{j<i} C(j-1,m-1) g_(j) / C(n-1,m) + sum_{j>i} C(j-2,m-1) g_(j) / C(n-1,m)``.
    ``up`` is ``None`` when it vanishes identically: for ``m = k-1`` (sloo_minus_one, k >= 2)
    ``k/n * C(j-2,k-2)/C(n-1,k-1) = C(j-2,k-2)/C(n,k)``, so the terms above ``i`` cancel exactly.
    """
    own = _binom_ratio(r - 1, k - 1, n, k)
    up = _binom_ratio(r - 2, k - 2, n, k)
    if m is None:
        return own, up, None
    coef = k / n
    down = coef * _binom_ratio(r - 1, m - 1, n - 1, m)
    if bool((m == k - 1).all()):
        return own, None, down
    return own, up - coef * _binom_ratio(r - 2, m - 1, n - 1, m), down


def _apply_sorted_weights(g_sorted: torch.Tensor, weights: _Weights) -> torch.Tensor:
    own, up, down = weights
    out = own * g_sorted
    if up is not None:
        out = out + _exclusive_reverse_cumsum(up * g_sorted)
    if down is not None:
        out = out - _exclusive_cumsum(down * g_sorted)
    return out


def _binary_values(c: torch.Tensor, n: torch.Tensor, k: torch.Tensor, m: torch.Tensor | None):
    """``A`` of a correct and of an incorrect sample in a group with ``c`` of ``n`` correct.

    ``s``: correct samples get ``k/n``, incorrect ones ``k/n * rho(n-1, c, k-1)`` (paper Eq. 24). The baseline
    ``k/n * rho(-i, m) = k/n * (1 - C(n-1-c_i, m)/C(n-1, m))`` with ``c_i`` the correct count among the
    others: ``c - 1`` for a correct sample, ``c`` for an incorrect one.
    """
    coef = k / n
    correct = coef * torch.ones_like(c)
    incorrect = coef * (1.0 - _binom_ratio(n - 1 - c, k - 1, n - 1, k - 1))
    if m is None:
        return correct, incorrect
    correct = correct - coef * (1.0 - _binom_ratio(n - c, m, n - 1, m))
    incorrect = incorrect - coef * (1.0 - _binom_ratio(n - 1 - c, m, n - 1, m))
    return correct, incorrect


def _group_parameters(n_valid: torch.Tensor, k: int, spec: Estimator):
    """k' (clamped to the scored count), whether the group is usable, a safe n and the baseline order m."""
    kk = torch.clamp(torch.full_like(n_valid, float(k)), max=n_valid - spec.min_others)
    usable = kk >= 1
    if spec.baseline_k is not None:
        usable &= n_valid >= 2  # a baseline needs at least one other sample
    kk = torch.where(usable, kk, torch.ones_like(kk))
    n_safe = torch.where(usable, n_valid, torch.full_like(n_valid, 2.0))
    m = spec.baseline_k(kk) if spec.baseline_k is not None else None
    return kk, usable, n_safe, m


@functools.lru_cache(maxsize=256)
def _shared_tables(n: int, k: int, spec: Estimator, device: torch.device, binary: bool):
    """Weights for a batch without NaN, where every group has the same ``n``: computed once per
    ``(n, k, estimator, device)``. Binary: ``[n+1]`` tables of ``A`` for a correct / incorrect sample indexed by
    the group's correct count; otherwise the ``[n]`` sorted-rank weights. Also returns whether groups are usable.
    """
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, whatever mode the first caller was in
        n_valid = torch.full((1,), float(n), dtype=torch.float64, device=device)
        kk, usable, n_safe, m = _group_parameters(n_valid, k, spec)
        if binary:
            c = torch.arange(n + 1, dtype=torch.float64, device=device)
            return _binary_values(c, n_safe, kk, m), bool(usable.all())
        ranks = torch.arange(1, n + 1, dtype=torch.float64, device=device)
        return _sorted_weights(ranks, n_safe, kk, m), bool(usable.all())


def transform_rewards(rewards, k: int, estimator: str = "sloo_minus_one") -> torch.Tensor:
    """PKPO-transformed rewards ``A_i`` for every completion of every group.

    ``A_i = s_i - b_i`` where ``s_i`` is the unbiased per-sample gradient weight of max@k
    (paper Eq. 21; binary closed form Eq. 24) and ``b_i`` a baseline that never depends on
    ``g_i``, so ``E[sum_i A_i grad log p(x_i)] = grad max@k`` exactly:

    - ``"s"``: ``b_i = 0``.
    - ``"sloo"``: ``b_i = k/n * rho(-i, k)``; needs ``k <= n-1``. Advantages sum to zero.
    - ``"sloo_minus_one"`` (default): ``b_i = k/n * rho(-i, k-1)``, i.e. ``A_i`` is ``i``'s average
      marginal contribution to the max of the k-subsets holding it (Eq. 33). At ``k = 1`` the
      baseline is ``1/n * mean_{j != i} g_j`` (RLOO), so ``k = 1`` is ordinary mean-baselined RL.
    - ``"l2o"``: MaxPO's leave-two-out estimator (arXiv 2606.06080). With the marginal contribution
      ``EI_i = E_T[(g_i - max T)^+]`` (``T`` a uniform ``(k-1)``-subset of the others; ``k/n * EI_i`` is
      the ``sloo_minus_one`` weight), ``A_i = k/n * (EI_i - 1/(n-1) * sum_{j != i} EI_j^(-i))`` where
      ``EI_j^(-i)`` takes ``j``'s comparators from the ``n-2`` samples other than ``i`` and ``j``. The
      baseline never sees ``g_i`` and each group's advantages sum to exactly zero. Algebraically it
      equals ``"sloo"`` (any centered estimator with a symmetric baseline does), which gives its
      ``O(n log n)`` evaluation; needs ``k <= n-1``; RLOO at ``k = 1``.

    Args:
        rewards: ``[..., n]`` rewards, one group per row. NaN marks a completion no reward
            function could score: it is left out of its group's estimate and gets ``A_i = 0``;
            a group left with ``n'`` scored completions uses ``k' = min(k, n' - min_others)``
            and gets all zeros when that is below 1.
        k: ``1 <= k <= n`` (``k <= n-1`` for ``"sloo"`` and ``"l2o"``).
        estimator: a name in :data:`ESTIMATORS`.

    Returns:
        Tensor of the shape of ``rewards``, in its floating dtype (computed in float64).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    spec = ESTIMATORS[estimator]
    g, out_dtype = _as_float64(rewards)
    n, all_finite = _check_rewards(g)
    k = _check_k(k)
    if k > n - spec.min_others:
        need = "n-1" if spec.min_others else "n"
        raise ValueError(f"k={k} is too large for estimator {estimator!r} with n={n}: it needs k <= {need}")

    binary = is_binary(g, may_have_nan=not all_finite)
    if all_finite:
        # Common case: every group has n scored samples and shares one cached weight table.
        tables, usable = _shared_tables(n, k, spec, g.device, binary)
        if binary:
            correct = g == 1
            c = correct.sum(-1, keepdim=True)
            out = torch.where(correct, tables[0][c], tables[1][c])
        else:
            g_sorted, order = _sort_last(g)
            out = _apply_sorted_weights(g_sorted, tables)
            # Back from sorted order; ties get equal values, so which tied slot is which does not matter.
            out = torch.empty_like(out).scatter_(-1, order, out)
        if not usable:
            out = torch.zeros_like(out)
        return out.to(out_dtype)

    valid = ~torch.isnan(g)
    n_valid = valid.sum(-1, keepdim=True).to(torch.float64)
    kk, usable, n_safe, m = _group_parameters(n_valid, k, spec)
    if binary:
        correct = valid & (g == 1)
        a_correct, a_incorrect = _binary_values(correct.sum(-1, keepdim=True).to(torch.float64), n_safe, kk, m)
        out = torch.where(correct, a_correct, a_incorrect)
    else:
        g_sorted, ranks, order = _sort_groups(g, n_valid)
        out = _apply_sorted_weights(g_sorted, _sorted_weights(ranks, n_safe, kk, m))
        out = torch.empty_like(out).scatter_(-1, order, out)
    out = torch.where(valid & usable, out, torch.zeros_like(out))
    return out.to(out_dtype)
