"""Stability of :mod:`pkpo_trl.estimators` at n = 4096, where binomial coefficients overflow float64 (from
n ~ 1030): transform_rewards, maxg_at_k and pass_at_k on continuous and binary groups, against exact integer
binomial weights.

Every reference is *independent* of the code under test: the spec's sorted forms and binary closed forms with
weights computed from exact python integers (correctly rounded division), summed with ``math.fsum``.
Helpers: tests/estimator_helpers.py.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from estimator_helpers import (
    ALL_ESTIMATORS,
    MIN_OTHERS,
    _one_torch_thread,  # noqa: F401 (an autouse fixture: importing it applies it here)
)
from oracle import comb

from pkpo_trl.estimators import maxg_at_k, pass_at_k, transform_rewards

BIG_N = 4096


def _exact_ratio(a: int, b: int, c: int, d: int) -> float:
    """C(a, b) / C(c, d) from exact integers (python int division is correctly rounded; 0 if C(a,b) = 0)."""
    return comb(a, b) / _cached_comb(c, d)


@functools.cache
def _cached_comb(a: int, b: int) -> int:
    return math.comb(a, b)


@functools.cache
def _ratio_column(b: int, length: int, c: int, d: int) -> tuple[float, ...]:
    """(C(a, b) / C(c, d) for a = 0..length-1), exact integers via C(a+1, b) = C(a, b) (a+1) / (a+1-b)."""
    den = math.comb(c, d)
    out, current = [], comb(b, b)  # C(b, b) = 1 (0 if b < 0)
    for a in range(length):
        if a < b or b < 0:
            out.append(0.0)
            continue
        if a > b:
            current = current * a // (a - b)
        out.append(current / den)
    return tuple(out)


def _reference_at(g_sorted: list[float], k: int, estimator: str, ranks: list[int]) -> dict[int, float]:
    """A at the given 1-based ranks of an ascending, tie-free group, from the spec's sorted forms with
    exact weights: s_(r) = [C(r-1,k-1) g_(r) + sum_{j>r} C(j-2,k-2) g_(j)] / C(n,k) and, on the others
    of r, rho(-r, m) = sum_t C(t-1,m-1)/C(n-1,m) * (t-th smallest other)."""
    n = len(g_sorted)
    own = _ratio_column(k - 1, n, n, k)  # own[r-1] = C(r-1, k-1) / C(n, k)
    up = (0.0,) + _ratio_column(k - 2, n - 1, n, k)  # up[j-1] = C(j-2, k-2) / C(n, k)
    m = {"s": None, "sloo": k, "l2o": k, "sloo_minus_one": max(k - 1, 1)}[estimator]
    rho_w = _ratio_column(m - 1, n - 1, n - 1, m) if m else ()  # rho_w[t-1] = C(t-1, m-1) / C(n-1, m)
    out = {}
    for r in ranks:
        s = math.fsum([own[r - 1] * g_sorted[r - 1]] + [up[j - 1] * g_sorted[j - 1] for j in range(r + 1, n + 1)])
        if m is None:
            out[r] = s
            continue
        others = g_sorted[: r - 1] + g_sorted[r:]
        coef = k / (n - 1) if estimator == "sloo" else k / n
        out[r] = s - coef * math.fsum(w * v for w, v in zip(rho_w, others))
    return out


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
@pytest.mark.parametrize("k", [1, 64, 2048, BIG_N])
def test_stability_n4096(estimator: str, k: int) -> None:
    """n = 4096 (binomials overflow float64 at n ~ 1030): finite values that match exact-integer-weight
    references at 40 ranks to 1e-9 relative (k = n is replaced by n-1 for sloo/l2o). For l2o the reference
    is its zero-sum form s_i - k/n * rho(-i, k) (equal to MaxPO's pairwise form by enumeration for n <= 10
    in test_estimators.py; at large n we also check l2o's zero sum)."""
    k = min(k, BIG_N - MIN_OTHERS[estimator])
    gen = torch.Generator().manual_seed(16)
    g = torch.randn(BIG_N, generator=gen, dtype=torch.float64) + 0.5
    out = transform_rewards(g, k, estimator)
    assert torch.isfinite(out).all()
    g_sorted, order = g.sort()
    picks = sorted({1, 2, k - 1, k, k + 1, BIG_N - 1, BIG_N} | set(range(1, BIG_N + 1, 113)))
    picks = [r for r in picks if 1 <= r <= BIG_N]
    ref = _reference_at(g_sorted.tolist(), k, estimator, picks)
    scale = k / BIG_N * g.abs().max().item()  # size of s_i for the top sample
    for r in picks:
        got = out[order[r - 1]].item()
        assert abs(got - ref[r]) <= 1e-9 * (abs(ref[r]) + scale), (r, got, ref[r])
    if estimator == "l2o":
        assert abs(out.sum().item()) <= 1e-10 * scale * BIG_N
    value = maxg_at_k(g, k).item()
    exact = math.fsum(_exact_ratio(r - 1, k - 1, BIG_N, k) * v for r, v in enumerate(g_sorted.tolist(), 1))
    assert math.isfinite(value) and abs(value - exact) <= 1e-9 * max(1.0, abs(exact))


@pytest.mark.parametrize("k", [1, 64, 2048, BIG_N - 1])
def test_stability_n4096_binary(k: int) -> None:
    """Binary n = 4096 groups (closed forms): finite, and the s / sloo_minus_one closed forms and pass@k
    match exact integer binomial ratios."""
    n, c = BIG_N, 1500
    g = torch.zeros(n, dtype=torch.float64)
    g[torch.randperm(n, generator=torch.Generator().manual_seed(17))[:c]] = 1.0
    for estimator in ALL_ESTIMATORS:
        assert torch.isfinite(transform_rewards(g, k, estimator)).all()
    s = transform_rewards(g, k, "s")
    inc = k / n * (1 - _exact_ratio(n - 1 - c, k - 1, n - 1, k - 1))
    torch.testing.assert_close(s, torch.where(g == 1, k / n, inc).to(torch.float64), rtol=1e-9, atol=1e-15)
    if k >= 2:
        lmo = transform_rewards(g, k, "sloo_minus_one")
        cor = k / n * _exact_ratio(n - c, k - 1, n - 1, k - 1)
        torch.testing.assert_close(lmo, torch.where(g == 1, cor, 0.0).to(torch.float64), rtol=1e-9, atol=1e-15)
    exact = 1 - _exact_ratio(n - c, k, n, k)
    assert abs(maxg_at_k(g, k).item() - exact) <= 1e-10
    assert abs(pass_at_k(n, c, k).item() - exact) <= 1e-10
