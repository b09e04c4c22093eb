"""The independent enumeration oracle of the PKPO estimators: each spec definition written straight from the paper
as an enumeration over subsets, in python floats (exact for small n), sharing no code with
:mod:`pkpo_trl.estimators`. The estimator tests check the estimators against it (tests/test_estimators.py,
test_estimators_inputs.py, test_estimator_successors.py and test_per_group_k.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations


def comb(a: int, b: int) -> int:
    """C(a, b), 0 outside 0 <= b <= a (math.comb rejects a < 0)."""
    return math.comb(a, b) if 0 <= b <= a else 0


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def oracle_rho(g: Sequence[float], k: int) -> float:
    """rho_g(n, k) = 1/C(n,k) * sum over k-subsets S of max_{j in S} g_j."""
    return _mean([max(g[j] for j in subset) for subset in combinations(range(len(g)), k)])


def oracle_s(g: Sequence[float], k: int) -> list[float]:
    """s_i = 1/C(n,k) * sum over k-subsets S containing i of max_{j in S} g_j."""
    n = len(g)
    per_sample: list[list[float]] = [[] for _ in range(n)]
    for subset in combinations(range(n), k):
        best = max(g[j] for j in subset)
        for i in subset:
            per_sample[i].append(best)
    return [math.fsum(vals) / math.comb(n, k) for vals in per_sample]


def _others(g: Sequence[float], *skip: int) -> list[float]:
    return [v for j, v in enumerate(g) if j not in skip]


def _rloo_over_n(g: Sequence[float]) -> list[float]:
    """k = 1 for every baselined estimator: (g_i - mean of the others) / n; 0 when there are no others."""
    n = len(g)
    if n < 2:
        return [0.0] * n
    return [(g[i] - _mean(_others(g, i))) / n for i in range(n)]


def oracle_sloo(g: Sequence[float], k: int) -> list[float]:
    """Paper Eq. 29 by brute force: s_i - 1/(n-1) * sum_{j != i} s_j(others of i), where s_j(others of i) is
    the enumeration s weight of j computed on the n-1 samples other than i (k <= n-1)."""
    n = len(g)
    s = oracle_s(g, k)
    return [s[i] - math.fsum(oracle_s(_others(g, i), k)) / (n - 1) for i in range(n)]


def oracle_zero_sum_loo(g: Sequence[float], k: int) -> list[float]:
    """The zero-sum leave-one-out estimator: s_i - k/n * rho_g(others of i, k) (enumeration rho)."""
    n = len(g)
    s = oracle_s(g, k)
    return [s[i] - k / n * oracle_rho(_others(g, i), k) for i in range(n)]


def oracle_sloo_minus_one(g: Sequence[float], k: int) -> list[float]:
    """1/C(n,k) * sum_{S containing i} [max S - max S minus {i}]  (the marginal-contribution form).

    At k = 1 the spec prescribes RLOO: s_i - 1/n * mean of the others.
    """
    n = len(g)
    if k == 1:
        return _rloo_over_n(g)
    gains: list[list[float]] = [[] for _ in range(n)]
    for subset in combinations(range(n), k):
        best = max(g[j] for j in subset)
        for i in subset:
            gains[i].append(best - max(g[j] for j in subset if j != i))
    return [math.fsum(vals) / math.comb(n, k) for vals in gains]


def _expected_improvement(value: float, pool: Sequence[float], size: int) -> float:
    """E_T[(value - max T)^+] over the uniform size-subsets T of pool."""
    return _mean([max(value - max(t), 0.0) for t in combinations(pool, size)])


def oracle_l2o(g: Sequence[float], k: int) -> list[float]:
    """MaxPO leave-two-out, by its pairwise O(n^2) definition (RLOO/n at k = 1).

    EI_i = E_T[(g_i - max T)^+], T a (k-1)-subset of the others of i;
    EI_j^(-i) the same for j with T drawn from the n-2 samples other than i and j;
    A_i = k/n * (EI_i - 1/(n-1) * sum_{j != i} EI_j^(-i)).
    """
    n = len(g)
    if k == 1:
        return _rloo_over_n(g)
    out = []
    for i in range(n):
        ei_i = _expected_improvement(g[i], _others(g, i), k - 1)
        baseline = math.fsum(_expected_improvement(g[j], _others(g, i, j), k - 1) for j in range(n) if j != i)
        out.append(k / n * (ei_i - baseline / (n - 1)))
    return out


ORACLES: dict[str, Callable[[Sequence[float], int], list[float]]] = {
    "s": oracle_s,
    "sloo": oracle_sloo,
    "sloo_minus_one": oracle_sloo_minus_one,
    "l2o": oracle_l2o,
}
