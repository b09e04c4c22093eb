"""The PKPO reward transformation: an estimator of :data:`~.table.ESTIMATORS` applied to batches of reward groups.

The max@k estimators are linear in the sorted rewards: each returns the weights of
``A_(i) = own_(i) g_(i) + sum_{j>i} up_(j) g_(j) - sum_{j<i} down_(j) g_(j)``, applied by :func:`_linear` with one
cumulative sum after one sort: ``O(n log n)`` per group, one vectorised call for the whole batch; tied rewards are
read at their tie block's first rank (exactly equal values). Because ``A`` is linear in those weights, two extensions
cost no extra sort: ``transform_rewards(rewards, k)`` with ``k`` an integer tensor of one k per group (the weights of
each distinct k, gathered per group), and :func:`transform_rewards_mixture` for the objective ``sum_k w_k max@k``
(``A = sum_k w_k A^(k)``, the per-k weights summed before the cumulative sum).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .inputs import as_float64, check_k, check_rewards, is_binary, sort_groups
from .table import ESTIMATORS, Estimator

# --------------------------------------------------------------------------------------------------
# Applying the weights of the sorted forms.


def _linear(g, own, up, down) -> torch.Tensor:
    """``A_(i) = own_(i) g_(i) + sum_{j>i} up_(j) g_(j) - sum_{j<i} down_(j) g_(j)`` on sorted rewards ``g``
    (``None`` for a weight that vanishes), evaluated with one cumulative sum as
    ``(own + down)_(i) g_(i) + sum_j up_(j) g_(j) - sum_{j<=i} (up + down)_(j) g_(j)``."""
    if up is None:
        return (own + down) * g - torch.cumsum(down * g, dim=-1)
    if down is None:
        down = torch.zeros_like(own)
    return (own + down) * g + (up * g).sum(-1, keepdim=True) - torch.cumsum((up + down) * g, dim=-1)


def _tie_block_starts(g_sorted: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Index of the first slot of each slot's block of tied scored rewards. The sorted forms are exact at
    any rank of a tie block, and tied samples get equal values; read at the block's first rank, no equal
    reward lies below, so ties are exactly equal, the sums carry no cancelling terms (the tiny weights of
    binary groups stay accurate at n = 4096) and a block whose value is 0 (``sloo_minus_one``'s incorrect
    samples) is exactly 0."""
    starts = torch.ones_like(g_sorted, dtype=torch.bool)
    torch.ne(g_sorted[..., 1:], g_sorted[..., :-1], out=starts[..., 1:])
    starts |= r == 1  # unscored slots come first: the first scored slot starts a block
    idx = torch.arange(g_sorted.shape[-1], device=g_sorted.device)
    return torch.cummax(torch.where(starts, idx, 0), dim=-1).values


# --------------------------------------------------------------------------------------------------
# The per-call weights.


def _group_parameters(n_valid: torch.Tensor, k: int | torch.Tensor, spec: Estimator) -> tuple[torch.Tensor, ...]:
    """k' = min(k, k_max(n')) (the estimator's :meth:`~.table.Estimator.k_range`), whether each group is usable,
    and safe (n, k') for the unusable ones.
    ``k`` is an int or a float64 tensor ``[..., 1]`` of one k per group. Usability does not depend on k
    (``k' >= 1`` iff ``k_max(n') >= 1``), so the terms of a mixture agree on it."""
    k = torch.full_like(n_valid, float(k)) if isinstance(k, int) else k
    kk = torch.minimum(k, spec.k_range(n_valid)[1])
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


def transform_rewards(rewards, k: int | torch.Tensor, estimator: str = "sloo_minus_one") -> torch.Tensor:
    """PKPO-transformed rewards ``A_i`` for every completion of every group.

    Each estimator is documented at its function (formula and paper equation; the table is in
    :mod:`pkpo_trl.estimators`); all but ``pass_at_k_training`` and ``maxrl`` give an unbiased estimate of the
    gradient of max@k (pass@k for 0/1 rewards): ``E[sum_i A_i grad log p(x_i)] = grad max@k``.

    Args:
        rewards: ``[..., n]`` rewards, one group per row (a tensor, array or nested list). NaN (or ``None``)
            marks a completion no reward function could score: it is left out of its group's estimate and
            gets ``A_i = 0``; a group left with ``n'`` scored completions uses ``k' = min(k, k_max(n'))``
            (``k_max`` from the estimator's ``k_range``: ``n'`` for ``grpo_passk``) and gets all zeros when
            ``k' < 1``, or when ``n' < 2`` for the estimators with a baseline.
        k: in ``ESTIMATORS[estimator].k_range(n)``: ``1 <= k <= n``; ``k <= n-1`` for ``"sloo"`` and ``"l2o"``;
            ``k = n`` for ``"grpo_passk"``. Either one int for every group, or an integer tensor of shape
            ``rewards.shape[:-1]`` holding one k per group (each group is then transformed with its own k, exactly as
            a call on that row alone would; still one vectorised call with no loop over groups: without NaNs, the
            cached weights of each distinct k (at most n of them) are stacked and gathered per group; with NaNs,
            evaluated at each group's k).
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
        rewards: as in :func:`transform_rewards` (NaN rules included: each term uses its ``k' = min(k,
            k_max(n'))``).
        mixture: ``{k: w_k}`` with every k valid for the estimator and ``n`` (as in :func:`transform_rewards`),
            finite weights ``w_k >= 0`` and ``sum_k w_k > 0``.
        estimator: a name in :data:`ESTIMATORS`.

    Returns:
        Tensor of the shape of ``rewards``, in its floating dtype.
    """
    return _transform(rewards, _check_mixture(mixture), estimator)


# --------------------------------------------------------------------------------------------------
# The shared implementation: a weighted sum of transforms, each at one k or at a k per group.

Terms = Sequence[tuple["int | torch.Tensor", float]]


def _check_mixture(mixture: Mapping[int, float]) -> list[tuple[int, float]]:
    """Validated ``(k, w_k / sum w)`` pairs (zero weights dropped)."""
    if not isinstance(mixture, Mapping) or not mixture:
        raise ValueError(f"a k mixture is a non-empty mapping {{k: weight}}, got {mixture!r}")
    weights = {}
    for k, w in mixture.items():
        k = check_k(k)
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
    return check_k(k)


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
    g, out_dtype = as_float64(rewards)
    n, has_nan = check_rewards(g)
    terms = [(_check_k_any(k, g.shape[:-1], g.device), w) for k, w in terms]
    k_min, k_max = spec.k_range(n)
    for k, _ in terms:
        low, high = (k, k) if isinstance(k, int) else (int(k.min()), int(k.max()))
        if high > k_max:
            need = "k <= n" if k_max == n else f"k <= n-{n - k_max}"
            raise ValueError(f"k={high} is too large for estimator {estimator!r} with n={n}: it needs {need}")
        if low < k_min:
            need = "k = n only (the whole group)" if k_min == n else f"k >= {k_min}"
            raise ValueError(f"k={low} is too small for estimator {estimator!r} with n={n}: it is defined for {need}")
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

    g_sorted, ranks, n_valid, order = sort_groups(g, has_nan)
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
