"""MaxRL twice (issue 20): the published estimator ``pkpo_estimator="maxrl"`` and its exact PKPO counterpart, the
harmonic k mixture ``pkpo_k="harmonic"``. Formula, config, what reaches the loss, and the gradients'
expectations (exact over the correct count, and by Monte Carlo)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import N_GEN, binary_reward, continuous_reward, train

from pkpo_trl import PKPOConfig
from pkpo_trl.estimators import ESTIMATORS, register_estimator, transform_rewards, transform_rewards_mixture
from pkpo_trl.k import KMixture, KSpec


def maxrl_formula(groups: torch.Tensor) -> torch.Tensor:
    """``(g_i - mean) / (n * mean)`` over each group's scored rewards, 0 for NaN slots and groups without success."""
    scored = ~groups.isnan()
    n = scored.sum(-1, keepdim=True).double()
    mean = groups.nan_to_num(0.0).sum(-1, keepdim=True) / n
    out = (groups - mean) / (n * mean)
    return torch.where(scored & (mean > 0), out, 0.0).to(groups.dtype)


# --------------------------------------------------------------------------------------------------
# The published estimator.


def test_maxrl_is_the_published_advantage_divided_by_n():
    generator = torch.Generator().manual_seed(0)
    for n in (1, 2, 5, 16):
        groups = (torch.rand(200, n, generator=generator, dtype=torch.float64) < 0.3).double()
        torch.testing.assert_close(transform_rewards(groups, 1, "maxrl"), maxrl_formula(groups), rtol=0, atol=1e-12)


def test_maxrl_hand_values_and_unscored_completions():
    # c = 1 of 4: the correct sample gets (1 - 1/4) / (4 * 1/4) = 0.75, the others -1/4.
    groups = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    got = transform_rewards(groups, 1, "maxrl")
    torch.testing.assert_close(got[0], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    assert (got[1:] == 0).all()  # no success: no signal; all correct: nothing to prefer
    with_nan = torch.tensor([[1.0, float("nan"), 0.0, 0.0]])  # scored n' = 3, mean 1/3
    torch.testing.assert_close(transform_rewards(with_nan, 1, "maxrl"), maxrl_formula(with_nan))
    assert transform_rewards(with_nan, 1, "maxrl")[0, 1] == 0


def test_maxrl_ignores_k_and_refuses_continuous_rewards():
    groups = (torch.rand(50, 8, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    assert torch.equal(transform_rewards(groups, 1, "maxrl"), transform_rewards(groups, 8, "maxrl"))
    with pytest.raises(ValueError, match="binary"):
        transform_rewards(torch.tensor([[0.5, 1.0, 0.0]]), 1, "maxrl")


def test_registering_a_taken_estimator_name_is_an_error():
    with pytest.raises(ValueError, match="'maxrl' is already registered"):
        register_estimator("maxrl")
    assert ESTIMATORS["maxrl"].fn.__name__ == "maxrl"


# --------------------------------------------------------------------------------------------------
# The harmonic mixture.


def test_harmonic_mixture_weights_are_one_over_k():
    mixture = KMixture.parse("harmonic:4")
    harmonic = sum(1 / k for k in range(1, 5))
    assert mixture.ks == (1, 2, 3, 4)
    for k, w in mixture.terms:
        assert w == pytest.approx(1 / k / harmonic)
    assert KSpec.parse(" Harmonic ", k_range=(1, 3)).mixture(0, None) == KMixture.harmonic(3)
    assert KSpec.parse("linear:harmonic->1", k_range=(1, 8)).values == tuple(range(1, 9))


@pytest.mark.parametrize(
    ("spec", "message"),
    [("harmonic", "say its size"), ("harmonic:0", "k must be >= 1"), ("harmonic:x", "'harmonic:x' is not a k spec")],
)
def test_harmonic_mixture_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        KSpec.parse(spec)


def make(tmp_path, **kwargs) -> PKPOConfig:
    return PKPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, **{"num_generations": 8, **kwargs})


def test_harmonic_mixture_size_defaults_to_the_largest_k_of_the_estimator(tmp_path):
    assert make(tmp_path, pkpo_k="harmonic").pkpo_k == "harmonic"  # the user's string is kept
    assert make(tmp_path).k_spec().values == tuple(range(1, 9))
    assert make(tmp_path, pkpo_estimator="l2o").k_range() == (1, 7)
    with pytest.raises(ValueError, match=r"uses k=8, but .* allow 1 <= k <= 7"):
        make(tmp_path, pkpo_k="harmonic:8", pkpo_estimator="l2o")
    assert make(tmp_path, pkpo_k="harmonic", pkpo_estimator="l2o").k_spec().values == tuple(range(1, 8))  # T = 7


@pytest.mark.parametrize(
    "kwargs", [dict(pkpo_k="harmonic:8"), dict(pkpo_k=8), dict(pkpo_k="linear:8->1"), dict(pkpo_k="adaptive:1..8")]
)
def test_maxrl_with_a_k_option_is_refused(tmp_path, kwargs):
    with pytest.raises(ValueError, match="'maxrl' has no k"):
        make(tmp_path, pkpo_estimator="maxrl", **kwargs)


def test_maxrl_and_harmonic_reach_the_loss(tmp_path):
    trainer = train(tmp_path / "maxrl", pkpo_estimator="maxrl", scale_rewards="none", reward_fn=binary_reward)
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        expected = maxrl_formula(torch.tensor(rewards, dtype=torch.float64).view(-1, N_GEN)).view(-1).float()
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
    assert not any("pkpo/k" in entry for entry in trainer.state.log_history)  # its objective has no k
    trainer = train(tmp_path / "harm", pkpo_k="harmonic", scale_rewards="none", reward_fn=continuous_reward)
    mixture = KMixture.harmonic(N_GEN).as_dict()
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        expected = transform_rewards_mixture(torch.tensor(rewards).view(-1, N_GEN), mixture).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
    logged = [entry["pkpo/k"] for entry in trainer.state.log_history if "pkpo/k" in entry]
    harmonic = sum(1 / k for k in range(1, N_GEN + 1))
    assert logged and logged[0] == pytest.approx(sum(k * (1 / k) / harmonic for k in range(1, N_GEN + 1)))


# --------------------------------------------------------------------------------------------------
# Expected gradients. One Bernoulli(p) prompt, parameterised by p itself: the score of a success is 1/p, of a
# failure -1/(1-p). MaxRL's truncated objective sum_{k<=T} pass@k / k has the gradient (1 - (1-p)^T) / p.


def truncated_ml_gradient(p: float, size: int) -> float:
    return (1 - (1 - p) ** size) / p


def expected_gradient(estimator: str, mixture: dict[int, float] | None, n: int, p: float) -> float:
    """``E[sum_i A_i d/dp log P(x_i)]``, exactly: a sum over the correct count c ~ Binomial(n, p)."""
    out = 0.0
    for c in range(n + 1):
        group = torch.tensor([[1.0] * c + [0.0] * (n - c)], dtype=torch.float64)
        a = transform_rewards_mixture(group, mixture, estimator) if mixture else transform_rewards(group, 1, estimator)
        score = c * (a[0, 0].item() if c else 0.0) / p - (n - c) * (a[0, -1].item() if c < n else 0.0) / (1 - p)
        out += math.comb(n, c) * p**c * (1 - p) ** (n - c) * score
    return out


@pytest.mark.parametrize("estimator", ["sloo_minus_one", "l2o", "s"])
@pytest.mark.parametrize("p", [0.02, 0.2, 0.7])
def test_harmonic_mixture_is_an_unbiased_gradient_of_the_truncated_ml_objective(estimator, p):
    n = 8
    size = n - ESTIMATORS[estimator].min_others
    mixture = KMixture.harmonic(size)
    normaliser = sum(1 / k for k in range(1, size + 1))  # the mixture's weights sum to 1
    assert expected_gradient(estimator, mixture.as_dict(), n, p) == pytest.approx(
        truncated_ml_gradient(p, size) / normaliser, rel=1e-9
    )


@pytest.mark.parametrize("p", [0.02, 0.2, 0.7])
def test_maxrl_is_unbiased_for_the_objective_truncated_at_n_minus_one(p):
    """MaxRL's mean baseline sees g_i, which costs exactly the last term: its expectation is the truncated gradient
    at T = n - 1, i.e. the one at T = n minus (1-p)^(n-1) (the ``harmonic:n-1`` mixture's objective)."""
    n = 8
    got = expected_gradient("maxrl", None, n, p)
    assert got == pytest.approx(truncated_ml_gradient(p, n - 1), rel=1e-9)
    assert got == pytest.approx(truncated_ml_gradient(p, n) - (1 - p) ** (n - 1), rel=1e-9)


def test_harmonic_unbiased_and_maxrl_biased_by_monte_carlo():
    """The same claims from sampled groups (200,000 groups of 8 at p = 0.1), within 4 Monte Carlo s.e.: the
    harmonic mixture (T = n) estimates the T = n gradient; MaxRL misses it by (1-p)^(n-1) = 0.478, ~100 s.e."""
    n, p, groups = 8, 0.1, 200_000
    generator = torch.Generator().manual_seed(0)
    rewards = (torch.rand(groups, n, generator=generator, dtype=torch.float64) < p).double()
    score = torch.where(rewards == 1, 1 / p, -1 / (1 - p))
    normaliser = sum(1 / k for k in range(1, n + 1))
    harmonic = transform_rewards_mixture(rewards, KMixture.harmonic(n).as_dict()) * normaliser
    maxrl = transform_rewards(rewards, 1, "maxrl")
    target, bias = truncated_ml_gradient(p, n), -((1 - p) ** (n - 1))
    z = {}
    for name, advantages, expected in (("harmonic", harmonic, target), ("maxrl", maxrl, target + bias)):
        per_group = (advantages * score).sum(-1)
        mean, se = per_group.mean().item(), per_group.std().item() / math.sqrt(groups)
        z[name] = (mean - expected) / se
        z[name + " vs T=n"] = (mean - target) / se
    assert abs(z["harmonic"]) < 4 and abs(z["maxrl"]) < 4
    assert z["maxrl vs T=n"] < -20
