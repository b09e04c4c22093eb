"""Unbiased pass@k / max@k estimators and the PKPO reward transformation.

Pure torch, no TRL. Every function works on a batch of groups ``rewards[..., n]``: the last dimension
holds the ``n`` rewards of one prompt's completions.

The estimators themselves (notation, formulas, paper equations, the table of ``A_i``) are in
:mod:`pkpo_trl.estimator_registry`, registered by name in :data:`ESTIMATORS` (importable from here too, the table
that :class:`~pkpo_trl.PKPOConfig` validates against). This module applies them to reward batches.

The max@k estimators are linear in the sorted rewards: each returns the weights of
``A_(i) = own_(i) g_(i) + sum_{j>i} up_(j) g_(j) - sum_{j<i} down_(j) g_(j)``, applied with one cumulative
sum after one sort: ``O(n log n)`` per group, one vectorised call for the whole batch; tied rewards are read
at their tie block's first rank (exactly equal values). Ratios of binomial coefficients are evaluated in log
space (``lgamma``) so that groups of thousands of samples stay finite.

Because ``A`` is linear in those weights, two extensions cost no extra sort: ``transform_rewards(rewards, k)``
with ``k`` an integer tensor of one k per group (the weights of each distinct k, gathered per group), and
:func:`transform_rewards_mixture` for the objective ``sum_k w_k max@k`` (``A = sum_k w_k A^(k)``, the per-k
weights summed before the cumulative sum). :func:`k_from_success_rate` is the adaptive-k rule of
``PKPOConfig.pkpo_adaptive_k``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .estimator_registry import ESTIMATORS, Estimator, _binom_ratio, _linear, _tie_block_starts, register_estimator

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "is_binary",
    "k_from_success_rate",
    "maxg_at_k",
    "pass_at_k",
    "register_estimator",
    "transform_rewards",
    "transform_rewards_mixture",
]

# --------------------------------------------------------------------------------------------------
# Inputs.


def _as_float64(rewards) -> tuple[torch.Tensor, torch.dtype]:
    """float64 tensor and the output dtype (the input's if floating, else torch's default). In list or
    numpy input, ``None`` (TRL's "not scored") becomes NaN."""
    if not isinstance(rewards, torch.Tensor):
        floating = isinstance(rewards, np.ndarray) and rewards.dtype.kind == "f"
        out_dtype = torch.from_numpy(rewards[:0]).dtype if floating else torch.get_default_dtype()
        return torch.from_numpy(np.array(rewards, dtype=np.float64)), out_dtype
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
    """``n`` and whether any reward is NaN, after checking the shape and that no reward is infinite."""
    if rewards.ndim == 0:
        raise ValueError("rewards must have shape [..., n] with one group of n rewards in the last dim")
    n = rewards.shape[-1]
    if n == 0:
        raise ValueError("empty group: rewards has size 0 in its last (group) dimension")
    if bool(torch.isfinite(rewards).all()):
        return n, False
    if bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contain inf; use NaN to mark a completion that could not be scored")
    return n, True


def is_binary(rewards: torch.Tensor, may_have_nan: bool = True) -> bool:
    """Whether every scored (non-NaN) reward is 0 or 1: pass@k rewards rather than max@k ones."""
    binary = (rewards == 0) | (rewards == 1)
    if may_have_nan:
        binary |= torch.isnan(rewards)
    return bool(binary.all())


# --------------------------------------------------------------------------------------------------
# Sorting and the per-call weights.

# On CPU numpy's argsort beats torch.sort (torch 2.13, one thread: about 5x for rows of 64-256, 2x at 4096);
# other devices use torch.sort. tests/test_estimators.py runs both.
_NUMPY_SORT_ON_CPU = True


def _sort_groups(
    g: torch.Tensor, has_nan: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Sort each group ascending with unscored (NaN) slots first.

    Returns the sorted rewards, the 1-based ranks among the scored rewards (<= 0 for NaN slots), the scored
    count ``n'`` (``None`` without NaNs: every group has all ``n``, the ranks are ``[n]`` and the weights
    have no batch dimension) and the sorting permutation. NaN slots hold the group's smallest scored reward
    (0 if none), so ``g_sorted[..., :1]`` is each group's minimum; all their weights are 0.
    """
    n = g.shape[-1]
    nan = torch.isnan(g) if has_nan else None
    keys = torch.where(nan, -torch.inf, g) if has_nan else g
    if _NUMPY_SORT_ON_CPU and g.device.type == "cpu":
        # numpy's quicksort is slow on long rows of few distinct values; its stable sort is fast there.
        kind = "stable" if n > 256 and is_binary(g) else "quicksort"
        order = torch.from_numpy(np.argsort(keys.detach().numpy(), axis=-1, kind=kind))
        g_sorted = keys.gather(-1, order)
    else:
        g_sorted, order = keys.sort(dim=-1)
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=g.device)
    if not has_nan:
        return g_sorted, ranks, None, order
    n_valid = (~nan).sum(-1, keepdim=True)
    lowest = g_sorted.gather(-1, torch.clamp(n - n_valid, max=n - 1))
    ranks = ranks - (n - n_valid)
    g_sorted = torch.where(ranks >= 1, g_sorted, torch.where(n_valid > 0, lowest, 0.0))
    return g_sorted, ranks, n_valid.to(torch.float64), order


def _group_parameters(n_valid: torch.Tensor, k: int | torch.Tensor, spec: Estimator) -> tuple[torch.Tensor, ...]:
    """k' = min(k, n' - min_others), whether each group is usable, and safe (n, k') for the unusable ones.
    ``k`` is an int or a float64 tensor ``[..., 1]`` of one k per group. Usability does not depend on k
    (``k' >= 1`` iff ``n' - min_others >= 1``), so the terms of a mixture agree on it."""
    k = torch.full_like(n_valid, float(k)) if isinstance(k, int) else k
    kk = torch.minimum(k, spec.k_range(n_valid)[1])  # n' - min_others (n' itself where k_is_n)
    usable = (kk >= 1) & (n_valid >= (2 if spec.needs_others else 1))
    return torch.where(usable, kk, 1.0), usable, torch.where(usable, n_valid, 2.0)


@functools.lru_cache(maxsize=256)
def _shared_weights(name: str, n: int, k: int, device: torch.device) -> tuple[tuple[torch.Tensor, ...], bool]:
    """What a batch without NaNs needs, computed once per ``(estimator, n, k, device)`` (the log-space
    binomials would otherwise dominate small batches): every group has the same n, so the weights are shared
    (binary-only estimators: their values for every correct count c = 0..n). Also: whether groups are usable."""
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, whatever mode the first caller was in
        spec = ESTIMATORS[name]
        kk, usable, n_safe = _group_parameters(torch.full((1,), float(n), dtype=torch.float64, device=device), k, spec)
        grid = torch.arange(int(not spec.binary_only), n + 1, dtype=torch.float64, device=device)  # ranks or c
        return spec.fn(grid, n_safe, kk), bool(usable.all())


# --------------------------------------------------------------------------------------------------
# Public API.


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
    g, out_dtype = _as_float64(rewards)
    n, has_nan = _check_rewards(g)
    k = _check_k(k)
    if k > n:
        raise ValueError(f"k={k} > n={n}: no unbiased estimator of max@k exists from fewer than k samples")
    g_sorted, ranks, n_valid, _ = _sort_groups(g, has_nan)
    if n_valid is None:
        n_valid = torch.full((1,), float(n), dtype=torch.float64, device=g.device)
    kk = torch.clamp(torch.full_like(n_valid, float(k)), max=n_valid)
    out = (_binom_ratio(ranks - 1, kk - 1, n_valid, kk) * g_sorted).sum(-1, keepdim=True)
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


def transform_rewards(rewards, k: int | torch.Tensor, estimator: str = "sloo_minus_one") -> torch.Tensor:
    """PKPO-transformed rewards ``A_i`` for every completion of every group.

    Each estimator is documented at its function in this module (formula and paper equation); all but
    ``pass_at_k_training`` give an unbiased estimate of the gradient of max@k (pass@k for 0/1 rewards):
    ``E[sum_i A_i grad log p(x_i)] = grad max@k``.

    Args:
        rewards: ``[..., n]`` rewards, one group per row (a tensor, array or nested list). NaN (or ``None``)
            marks a completion no reward function could score: it is left out of its group's estimate and
            gets ``A_i = 0``; a group left with ``n'`` scored completions uses ``k' = min(k, n' - min_others)``
            (``k' = n'`` for ``grpo_passk``) and gets all zeros when ``k' < 1``, or when ``n' < 2`` for the
            estimators with a baseline.
        k: ``1 <= k <= n``; ``k <= n-1`` for ``"sloo"`` and ``"l2o"``; ``k = n`` for ``"grpo_passk"``. Either one
            int for every group, or an integer tensor of shape ``rewards.shape[:-1]`` holding one k per group
            (each group is then transformed with its own k, exactly as a call on that row alone would; still
            one vectorised call with no loop over groups: without NaNs, the cached weights of each distinct k
            (at most n of them) are stacked and gathered per group; with NaNs, evaluated at each group's k).
        estimator: a name in :data:`ESTIMATORS`.

    Returns:
        Tensor of the shape of ``rewards``, in its floating dtype (computed in float64).
    """
    return _transform(rewards, ((k, 1.0),), estimator)


def transform_rewards_mixture(
    rewards, mixture: Mapping[int, float], estimator: str = "sloo_minus_one"
) -> torch.Tensor:
    """PKPO-transformed rewards for a mixture of k: the objective ``sum_k w_k * max@k`` (pass@k for 0/1 rewards).

    The transform is linear in the objective, so the mixture's unbiased gradient weights are the same
    combination of the single-k ones::

        A_i = sum_k w_k * A_i^(k) / sum_k w_k,     E[sum_i A_i grad log p(x_i)] = grad sum_k w_k max@k / sum_k w_k

    The weights are normalised to sum to 1 (``{1: 1, 8: 1}`` equals ``{1: 0.5, 8: 0.5}``), so a one-term
    mixture is :func:`transform_rewards` at that k. Since every ``A^(k)`` is linear in the sorted rewards
    (see the module docstring), the mixture combines the per-k weights before one sort and one cumulative
    sum: its cost is that of a single k. A mixture mixes ``1`` (a pass@1 signal, nonzero on easy prompts)
    with a large k (a pass@k signal, nonzero on hard prompts) in every group of the same batch.

    Args:
        rewards: as in :func:`transform_rewards` (NaN rules included: each term uses its ``k' = min(k, n' -
            min_others)``).
        mixture: ``{k: w_k}`` with every k valid for the estimator and ``n`` (as in :func:`transform_rewards`),
            finite weights ``w_k >= 0`` and ``sum_k w_k > 0``.
        estimator: a name in :data:`ESTIMATORS`.

    Returns:
        Tensor of the shape of ``rewards``, in its floating dtype.
    """
    return _transform(rewards, _check_mixture(mixture), estimator)


def k_from_success_rate(success_rate, k_min: int, k_max: int) -> torch.Tensor:
    """Adaptive k per prompt from an earlier estimate ``p`` of its pass@1 (``pkpo_adaptive_k="history"``)::

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


# --------------------------------------------------------------------------------------------------
# The shared implementation: a weighted sum of transforms, each at one k or at a k per group.

Terms = Sequence[tuple["int | torch.Tensor", float]]


def _check_mixture(mixture: Mapping[int, float]) -> list[tuple[int, float]]:
    """Validated ``(k, w_k / sum w)`` pairs (zero weights dropped)."""
    if not isinstance(mixture, Mapping) or not mixture:
        raise ValueError(f"a k mixture is a non-empty mapping {{k: weight}}, got {mixture!r}")
    weights = {}
    for k, w in mixture.items():
        k = _check_k(k)
        w = float(w)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"k mixture weights must be finite and >= 0, got {w} for k={k}")
        weights[k] = weights.get(k, 0.0) + w
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError(f"k mixture weights must sum to > 0, got {mixture!r}")
    return [(k, w / total) for k, w in sorted(weights.items()) if w > 0]


def _check_k_any(k, batch_shape: torch.Size, device: torch.device) -> int | torch.Tensor:
    """An int k, or one k per group as a float64 tensor ``[..., 1]`` (an int where every group has the same k)."""
    if isinstance(k, (torch.Tensor, np.ndarray, list, tuple)) and np.ndim(k) > 0:
        kt = torch.as_tensor(k)
        if kt.is_floating_point() or kt.is_complex() or kt.dtype == torch.bool:
            raise ValueError(f"a per-group k must be an integer tensor, got dtype {kt.dtype}")
        if kt.shape != batch_shape:
            raise ValueError(f"a per-group k must have the batch shape {tuple(batch_shape)}, got {tuple(kt.shape)}")
        if kt.numel() and int(kt.min()) < 1:
            raise ValueError(f"k must be >= 1, got a per-group k with min {int(kt.min())}")
        if kt.numel() == 0 or bool((kt == kt.flatten()[0]).all()):
            return int(kt.flatten()[0]) if kt.numel() else 1
        return kt.to(device=device, dtype=torch.float64).unsqueeze(-1)
    return _check_k(k)


def _combine(terms: Sequence[tuple[tuple[torch.Tensor | None, ...], float]]) -> tuple[torch.Tensor | None, ...]:
    """``sum_t w_t * weights_t`` elementwise (``None``, a vanishing weight, counts as 0)."""
    if len(terms) == 1 and terms[0][1] == 1.0:
        return terms[0][0]
    out: list[torch.Tensor | None] = []
    for parts in zip(*(weights for weights, _ in terms)):
        present = [(part, w) for part, (_, w) in zip(parts, terms) if part is not None]
        out.append(sum(w * part for part, w in present) if present else None)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _shared_mixture_weights(
    name: str, n: int, terms: tuple[tuple[int, float], ...], device: torch.device
) -> tuple[tuple[torch.Tensor, ...], bool]:
    """:func:`_shared_weights` of a mixture, ``sum_t w_t * weights(k_t)``, cached per mixture as well."""
    if len(terms) == 1 and terms[0][1] == 1.0:
        return _shared_weights(name, n, terms[0][0], device)
    with torch.inference_mode(False), torch.no_grad():
        shared = [(_shared_weights(name, n, k, device), w) for k, w in terms]
        return _combine([(weights, w) for (weights, _), w in shared]), shared[0][0][1]


def _distinct_k_tables(
    name: str, n: int, k: torch.Tensor, device: torch.device
) -> tuple[tuple[torch.Tensor | None, ...], bool, torch.Tensor]:
    """For one k per group (float64 ``[..., 1]``, no NaN): the cached :func:`_shared_weights` of each distinct k,
    stacked into ``[U, L]`` tables (``None`` for a weight that vanishes at every k), whether groups are usable,
    and each group's row ``[...]``. One cached lookup per distinct k (at most ``n``: a handful for adaptive k),
    then one gather per weight; cheaper than evaluating the log-space binomials at every ``(group, rank)``."""
    distinct, row = torch.unique(k, return_inverse=True)
    per_k = [_shared_weights(name, n, int(value), device) for value in distinct.tolist()]
    tables: list[torch.Tensor | None] = []
    for parts in zip(*(weights for weights, _ in per_k)):
        present = [part for part in parts if part is not None]
        if not present:
            tables.append(None)
            continue
        size = present[0].shape[-1]
        zeros = torch.zeros(size, dtype=torch.float64, device=device)
        tables.append(torch.stack([zeros if part is None else part.expand(size) for part in parts]))
    return tuple(tables), per_k[0][1], row.squeeze(-1)


def _transform(rewards, terms: Terms, estimator: str) -> torch.Tensor:
    """``sum_t w_t * A^(k_t)`` for validated weights, in one sort."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    spec = ESTIMATORS[estimator]
    g, out_dtype = _as_float64(rewards)
    n, has_nan = _check_rewards(g)
    terms = [(_check_k_any(k, g.shape[:-1], g.device), w) for k, w in terms]
    for k, _ in terms:
        k_max = k if isinstance(k, int) else int(k.max())
        if k_max > n - spec.min_others:
            need = "n-1" if spec.min_others else "n"
            raise ValueError(f"k={k_max} is too large for estimator {estimator!r} with n={n}: it needs k <= {need}")
        if spec.k_is_n and (k != n if isinstance(k, int) else bool((k != n).any())):
            raise ValueError(f"estimator {estimator!r} is defined for k = n only (the whole group): got k={k}, n={n}")
    if spec.binary_only and not is_binary(g):
        raise ValueError(
            f"estimator {estimator!r} is defined for binary (0/1) rewards only; these rewards are not all 0 or 1 "
            "(use 'sloo_minus_one' for continuous rewards)"
        )
    if spec.binary_only:  # a closed form in the correct count: no sort
        correct = g == 1
        c = correct.sum(-1, keepdim=True)
        if not has_nan:  # tables over c = 0..n (one per k), looked up at each group's c
            parts = []
            for k, w in terms:
                if isinstance(k, int):
                    parts.append((tuple(t[c] for t in _shared_weights(estimator, n, k, g.device)[0]), w))
                else:
                    tables, _, row = _distinct_k_tables(estimator, n, k, g.device)
                    parts.append((tuple(t[row.unsqueeze(-1), c] for t in tables), w))
            a_correct, a_incorrect = _combine(parts)
            return torch.where(correct, a_correct, a_incorrect).to(out_dtype)
        valid = ~torch.isnan(g)
        n_valid = valid.sum(-1, keepdim=True).to(torch.float64)
        parts = []
        for k, w in terms:
            kk, usable, n_safe = _group_parameters(n_valid, k, spec)
            parts.append((spec.fn(c.to(torch.float64), n_safe, kk), w))
        a_correct, a_incorrect = _combine(parts)
        out = torch.where(correct, a_correct, a_incorrect)
        return torch.where(valid & usable, out, 0.0).to(out_dtype)

    g_sorted, ranks, n_valid, order = _sort_groups(g, has_nan)
    if n_valid is None:  # no NaN: every group has all n; weights from cached tables
        if all(isinstance(k, int) for k, _ in terms):
            weights, usable = _shared_mixture_weights(estimator, n, tuple(terms), g.device)
        else:
            parts = []
            for k, w in terms:
                if isinstance(k, int):
                    per_k, usable = _shared_weights(estimator, n, k, g.device)
                else:
                    tables, usable, row = _distinct_k_tables(estimator, n, k, g.device)
                    per_k = tuple(None if t is None else t[row] for t in tables)
                parts.append((per_k, w))
            weights = _combine(parts)
    else:  # NaN slots: each group's own n', weights evaluated elementwise
        parts = []
        for k, w in terms:
            kk, usable, n_safe = _group_parameters(n_valid, k, spec)
            parts.append((spec.fn(ranks, n_safe, kk), w))
        weights = _combine(parts)
    if spec.shift_invariant:
        g_sorted = g_sorted - g_sorted[..., :1]
    out = _linear(g_sorted, *weights).gather(-1, _tie_block_starts(g_sorted, ranks))
    if n_valid is not None:
        out = torch.where(usable & (ranks >= 1), out, 0.0)
    elif not usable:
        out = torch.zeros_like(out)
    # Back from sorted order; tied rewards get equal values, so which tied slot is which does not matter.
    out = torch.empty_like(out).scatter_(-1, order, out)
    return out.to(out_dtype)
