"""Tests of the successors' estimators in :mod:`pkpo_trl.estimators`: verl's grpo_passk (Tang et al.) and
Chen et al.'s Pass@k Training (pass_at_k_training); maxrl is tested in test_maxrl.py.

Every expected value comes from an *independent oracle*: verl's top-2 rule, and Chen et al.'s published closed form
and subset-by-subset construction, written here from their sources with exact integers, and the enumeration
oracle of tests/oracle.py (grpo_passk is sloo_minus_one at k = n). A Monte Carlo test (seeded) shows against the
closed-form pass@k gradient that pass_at_k_training is not an unbiased estimate of it.
Helpers: tests/estimator_helpers.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import pytest
import torch
from estimator_helpers import (
    G4,
    MAX_N,
    MC_GROUPS,
    MC_N,
    _one_torch_thread,  # noqa: F401 (an autouse fixture: importing it applies it here)
    _scale,
    assert_close,
    sweep_rows,
    t64,
)
from oracle import _mean, comb, oracle_sloo_minus_one

from pkpo_trl.estimators import transform_rewards


def verl_grpo_passk(g: Sequence[float]) -> list[float]:
    """verl's compute_grpo_passk_outcome_advantage without std normalisation (norm_adv_by_std_in_grpo=False):
    torch.topk(rewards, 2); the top sample gets r_max - r_second_max, every other sample 0."""
    out = [0.0] * len(g)
    if len(g) >= 2:
        top, idx = torch.topk(t64(g), 2)
        out[int(idx[0])] = top[0].item() - top[1].item()
    return out


def chen_pass_at_k_training(g: Sequence[float], k: int) -> list[float]:
    """Chen et al. (arXiv 2508.10751), analytic form as published (README / code/passk_adv.py of
    RUCAIBox/Passk_Training), exact integers, 0/0 := 0:
    R = 1 - C(N_neg, k)/C(N, k), sigma = sqrt(R (1-R)), A_pos = (1-R)/sigma,
    A_neg = (1 - R - C(N_neg-1, k-1)/C(N-1, k-1))/sigma."""
    n, n_neg = len(g), sum(1 for v in g if v == 0)
    R = 1 - comb(n_neg, k) / comb(n, k)
    sigma = math.sqrt(R * (1 - R))
    if sigma == 0:
        return [0.0] * n
    a_pos = (1 - R) / sigma
    a_neg = (1 - R - comb(n_neg - 1, k - 1) / comb(n - 1, k - 1)) / sigma
    return [a_pos if v == 1 else a_neg for v in g]


def chen_by_subsets(g: Sequence[float], k: int) -> list[float]:
    """Chen et al.'s construction by enumeration: a k-subset's reward is its max (pass@k); a sample's
    advantage is the mean over the subsets holding it of (subset reward - mean subset reward) / std of the
    subset rewards (population std over all C(n,k) subsets); 0 where that std is 0."""
    n = len(g)
    subsets = list(combinations(range(n), k))
    reward = {S: max(g[j] for j in S) for S in subsets}
    mean = _mean(list(reward.values()))
    std = math.sqrt(_mean([(v - mean) ** 2 for v in reward.values()]))
    if std == 0:
        return [0.0] * n
    return [_mean([(reward[S] - mean) / std for S in subsets if i in S]) for i in range(n)]


def test_grpo_passk_matches_verl_and_equals_sloo_minus_one_at_k_n() -> None:
    """For every n <= 10 and every kind of group: grpo_passk == verl's top-2 rule (unnormalised) ==
    sloo_minus_one at k = n, exactly (scale 1). With NaN slots it uses the n' scored samples."""
    for n in range(1, MAX_N + 1):
        binary, other = sweep_rows(n, seed=400 + n)
        for rows in (binary, other):
            got = transform_rewards(t64(rows), n, "grpo_passk")
            assert_close(got, [verl_grpo_passk(row) for row in rows], _scale(rows), tol=1e-12)
            torch.testing.assert_close(got, transform_rewards(t64(rows), n, "sloo_minus_one"), rtol=0, atol=1e-12)
            assert_close(got, [oracle_sloo_minus_one(row, n) for row in rows], _scale(rows))
        h = [row[:-1] + [math.nan] for row in other]
        got = transform_rewards(t64(h), n, "grpo_passk")
        assert_close(got, [verl_grpo_passk(row[:-1]) + [0.0] for row in other], _scale(other), tol=1e-12)


def test_grpo_passk_with_verls_std_normalisation_is_a_per_group_rescale() -> None:
    """verl's default divides by the group's (unbiased) std + 1e-6: grpo_passk times 1/(std+eps) per group,
    i.e. sloo_minus_one at k = n up to a per-group scale."""
    gen = torch.Generator().manual_seed(6)
    g = torch.randn(32, 8, generator=gen, dtype=torch.float64)
    ours = transform_rewards(g, 8, "grpo_passk")
    verl_default = torch.stack([t64(verl_grpo_passk(row.tolist())) / (row.std() + 1e-6) for row in g])
    torch.testing.assert_close(ours / (g.std(-1, keepdim=True) + 1e-6), verl_default, rtol=1e-12, atol=1e-12)


def test_grpo_passk_needs_k_equal_n() -> None:
    with pytest.raises(ValueError, match=r"k = n only"):
        transform_rewards(G4, 3, "grpo_passk")


def test_pass_at_k_training_matches_published_formula_and_subset_construction() -> None:
    """For every binary group with n <= 10 (all c) and every k <= n: the published closed form and the
    subset-by-subset construction; its advantages sum to zero per group."""
    for n in range(1, MAX_N + 1):
        for c in range(n + 1):
            g = [1.0] * c + [0.0] * (n - c)
            for k in range(1, n + 1):
                got = transform_rewards(t64(g), k, "pass_at_k_training")
                assert_close(got, chen_pass_at_k_training(g, k), 1.0, tol=1e-9)
                assert_close(got, chen_by_subsets(g, k), 1.0, tol=1e-9)
                assert abs(got.sum().item()) <= 1e-9


def test_pass_at_k_training_k1_is_grpo_with_population_std() -> None:
    """At k = 1 Chen et al.'s advantage is (g_i - mean g) / std g (population std), 0 for constant groups."""
    gen = torch.Generator().manual_seed(7)
    g = (torch.rand(64, 8, generator=gen) < 0.4).to(torch.float64)
    std = g.std(-1, unbiased=False, keepdim=True)
    expected = torch.where(std > 0, (g - g.mean(-1, keepdim=True)) / torch.where(std > 0, std, 1.0), 0.0)
    torch.testing.assert_close(transform_rewards(g, 1, "pass_at_k_training"), expected, rtol=1e-12, atol=1e-12)


def test_pass_at_k_training_rejects_continuous_rewards_and_drops_nans() -> None:
    """Continuous rewards raise a ValueError naming the restriction; NaN slots are dropped (n' and c among the
    scored samples) and get 0."""
    with pytest.raises(ValueError, match=r"binary \(0/1\) rewards only"):
        transform_rewards(G4, 2, "pass_at_k_training")
    h = [1.0, math.nan, 0.0, 0.0, math.nan, 1.0, 0.0]
    got = transform_rewards(t64(h), 3, "pass_at_k_training")
    expected = chen_pass_at_k_training([1.0, 0.0, 0.0, 1.0, 0.0], 3)
    assert_close(got, [expected[0], 0.0, expected[1], expected[2], 0.0, expected[3], expected[4]], 1.0)


@pytest.mark.parametrize("p", [0.15, 0.6])
def test_pass_at_k_training_mean_is_not_the_pass_at_k_gradient(p: float) -> None:
    """Documented: Chen et al.'s advantage is not an unbiased pass@k gradient. Bernoulli(p), n = 8, k = 4:
    the Monte Carlo mean of sum_i A_i * d/dp log p(x_i) differs from k(1-p)^(k-1) by many standard errors
    (its scale involves 1/sigma and n/k); its sign agrees."""
    gen = torch.Generator().manual_seed(16)
    x = (torch.rand(MC_GROUPS, MC_N, generator=gen) < p).to(torch.float64)
    score = x / p - (1 - x) / (1 - p)
    k = 4
    per_group = (transform_rewards(x, k, "pass_at_k_training") * score).sum(-1)
    exact = k * (1 - p) ** (k - 1)
    se = per_group.std().item() / math.sqrt(MC_GROUPS)
    assert abs(per_group.mean().item() - exact) > 10 * se
    assert per_group.mean().item() > 0
