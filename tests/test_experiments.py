"""Computed values of the toy reproductions (the repository's experiments/), checked against independent references."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scipy import integrate, optimize, stats

from experiments import (
    SIGMA,
    exact_grad_maxg_at_k,
    exact_maxg_at_k,
    gradient_estimates,
    gradient_variance,
    mc_maxg_at_k,
    optimal_theta,
    reward_cdf,
    train_schedules,
)

REPO = Path(__file__).resolve().parents[1]  # experiments/ is at the repository's top level, not in the wheel


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tensors here are small; on shared cores a second intra-op thread makes them ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _expected_reward_quad(theta: float, sigma: float = SIGMA) -> float:
    """E[g(x)] = int_0^1 x^2 N(x; theta, sigma^2) dx by scipy quad: an independent k = 1 reference."""
    value, _ = integrate.quad(lambda x: x * x * stats.norm.pdf(x, theta, sigma), 0.0, 1.0, epsabs=1e-13)
    return value


# --------------------------------------------------------------------------------------------------
# Exact objective (paper Figure 1).


@pytest.mark.parametrize("theta", [-0.1, 0.3, 0.86, 0.95, 1.1])
def test_exact_maxg_at_1_matches_scipy_quad(theta):
    assert float(exact_maxg_at_k(theta, 1)) == pytest.approx(_expected_reward_quad(theta), abs=1e-9)


def test_reward_cdf_matches_sampling():
    gen = torch.Generator().manual_seed(0)
    x = 0.8 + SIGMA * torch.randn(400_000, dtype=torch.float64, generator=gen)
    g = torch.where((x >= 0) & (x <= 1), x * x, torch.zeros_like(x))
    for t in (0.0, 0.3, 0.6, 0.9, 0.999):
        assert float((g <= t).double().mean()) == pytest.approx(float(reward_cdf(t, 0.8)), abs=3e-3)
    assert float(reward_cdf(1.0, 0.8)) == 1.0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_exact_maxg_matches_package_estimator_by_monte_carlo(k):
    """The closed form against the mean of pkpo_trl.estimators.maxg_at_k over sampled groups."""
    gen = torch.Generator().manual_seed(k)
    thetas = torch.tensor([0.2, 0.7, 0.95, 1.05], dtype=torch.float64)
    mean, se = mc_maxg_at_k(thetas, k, n=12, num_groups=20_000, generator=gen)
    exact = exact_maxg_at_k(thetas, k)
    assert torch.all((mean - exact).abs() < 4.5 * se + 1e-12), (mean, exact, se)


@pytest.mark.parametrize("k", [1, 2, 8])
def test_exact_gradient_matches_finite_difference(k):
    thetas = torch.tensor([0.0, 0.5, 0.9, 0.97, 1.1], dtype=torch.float64)
    h = 1e-5
    fd = (exact_maxg_at_k(thetas + h, k) - exact_maxg_at_k(thetas - h, k)) / (2 * h)
    torch.testing.assert_close(exact_grad_maxg_at_k(thetas, k), fd, atol=1e-6, rtol=1e-6)


def test_optimal_theta_rises_with_k_within_unit_interval():
    ks = [1, 2, 4, 8, 16, 32]
    optima = [optimal_theta(k) for k in ks]
    thetas = [t for t, _ in optima]
    assert all(0.0 <= t <= 1.0 for t in thetas), thetas
    assert all(a < b for a, b in zip(thetas, thetas[1:])), thetas
    values = [v for _, v in optima]
    assert all(a < b for a, b in zip(values, values[1:])), values  # max of more samples is larger
    # The optimum really is a maximum of the exact objective.
    for k, (t, v) in zip(ks, optima):
        assert v >= float(exact_maxg_at_k(torch.tensor([t - 1e-3, t + 1e-3]), k).max())


def test_optimal_theta_at_k1_matches_scipy_minimize_scalar():
    ref = optimize.minimize_scalar(
        lambda th: -_expected_reward_quad(th), bounds=(0.5, 1.0), method="bounded", options={"xatol": 1e-10}
    )
    theta_star, value = optimal_theta(1)
    assert theta_star == pytest.approx(ref.x, abs=1e-5)
    assert value == pytest.approx(-ref.fun, abs=1e-9)


# --------------------------------------------------------------------------------------------------
# Gradient estimates and their variance (paper Figure 4).


@pytest.mark.parametrize("estimator", ["s", "sloo", "sloo_minus_one", "l2o"])
def test_gradient_estimates_are_unbiased(estimator):
    gen = torch.Generator().manual_seed(1)
    est = gradient_estimates(0.9, k=4, n=8, num_groups=40_000, estimator=estimator, generator=gen)
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - float(exact_grad_maxg_at_k(0.9, 4))) < 4.5 * se


@pytest.mark.parametrize("theta", [0.3, 0.5, 1.0])
def test_baselines_cut_the_variance_of_s_at_least_in_half(theta):
    """Both leave-one-out baselines at least halve the gradient variance of the plain s estimator, for k in
    2, 4, 8, 15 (n = 16)."""
    res = gradient_variance(theta=theta, n=16, ks=[2, 4, 8, 15], num_groups=10_000, seed=18)
    v = res.variance
    for j, k in enumerate(res.ks):
        assert max(v["sloo"][j], v["sloo_minus_one"][j]) < 0.5 * v["s"][j], (k, {e: v[e][j] for e in v})


def test_variance_ordering_at_the_edge_has_a_wide_margin():
    """At theta = 1 (mass on both sides of the reward's cliff at x = 1) sloo_minus_one < sloo < s holds with a
    wide margin for k in 2, 4, 8, 15."""
    res = gradient_variance(theta=1.0, n=16, ks=[2, 4, 8, 15], num_groups=10_000, seed=18)
    v = res.variance
    for j, k in enumerate(res.ks):
        assert v["sloo_minus_one"][j] < 0.8 * v["sloo"][j] < 0.8 * 0.5 * v["s"][j], (k, {e: v[e][j] for e in v})


def test_variance_ordering_near_the_optima():
    """sloo_minus_one < sloo < s at every k >= 2 for theta = 0.9 (between the k = 1 and k = 2 optima), n = 16;
    the zero-sum l2o (coefficient k/n) lies between sloo_minus_one and the paper's sloo (k/(n-1)) there."""
    res = gradient_variance(theta=0.9, n=16, ks=range(2, 16), num_groups=8_000, seed=0)
    v = res.variance
    for j, k in enumerate(res.ks):
        assert v["sloo_minus_one"][j] < v["sloo"][j] < v["s"][j], (k, {e: v[e][j] for e in v})
        assert v["sloo_minus_one"][j] < v["l2o"][j] < v["sloo"][j], (k, {e: v[e][j] for e in v})


def test_variance_ordering_far_from_the_optima_is_not_uniform():
    """What the toy shows at theta = 0.5 (recorded, not the paper's claim): sloo beats sloo_minus_one for
    small k (k = 2, 3) and loses for large k; s is always the worst, by a factor > 5."""
    res = gradient_variance(theta=0.5, n=16, ks=[2, 3, 12, 15], num_groups=20_000, seed=0)
    v = {e: dict(zip(res.ks, xs)) for e, xs in res.variance.items()}
    assert v["sloo"][2] < v["sloo_minus_one"][2]
    assert v["sloo"][3] < v["sloo_minus_one"][3]
    assert v["sloo_minus_one"][12] < v["sloo"][12]
    assert v["sloo_minus_one"][15] < v["sloo"][15]
    for k in res.ks:
        assert 5 * max(v["sloo"][k], v["sloo_minus_one"][k]) < v["s"][k]


def test_successors_in_the_variance_experiment():
    """grpo_passk appears only at k = n, with sloo_minus_one's variance; pass_at_k_training only on the binary
    variant, and its mean is not the exact pass@k gradient (ratio far from 1 at k = 2)."""
    res = gradient_variance(theta=0.9, n=8, num_groups=4_000, seed=0)
    assert all(math.isnan(x) for x in res.variance["grpo_passk"][:-1])
    assert res.variance["grpo_passk"][-1] == pytest.approx(res.variance["sloo_minus_one"][-1], rel=1e-12)
    assert all(math.isnan(x) for x in res.variance["pass_at_k_training"])
    binary = gradient_variance(theta=0.9, n=8, num_groups=4_000, seed=0, binary=True)
    assert math.isfinite(binary.variance["pass_at_k_training"][1])
    assert binary.mean["pass_at_k_training"][1] / binary.exact_gradient[1] > 3
    se = binary.standard_error("sloo_minus_one")[1]
    assert abs(binary.mean["sloo_minus_one"][1] - binary.exact_gradient[1]) < 4.5 * se


# --------------------------------------------------------------------------------------------------
# Training with fixed k and with k annealing.


def test_training_follows_its_k_schedule():
    """The toy's k per step comes from the trainer's k spec, pkpo_trl.k.KSpec (a spec string or an int)."""
    r = train_schedules({"anneal": "steps:0=8,3=1"}, steps=5, num_runs=1)
    assert r["anneal"].ks == [8, 8, 8, 1, 1]
    assert train_schedules({"k=4": 4}, steps=124, num_runs=1)["k=4"].ks[123] == 4


def _train(theta0: float):
    steps = 300
    schedules = {"k=1": 1, "k=8": 8, "anneal": f"steps:0=8,{steps // 2}=1"}
    return train_schedules(schedules, steps=steps, theta0=theta0, num_runs=8, seed=0)


def test_annealing_from_standard_start():
    """From theta0 = 0 every schedule converges. Annealing 8 -> 1 ends where k = 1 alone ends (the k = 1 phase
    re-converges within a few dozen steps): maxg@1 as good as k = 1 and better than k = 8 alone, but maxg@8
    only equal to k = 1 alone (within noise), not better. This is what the 1D toy shows; see README."""
    r = _train(0.0)
    opt1 = optimal_theta(1)[1]
    assert r["anneal"].final(1) > r["k=8"].final(1) + 0.1
    assert r["anneal"].final(1) > 0.97 * opt1
    assert abs(r["anneal"].final(8) - r["k=1"].final(8)) < 0.02
    assert r["anneal"].final(8) < r["k=8"].final(8)
    assert r["k=8"].final(8) > r["k=1"].final(8)


def test_annealing_from_sparse_reward_start():
    """From theta0 = -0.2 (reward nonzero for ~2% of samples) k = 1 stalls, k = 8 escapes, and annealing
    8 -> 1 ends with the best maxg@1 and a far better maxg@8 than k = 1 alone (the paper's 'unblocking')."""
    r = _train(-0.2)
    assert r["k=1"].final(1) < 0.01
    assert r["anneal"].final(1) > r["k=8"].final(1)
    assert r["anneal"].final(1) > 0.97 * optimal_theta(1)[1]
    assert r["anneal"].final(8) > r["k=1"].final(8) + 0.5


# --------------------------------------------------------------------------------------------------
# The command line.


def test_cli_all_quick_writes_expected_files(tmp_path):
    out = tmp_path / "tmp"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", "all", "--quick", "--out", str(out), "--seed", "1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = [
        "fig1_maxg_vs_theta.png",
        "fig4_variance_vs_k.png",
        "training_curves.png",
        "results.md",
        "results.json",
        "toy.json",
        "variance.json",
        "training.json",
    ]
    for name in expected:
        assert (out / name).stat().st_size > 0, name
    for name in expected[:3]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["quick"] is True and results["meta"]["seed"] == 1
    thetas = [row["theta_star"] for row in results["toy"]["optima"]]
    assert thetas == sorted(thetas)
    assert {"toy", "variance", "training"} <= set(results)
    md = (out / "results.md").read_text()
    assert "| k | theta* |" in md and "anneal 8->1" in md
