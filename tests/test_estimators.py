"""Tests of :mod:`pkpo_trl.estimators` against their definitions by enumeration over subsets (tests/oracle.py):
the values of the four max@k estimators and of maxg_at_k and pass_at_k.

Every expected value in this file comes from an *independent oracle* (tests/oracle.py) written straight from the
spec's definitions by enumeration over k-subsets (``itertools.combinations``, ``math.comb``, python
floats summed with ``math.fsum``), from exact integer binomials or from the spec's closed forms. No expectation is
built by calling the code under test, except where a test states an *internal consistency* property (binary path
== sorted path, pass_at_k == maxg_at_k on 0/1 groups).

The other estimator tests, with the helpers they share in tests/estimator_helpers.py: test_estimators_inputs.py
(shapes, dtypes, errors, NaN and None rewards), test_estimators_monte_carlo.py (unbiasedness),
test_estimators_stability.py (n = 4096), test_estimator_successors.py (grpo_passk, pass_at_k_training) and
test_per_group_k.py (a k per group, mixtures of k, adaptive k).

Notation: ``n`` rewards per group, ``k`` attempts, ``rho(g, k)`` the unbiased max@k estimate of the
spec, ``s_i`` the no-baseline PKPO weight, ``A_i`` the transformed reward ("advantage").
"""

from __future__ import annotations

import math

import pytest
import torch
from estimator_helpers import (
    ALL_ESTIMATORS,
    BASELINED,
    HYP,
    HYP_FEW,
    MAX_N,
    SHIFT_INVARIANT,
    _one_torch_thread,  # noqa: F401 (an autouse fixture: importing it applies it here)
    _scale,
    assert_close,
    oracle_transform_with_nans,
    reward_groups,
    sweep_rows,
    t64,
    valid_ks,
)
from hypothesis import given
from hypothesis import strategies as st
from oracle import ORACLES, _mean, _others, comb, oracle_rho, oracle_s, oracle_sloo, oracle_zero_sum_loo

import pkpo_trl.estimators.inputs as estimators_inputs
from pkpo_trl.estimators import ESTIMATORS, maxg_at_k, pass_at_k, transform_rewards

SUCCESSORS = ("grpo_passk", "pass_at_k_training", "maxrl")  # k = n / 0-1: test_estimator_successors.py, test_maxrl.py


# ==================================================================================================
# 1. Equality with the enumeration oracle, float64, tol 1e-9.


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_transform_matches_enumeration_exhaustive(estimator: str) -> None:
    """For every n <= 10 and every valid k, transform_rewards equals the enumeration definition on
    binary, continuous, tied, negative and all-equal groups (binary and sorted paths both exercised)."""
    for n in range(1, MAX_N + 1):
        binary, other = sweep_rows(n, seed=n)
        for k in valid_ks(n, estimator):
            for rows in (binary, other):
                got = transform_rewards(t64(rows), k, estimator)
                expected = [ORACLES[estimator](row, k) for row in rows]
                assert_close(got, expected, _scale(rows))


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_torch_sort_path_matches_enumeration(estimator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU the sort goes through numpy's argsort; the torch.sort path (what CUDA uses) must give the same
    numbers: the exhaustive sweep again, with numpy sorting switched off, including NaN groups."""
    monkeypatch.setattr(estimators_inputs, "_NUMPY_SORT_ON_CPU", False)
    for n in range(1, MAX_N + 1):
        _, other = sweep_rows(n, seed=200 + n)
        with_nan = [row[:-1] + [math.nan] for row in other]
        for k in valid_ks(n, estimator):
            got = transform_rewards(t64(other), k, estimator)
            assert_close(got, [ORACLES[estimator](row, k) for row in other], _scale(other))
            got = transform_rewards(t64(with_nan), k, estimator)
            assert_close(got, [oracle_transform_with_nans(row, k, estimator) for row in with_nan], _scale(other))
        for k in valid_ks(n, None):
            assert_close(maxg_at_k(t64(other), k), [oracle_rho(row, k) for row in other], _scale(other))


def test_maxg_matches_enumeration_exhaustive() -> None:
    """maxg_at_k equals 1/C(n,k) * sum_S max S for every n <= 10, every k, on every kind of group."""
    for n in range(1, MAX_N + 1):
        binary, other = sweep_rows(n, seed=100 + n)
        for k in valid_ks(n, None):
            for rows in (binary, other):
                got = maxg_at_k(t64(rows), k)
                assert_close(got, [oracle_rho(row, k) for row in rows], _scale(rows))


@HYP
@given(g=reward_groups(), data=st.data())
def test_transform_matches_enumeration_property(g: list[float], data: st.DataObject) -> None:
    """Random groups (hypothesis): every estimator at a random valid k equals the enumeration oracle."""
    estimator = data.draw(st.sampled_from(ALL_ESTIMATORS))
    ks = valid_ks(len(g), estimator)
    if len(ks) == 0:
        return
    k = data.draw(st.sampled_from(ks))
    assert_close(transform_rewards(t64(g), k, estimator), ORACLES[estimator](g, k), _scale([g]))


@HYP
@given(g=reward_groups(), data=st.data())
def test_maxg_matches_enumeration_property(g: list[float], data: st.DataObject) -> None:
    """Random groups (hypothesis): maxg_at_k equals the enumeration oracle."""
    k = data.draw(st.integers(1, len(g)))
    assert_close(maxg_at_k(t64(g), k), oracle_rho(g, k), _scale([g]))


# ==================================================================================================
# 2. sloo (paper Eq. 29) vs l2o (zero-sum k/n): the paper's fixture, both enumeration forms of l2o,
#    zero-sum groups and RLOO at k = 1 (enumeration equality with ORACLES is part of section 1).


def test_sloo_reproduces_the_paper_fixture() -> None:
    """Paper fixture: g = [0.1, 0.7, 0.3, 0.9, 0.5], k = 2 gives sloo = [-0.14333, -0.03333, -0.14333,
    0.07667, -0.10667] (5 decimals); the zero-sum k/n variant (l2o) gives [-0.06667, 0.03333, -0.06667,
    0.13333, -0.03333]; the brute-force oracle agrees with both."""
    g = [0.1, 0.7, 0.3, 0.9, 0.5]
    paper = [-0.14333, -0.03333, -0.14333, 0.07667, -0.10667]
    assert_close(transform_rewards(t64(g), 2, "sloo"), paper, 1.0, tol=5e-6)
    assert_close(t64(oracle_sloo(g, 2)), paper, 1.0, tol=5e-6)
    assert_close(transform_rewards(t64(g), 2, "l2o"), [-0.06667, 0.03333, -0.06667, 0.13333, -0.03333], 1.0, 5e-6)


def test_l2o_is_the_zero_sum_k_over_n_estimator_exhaustive() -> None:
    """l2o equals s_i - k/n * rho(others, k) (enumeration) as well as MaxPO's pairwise L2O definition
    (ORACLES, section 1), for every n <= 10 and k <= n-1; sloo differs from it whenever k*rho(others) does
    not vanish (coefficient k/(n-1) vs k/n)."""
    for n in range(2, MAX_N + 1):
        binary, other = sweep_rows(n, seed=300 + n)
        for k in valid_ks(n, "l2o"):
            for rows in (binary, other):
                got = transform_rewards(t64(rows), k, "l2o")
                assert_close(got, [oracle_zero_sum_loo(row, k) for row in rows], _scale(rows))
    g = t64([0.1, 0.7, 0.3, 0.9, 0.5])
    assert (transform_rewards(g, 2, "sloo") - transform_rewards(g, 2, "l2o")).abs().min() > 0.05


@HYP
@given(g=reward_groups(min_n=2))
def test_sloo_on_others_sum_identity(g: list[float]) -> None:
    """Eq. 29's two forms agree: s_i - 1/(n-1) * sum_j s_j(others of i) == s_i - k/(n-1) * rho(others of i, k),
    and the transform matches them; sloo is not zero-sum in general."""
    n = len(g)
    for k in valid_ks(n, "sloo"):
        s = oracle_s(g, k)
        rho_form = [s[i] - k / (n - 1) * oracle_rho(_others(g, i), k) for i in range(n)]
        assert_close(t64(oracle_sloo(g, k)), rho_form, _scale([g]))
        assert_close(transform_rewards(t64(g), k, "sloo"), rho_form, _scale([g]))


@HYP
@given(g=reward_groups(min_n=2))
def test_l2o_advantages_sum_to_zero(g: list[float]) -> None:
    """Every l2o group sums to zero (|sum| <= 1e-12 * scale) at every valid k."""
    for k in valid_ks(len(g), "l2o"):
        total = transform_rewards(t64(g), k, "l2o").sum().item()
        assert abs(total) <= 1e-12 * max(1.0, _scale([g]))


def test_l2o_sums_to_zero_in_every_row_of_a_batch() -> None:
    """Zero sum holds per group in a [G, n] batch, continuous and binary."""
    gen = torch.Generator().manual_seed(0)
    for g in (torch.randn(64, 12, generator=gen, dtype=torch.float64), (torch.rand(64, 12, generator=gen) < 0.3)):
        for k in (1, 2, 5, 11):
            sums = transform_rewards(g.to(torch.float64), k, "l2o").sum(-1)
            assert sums.abs().max().item() <= 1e-12


@HYP
@given(g=reward_groups(min_n=2))
def test_l2o_at_k1_is_rloo(g: list[float]) -> None:
    """l2o at k = 1 is RLOO scaled by 1/n: A_i = (g_i - mean_{j != i} g_j) / n."""
    n = len(g)
    expected = [(g[i] - _mean(_others(g, i))) / n for i in range(n)]
    assert_close(transform_rewards(t64(g), 1, "l2o"), expected, _scale([g]))


# ==================================================================================================
# 3. Binary groups: the same numbers alone and in a batch with non-binary groups; the spec's closed forms.


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_binary_path_equals_sorted_path(estimator: str) -> None:
    """Whether a batch is binary changes nothing: the same 0/1 groups computed alone and next to a dummy 0.5
    group give the same numbers, for every n <= 12 and valid k."""
    gen = torch.Generator().manual_seed(3)
    for n in range(1, 13):
        g = (torch.rand(16, n, generator=gen) < 0.5).to(torch.float64)
        g[0], g[1] = 0.0, 1.0  # all-incorrect and all-correct groups
        with_dummy = torch.cat([g, torch.full((1, n), 0.5, dtype=torch.float64)])
        for k in valid_ks(n, estimator):
            closed = transform_rewards(g, k, estimator)
            sorted_path = transform_rewards(with_dummy, k, estimator)[:-1]
            torch.testing.assert_close(closed, sorted_path, rtol=0, atol=1e-12)
        for k in valid_ks(n, None):
            torch.testing.assert_close(maxg_at_k(g, k), maxg_at_k(with_dummy, k)[:-1], rtol=0, atol=1e-12)


def test_binary_closed_forms_from_spec() -> None:
    """Spec's binary forms: s gives k/n to correct and k/n*rho(n-1,c,k-1) to incorrect samples;
    sloo_minus_one gives 0 to incorrect and k/n*C(n-c,k-1)/C(n-1,k-1) to correct (k >= 2)."""
    for n in range(2, 11):
        for c in range(n + 1):
            g = [1.0] * c + [0.0] * (n - c)
            for k in range(2, n + 1):
                s = transform_rewards(t64(g), k, "s")
                rho_inc = 1 - comb(n - 1 - c, k - 1) / comb(n - 1, k - 1)
                assert_close(s, [k / n] * c + [k / n * rho_inc] * (n - c), 1.0)
                lmo = transform_rewards(t64(g), k, "sloo_minus_one")
                assert_close(lmo, [k / n * comb(n - c, k - 1) / comb(n - 1, k - 1)] * c + [0.0] * (n - c), 1)


# ==================================================================================================
# 4. Ties and the baseline's independence from the sample's own reward.


@HYP
@given(
    g=st.lists(st.sampled_from([-1.5, 0.0, 0.25, 1.0, 4.0]), min_size=2, max_size=16),
    data=st.data(),
)
def test_tied_rewards_get_equal_transformed_rewards(g: list[float], data: st.DataObject) -> None:
    """Samples with equal rewards get equal A_i under every estimator and k (Pascal's rule in the sort)."""
    estimator = data.draw(st.sampled_from(ALL_ESTIMATORS))
    ks = valid_ks(len(g), estimator)
    k = data.draw(st.sampled_from(ks))
    out = transform_rewards(t64(g), k, estimator).tolist()
    for value in set(g):
        tied = [out[i] for i, v in enumerate(g) if v == value]
        assert max(tied) - min(tied) <= 1e-12


def _baselines(g: torch.Tensor, k: int, estimator: str) -> list[torch.Tensor]:
    """The baselines of the estimator: s_i - A_i, and for l2o also MaxPO's split k/n*EI_i - A_i
    (k/n*EI_i is the sloo_minus_one weight)."""
    out = [transform_rewards(g, k, "s") - transform_rewards(g, k, estimator)]
    if estimator == "l2o":
        out.append(transform_rewards(g, k, "sloo_minus_one") - transform_rewards(g, k, estimator))
    return out


@HYP_FEW
@given(g=reward_groups(min_n=2, max_n=12), data=st.data())
def test_baseline_does_not_depend_on_own_reward(g: list[float], data: st.DataObject) -> None:
    """Perturbing g_i (to a tie, across other samples, to/from 0/1) leaves sample i's baseline unchanged,
    for every baselined estimator and valid k: the gradient estimate stays unbiased."""
    n = len(g)
    i = data.draw(st.integers(0, n - 1))
    new = data.draw(st.one_of(st.sampled_from(g + [0.0, 1.0]), st.floats(-100, 100, allow_nan=False)))
    h = list(g)
    h[i] = new
    scale = max(1.0, _scale([g, h]))
    for estimator in BASELINED:
        for k in valid_ks(n, estimator):
            for before, after in zip(_baselines(t64(g), k, estimator), _baselines(t64(h), k, estimator)):
                assert abs(before[i].item() - after[i].item()) <= 1e-11 * scale, (estimator, k)


# ==================================================================================================
# 5. k = 1 is the ordinary objective.


@HYP
@given(g=reward_groups())
def test_k1_is_the_ordinary_objective(g: list[float]) -> None:
    """k = 1 conventions. maxg_at_k(g, 1) is the mean; s at k=1 is g_i/n; sloo_minus_one and l2o at k=1 are
    RLOO/n: A_i = g_i/n - mean_{j!=i} g_j / n = (g_i - mean(g)) / (n-1), since g_i - mean_others =
    n/(n-1)(g_i - mean); sloo at k=1 is Eq. 29 as written: g_i/n - mean_{j!=i} g_j / (n-1)."""
    n = len(g)
    scale = _scale([g])
    assert_close(maxg_at_k(t64(g), 1), _mean(g), scale)
    assert_close(transform_rewards(t64(g), 1, "s"), [v / n for v in g], scale)
    if n < 2:
        assert_close(transform_rewards(t64(g), 1, "sloo_minus_one"), [0.0], scale)  # no others: no signal
        return
    mean = _mean(g)
    for estimator in ("sloo_minus_one", "l2o"):
        a = transform_rewards(t64(g), 1, estimator)
        assert_close(a, [g[i] / n - _mean(_others(g, i)) / n for i in range(n)], scale)
        assert_close(a, [(v - mean) / (n - 1) for v in g], scale)
    a = transform_rewards(t64(g), 1, "sloo")
    assert_close(a, [g[i] / n - _mean(_others(g, i)) / (n - 1) for i in range(n)], scale)


# ==================================================================================================
# 6. pass_at_k closed form.


def test_pass_at_k_matches_math_comb_formula() -> None:
    """pass_at_k(n, c, k) = 1 - C(n-c,k)/C(n,k) (exact integers) for every n <= 30, c, k."""
    for n in range(1, 31):
        cs = torch.arange(n + 1)
        for k in range(1, n + 1):
            got = pass_at_k(n, cs, k)
            assert got.dtype == torch.float64
            expected = [1 - math.comb(n - c, k) / math.comb(n, k) for c in range(n + 1)]
            assert_close(got, expected, 1.0, tol=1e-13)


def test_pass_at_k_large_and_broadcast() -> None:
    """Large n stays accurate (n = 5000 vs exact big integers, 1e-10: log-space binomials lose ~1e-12);
    tensor n and c broadcast elementwise."""
    for n, c, k in ((5000, 17, 300), (5000, 4000, 2500), (4096, 1, 4096), (4096, 0, 100)):
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert abs(pass_at_k(n, c, k).item() - exact) <= 1e-10
    got = pass_at_k(torch.tensor([[10], [20]]), torch.tensor([0, 3, 10]), 4)
    assert got.shape == (2, 3)
    expected = [[1 - math.comb(n - c, 4) / math.comb(n, 4) for c in (0, 3, 10)] for n in (10, 20)]
    assert_close(got, expected, 1.0, tol=1e-13)


@HYP
@given(bits=st.lists(st.booleans(), min_size=1, max_size=14), data=st.data())
def test_pass_at_k_agrees_with_maxg_on_binary_groups(bits: list[bool], data: st.DataObject) -> None:
    """On a 0/1 group, pass_at_k(n, #correct, k) equals maxg_at_k and the enumeration oracle."""
    n, c = len(bits), sum(bits)
    k = data.draw(st.integers(1, n))
    g = [float(b) for b in bits]
    value = pass_at_k(n, c, k).item()
    assert abs(value - maxg_at_k(t64(g), k).item()) <= 1e-12
    assert abs(value - oracle_rho(g, k)) <= 1e-12


# ==================================================================================================
# 7. Registry (the paper's variance ordering: tests/test_experiments.py, on the toy of experiments/).


def test_registry_lists_the_estimators() -> None:
    """ESTIMATORS holds exactly the documented estimators (PKPO's four and the two successors'), each a
    function with a docstring; the default is sloo_minus_one."""
    assert set(ESTIMATORS) == set(ALL_ESTIMATORS + SUCCESSORS)
    for name, spec in ESTIMATORS.items():
        assert spec.name == name and callable(spec.fn) and spec.fn.__doc__
    g = torch.tensor([0.2, 0.9, 0.4], dtype=torch.float64)
    torch.testing.assert_close(transform_rewards(g, 2), transform_rewards(g, 2, "sloo_minus_one"))


def test_the_public_face_is_the_package_and_the_top_level_math_is_the_same() -> None:
    """pkpo_trl.estimators is the one import path of the math: every name of its __all__ resolves there, and the
    math names of pkpo_trl.__all__ are the same objects; the grpo_passk entry is sloo_minus_one's function."""
    import pkpo_trl
    import pkpo_trl.estimators as estimators

    assert set(estimators.__all__) == {
        "ESTIMATORS", "Estimator", "is_binary", "k_from_success_rate", "maxg_at_k", "pass_at_k",
        "register_estimator", "transform_rewards", "transform_rewards_mixture",
    }  # fmt: skip
    for name in set(pkpo_trl.__all__) & set(estimators.__all__):
        assert getattr(pkpo_trl, name) is getattr(estimators, name)
    assert ESTIMATORS["grpo_passk"].fn is ESTIMATORS["sloo_minus_one"].fn


def test_the_math_imports_neither_trl_nor_transformers() -> None:
    """The estimators are pure torch: a TRL upgrade cannot change them (checked in a fresh interpreter, since
    this one has TRL loaded already). pkpo_trl/__init__ loads the trainer lazily, so only the math is imported."""
    import subprocess
    import sys

    code = (
        "import sys, pkpo_trl.estimators; "
        "print(sorted(m for m in ('trl', 'transformers', 'accelerate', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ==================================================================================================
# 8. Exact zeros for constant groups.


@HYP
@given(
    value=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    n=st.integers(1, 12),
    data=st.data(),
)
def test_constant_groups_give_exact_zeros(value: float, n: int, data: st.DataObject) -> None:
    """A group of equal rewards, any value (0.7, -3e5, ...), gives advantages == 0.0 exactly under every
    estimator whose definition is zero there (sloo_minus_one, l2o, grpo_passk; pass_at_k_training on 0/1
    groups), at every valid k, also with NaN slots mixed in."""
    row = [value] * n
    mask = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    with_nan = [math.nan if m else v for v, m in zip(row, mask)]
    for g in (t64(row), t64(with_nan), t64([row, with_nan])):
        for estimator in SHIFT_INVARIANT:
            for k in valid_ks(n, estimator):
                assert (transform_rewards(g, k, estimator) == 0).all(), (estimator, k)
        assert (transform_rewards(g, n, "grpo_passk") == 0).all()
    for bit in (0.0, 1.0):
        for k in range(1, n + 1):
            assert (transform_rewards(t64([bit] * n), k, "pass_at_k_training") == 0).all()


@HYP
@given(value=st.floats(-1e3, 1e3, allow_nan=False), n=st.integers(2, 12), data=st.data())
def test_sloo_on_constant_groups_is_documented_nonzero(value: float, n: int, data: st.DataObject) -> None:
    """sloo (Eq. 29) on a constant group c is k*c*(1/n - 1/(n-1)) for every sample, not 0."""
    k = data.draw(st.integers(1, n - 1))
    expected = k * value * (1 / n - 1 / (n - 1))
    assert_close(transform_rewards(t64([value] * n), k, "sloo"), [expected] * n, abs(value))


def test_binary_incorrect_samples_get_exact_zero_under_sloo_minus_one() -> None:
    """sloo_minus_one's binary form gives incorrect samples 0: exactly 0.0, so frac_zero_advantage counts them."""
    gen = torch.Generator().manual_seed(5)
    g = (torch.rand(64, 16, generator=gen) < 0.3).to(torch.float32)
    for k in (2, 4, 16):
        out = transform_rewards(g, k, "sloo_minus_one")
        assert (out[g == 0] == 0).all()
