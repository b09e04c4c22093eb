"""The k advisor (issue 20): its hypergeometric shortcut against brute force over every training group that can be
drawn from a prompt's samples, and ``pkpo-eval --suggest_k``."""

from __future__ import annotations

import itertools

import pytest
import torch

from pkpo_trl.estimators import transform_rewards_mixture
from pkpo_trl.k import KMixture
from pkpo_trl.k_advisor import advice_table, group_count_distribution, suggest_k


def brute_force(correct: list[int], num_samples: int, group_size: int, mixture: dict[int, float], estimator: str):
    """Every ``group_size``-subset of each prompt's samples, transformed one by one."""
    signal, norms = [], []
    for c in correct:
        samples = [1.0] * c + [0.0] * (num_samples - c)
        subsets = list(itertools.combinations(range(num_samples), group_size))
        groups = torch.tensor([[samples[i] for i in subset] for subset in subsets], dtype=torch.float64)
        advantages = transform_rewards_mixture(groups, mixture, estimator)
        signal.append((advantages != 0).any(-1).double().mean().item())
        norms.append(advantages.norm(dim=-1).mean().item())
    return signal, norms


@pytest.mark.parametrize("estimator", ["sloo_minus_one", "l2o", "s", "maxrl"])
def test_advisor_matches_brute_force_over_simulated_success_counts(estimator):
    generator = torch.Generator().manual_seed(0)
    num_samples, group_size = 7, 4
    p = torch.rand(40, generator=generator) ** 3  # many hard prompts, a few easy ones
    correct = torch.binomial(torch.full((40,), float(num_samples)), p, generator=generator).int().tolist()
    advice = {a.name: a for a in suggest_k(correct, num_samples, group_size, estimator)}
    k_max = group_size - (1 if estimator == "l2o" else 0)
    candidates = {"maxrl": {k_max: 1.0}} if estimator == "maxrl" else {
        **{f"k={k}": {k: 1.0} for k in range(1, k_max + 1)}, f"harmonic:{k_max}": KMixture.harmonic(k_max).as_dict()
    }  # fmt: skip
    assert set(advice) == set(candidates)
    hardest = sorted(range(40), key=lambda j: correct[j])[:10]
    for name, mixture in candidates.items():
        signal, norms = brute_force(correct, num_samples, group_size, mixture, estimator)
        assert advice[name].frac_signal == pytest.approx(sum(signal) / 40, abs=1e-12)
        assert advice[name].mean_norm == pytest.approx(sum(norms) / 40, rel=1e-9)
        assert advice[name].hard_share == pytest.approx(sum(norms[j] for j in hardest) / sum(norms), rel=1e-9)


def test_larger_k_gives_signal_on_more_hard_prompts():
    # 30 prompts solved once in 16 samples, 10 solved 15 times: k = 1 sees both kinds, k = 8 the hard ones more.
    advice = {a.name: a for a in suggest_k([1] * 30 + [15] * 10, 16, 8)}
    assert advice["k=8"].hard_share > advice["k=1"].hard_share
    assert advice["k=8"].frac_signal < advice["k=1"].frac_signal  # easy groups lose their signal at k = n
    assert "| k=8 |" in advice_table(list(advice.values()))


def test_group_count_distribution_sums_to_one_and_refuses_groups_larger_than_the_samples():
    weights = group_count_distribution(torch.tensor([0, 3, 16]), 16, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, dtype=torch.float64))
    assert weights[0, 0] == pytest.approx(1) and weights[2, 8] == pytest.approx(1)
    with pytest.raises(ValueError, match="--num_samples >= 16"):
        suggest_k([1, 2], 8, 16)
    with pytest.raises(ValueError, match=r"k=\[9\] outside"):
        suggest_k([1, 2], 16, 8, ks=[1, 9])


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (([20, 3], 16, 8), {}, r"success counts must be integers in \[0, num_samples=16\]; got \[20.0\]"),
        (([-1, 3], 16, 8), {}, r"got \[-1.0\]"),
        (([1.5, 3], 16, 8), {}, r"got \[1.5\]"),
        (([[1, 3]], 16, 8), {}, r"one success count per prompt \(a flat list\), got shape \[1, 2\]"),
        (([1, 3], 0, 0), {}, r"num_samples=0 must be a positive integer"),
        (([1, 3], 16, 8), {"hard_fraction": 0}, r"hard_fraction=0 must lie in \(0, 1\]"),
        (([1, 3], 16, 8), {"hard_fraction": 1.5}, r"hard_fraction=1.5 must lie in \(0, 1\]"),
        (([1, 3], 16, 8), {"ks": []}, r"ks is empty"),
    ],
)
def test_impossible_inputs_are_refused_with_one_line_errors(args, kwargs, message):
    # Each of these gave numbers (a count above n, a negative or fractional count, hard_fraction 0 or 1.5) or an
    # advice without any k.
    with pytest.raises(ValueError, match=message):
        suggest_k(*args, **kwargs)
