"""Tests of :mod:`pkpo_trl.estimators` against their definitions by enumeration over subsets (tests/oracle.py).

Every expected value in this file comes from an *independent oracle* (tests/oracle.py) written straight from the
spec's definitions by enumeration over k-subsets (``itertools.combinations``, ``math.comb``, python
floats summed with ``math.fsum``), from exact integer binomials, or from closed-form population
quantities (Monte Carlo tests). No expectation is built by calling the code under test, except where a
test states an *internal consistency* property (batched == per row, binary path == sorted path,
NaN-dropped group == the group without the NaNs).

Notation: ``n`` rewards per group, ``k`` attempts, ``rho(g, k)`` the unbiased max@k estimate of the
spec, ``s_i`` the no-baseline PKPO weight, ``A_i`` the transformed reward ("advantage").
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import (
    ORACLES,
    _mean,
    _others,
    comb,
    oracle_rho,
    oracle_s,
    oracle_sloo,
    oracle_sloo_minus_one,
    oracle_zero_sum_loo,
)

import pkpo_trl.estimators as estimators_module
from pkpo_trl.estimators import ESTIMATORS, maxg_at_k, pass_at_k, transform_rewards

ALL_ESTIMATORS = ("s", "sloo", "sloo_minus_one", "l2o")  # PKPO's max@k estimators: any rewards, any valid k
SUCCESSORS = ("grpo_passk", "pass_at_k_training", "maxrl")  # k = n / 0-1 only: section 13; maxrl: test_maxrl.py
BASELINED = ("sloo", "sloo_minus_one", "l2o")
SHIFT_INVARIANT = ("sloo_minus_one", "l2o")  # zero on constant groups by definition
MIN_OTHERS = {"s": 0, "sloo": 1, "sloo_minus_one": 0, "l2o": 1}  # largest valid k is n - MIN_OTHERS
MAX_N = 10  # the enumeration oracle is exact for every n <= MAX_N

HYP = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HYP_FEW = settings(HYP, max_examples=50)  # for properties that loop over every estimator and k per example


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Run this module on one intra-op thread: the tensors here are small, and on a shared 2-core CI box
    (pytest -n 2) torch's thread pool oversubscribes and spin-waits, making the MC tests 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def oracle_transform_with_nans(g: Sequence[float], k: int, estimator: str) -> list[float]:
    """The documented NaN rule: drop NaNs, use k' = min(k, n' - min_others), zeros where unusable."""
    kept = [i for i, v in enumerate(g) if not math.isnan(v)]
    sub = [g[i] for i in kept]
    k_eff = min(k, len(sub) - MIN_OTHERS[estimator])
    out = [0.0] * len(g)
    if k_eff < 1 or (estimator != "s" and len(sub) < 2):
        return out
    for i, v in zip(kept, ORACLES[estimator](sub, k_eff)):
        out[i] = v
    return out


def valid_ks(n: int, estimator: str | None) -> range:
    """k = 1..n for maxg / s / sloo_minus_one, 1..n-1 for sloo and l2o."""
    return range(1, n - (MIN_OTHERS[estimator] if estimator else 0) + 1)


def assert_close(actual: torch.Tensor, expected: Sequence[float] | np.ndarray, scale: float, tol: float = 1e-9):
    """|actual - expected| <= tol * max(1, scale) elementwise (scale = largest |reward|)."""
    a = actual.detach().to(torch.float64).numpy()
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape
    bound = tol * max(1.0, scale)
    err = np.abs(a - e)
    assert np.all(err <= bound), f"max error {err.max():.3e} > {bound:.1e}\nactual={a}\nexpected={e}"


def t64(x: Sequence[float] | Sequence[Sequence[float]]) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _scale(rows: Sequence[Sequence[float]]) -> float:
    return max((abs(v) for row in rows for v in row if not math.isnan(v)), default=1.0)


# ==================================================================================================
# Reward generators: continuous, binary, ties, negatives, all-equal.


def sweep_rows(n: int, seed: int) -> tuple[list[list[float]], list[list[float]]]:
    """Deterministic reward groups of size n: (binary rows, non-binary rows)."""
    rng = random.Random(seed)
    binary = [
        [float(rng.random() < 0.5) for _ in range(n)],
        [float(rng.random() < 0.2) for _ in range(n)],
        [0.0] * n,
        [1.0] * n,
    ]
    other = [
        [rng.uniform(-3.0, 3.0) for _ in range(n)],  # continuous, mixed signs
        [rng.choice([-1.0, 0.0, 0.5, 2.0]) for _ in range(n)],  # ties
        [rng.choice([0.0, 1.0, 0.25]) for _ in range(n)],  # almost binary
        [-rng.uniform(0.5, 9.0) for _ in range(n)],  # all negative
        [0.7] * n,  # all equal
        [rng.choice([-4.0, -4.0, 3.0]) for _ in range(n - 1)] + [-4.0],  # many ties at the bottom
    ]
    return binary, other


@st.composite
def reward_groups(draw: st.DrawFn, min_n: int = 1, max_n: int = MAX_N) -> list[float]:
    """One group of n rewards, from a mix of continuous, binary, tied, negative and all-equal laws."""
    n = draw(st.integers(min_n, max_n))
    kind = draw(st.sampled_from(["continuous", "binary", "ties", "negative", "equal"]))
    if kind == "equal":
        return [draw(st.floats(-50, 50, allow_nan=False))] * n
    elements = {
        "continuous": st.floats(-100, 100, allow_nan=False, allow_infinity=False),
        "binary": st.sampled_from([0.0, 1.0]),
        "ties": st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0]),
        "negative": st.floats(-100, -1e-3, allow_nan=False),
    }[kind]
    return draw(st.lists(elements, min_size=n, max_size=n))


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
    monkeypatch.setattr(estimators_module, "_NUMPY_SORT_ON_CPU", False)
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
# 3. Shapes and dtypes.


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
@pytest.mark.parametrize("binary", [False, True])
def test_batched_equals_per_group(estimator: str, binary: bool) -> None:
    """A [G, n] call and a [2, 3, n] call equal the per-group 1-D calls, row by row."""
    gen = torch.Generator().manual_seed(1)
    n = 7
    if binary:
        g = (torch.rand(6, n, generator=gen) < 0.4).to(torch.float64)
    else:
        g = torch.randint(-2, 3, (6, n), generator=gen).to(torch.float64) * 0.5 + 0.25
    for k in valid_ks(n, estimator):
        batched = transform_rewards(g, k, estimator)
        nested = transform_rewards(g.view(2, 3, n), k, estimator)
        assert batched.shape == g.shape and nested.shape == (2, 3, n)
        for row in range(6):
            single = transform_rewards(g[row], k, estimator)
            torch.testing.assert_close(batched[row], single, rtol=0, atol=1e-12)
            torch.testing.assert_close(nested.view(6, n)[row], single, rtol=0, atol=1e-12)
        values = maxg_at_k(g.view(2, 3, n), k)
        assert values.shape == (2, 3)
        torch.testing.assert_close(values.view(6), torch.stack([maxg_at_k(r, k) for r in g]), rtol=0, atol=1e-12)


def test_non_contiguous_and_list_inputs() -> None:
    """A transposed (non-contiguous) tensor and a python list give the same numbers as a contiguous tensor."""
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    gt = g.t().contiguous().t()  # same values, column-major storage
    assert not gt.is_contiguous()
    for estimator in ALL_ESTIMATORS:
        torch.testing.assert_close(transform_rewards(gt, 3, estimator), transform_rewards(g, 3, estimator))
        from_list = transform_rewards(g.tolist(), 3, estimator)
        torch.testing.assert_close(from_list, transform_rewards(g, 3, estimator).to(from_list.dtype))


def test_empty_batch_and_repeated_calls() -> None:
    """A batch of zero groups [0, n] gives [0, n] (and maxg [0]); calling again with other (n, k, estimator)
    combinations in between gives identical numbers (no state leaks between calls)."""
    for estimator in ALL_ESTIMATORS:
        assert transform_rewards(torch.zeros(0, 5), 2, estimator).shape == (0, 5)
        assert transform_rewards(torch.rand(0, 5), 2, estimator).shape == (0, 5)
    assert maxg_at_k(torch.zeros(0, 5), 2).shape == (0,)
    g = torch.tensor([[0.3, 1.2, -0.4, 0.3, 2.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    first = [transform_rewards(x, 3, e) for x in (g, b) for e in ALL_ESTIMATORS]
    for n, k in ((6, 2), (6, 5), (9, 3)):
        for e in ALL_ESTIMATORS:
            transform_rewards(torch.randn(2, n, dtype=torch.float64), k, e)
            transform_rewards((torch.rand(2, n) < 0.5).to(torch.float64), k, e)
    again = [transform_rewards(x, 3, e) for x in (g, b) for e in ALL_ESTIMATORS]
    for a, b_ in zip(first, again):
        torch.testing.assert_close(a, b_, rtol=0, atol=0)


def test_first_call_in_inference_mode_then_autograd() -> None:
    """A first call inside torch.inference_mode() (as in an eval loop) does not poison later calls: rewards
    that require grad still go through transform_rewards (continuous: and backward; binary outputs are
    piecewise constant, so they carry no graph)."""
    for rewards in (torch.tensor([0.1, 0.7, -0.2, 0.5, 0.9] * 7), torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0] * 7)):
        with torch.inference_mode():
            expected = transform_rewards(rewards, 5, "sloo")
        leaf = rewards.clone().requires_grad_(True)
        out = transform_rewards(leaf, 5, "sloo")
        torch.testing.assert_close(out.detach(), expected)
        if out.requires_grad:
            out.pow(2).sum().backward()
            assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert transform_rewards(torch.tensor([0.1, 0.7, -0.2, 0.5, 0.9] * 7, requires_grad=True), 5, "sloo").requires_grad


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float64, torch.float64),
        (torch.float32, torch.float32),
        (torch.float16, torch.float16),
        (torch.bfloat16, torch.bfloat16),
        (torch.int64, None),  # None: torch's default float dtype
        (torch.int32, None),
        (torch.bool, None),
    ],
)
def test_output_dtype_follows_input(dtype: torch.dtype, expected: torch.dtype | None) -> None:
    """Floating input keeps its dtype; integer/bool input gives the default float dtype; values agree
    with the float64 computation to the output dtype's precision."""
    g = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0]]).to(dtype)
    ref = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.float64)
    want = expected or torch.get_default_dtype()
    for estimator in ALL_ESTIMATORS:
        out = transform_rewards(g, 2, estimator)
        assert out.dtype == want
        torch.testing.assert_close(out.to(torch.float64), transform_rewards(ref, 2, estimator), rtol=1e-2, atol=1e-2)
    assert maxg_at_k(g, 2).dtype == want


def test_integer_input_follows_changed_default_dtype() -> None:
    """With torch.set_default_dtype(float64), integer rewards come back as float64."""
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert transform_rewards(torch.tensor([3, 1, 2]), 2).dtype == torch.float64
        assert maxg_at_k(torch.tensor([3, 1, 2]), 2).dtype == torch.float64
    finally:
        torch.set_default_dtype(old)


# ==================================================================================================
# 4. Binary groups: the same numbers alone and in a batch with non-binary groups; the spec's closed forms.


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
# 5. Ties and the baseline's independence from the sample's own reward.


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
# 6. Monte Carlo unbiasedness (seeded, 5 standard errors).

MC_GROUPS = 40_000
MC_N = 8


def assert_mc_mean(per_group: torch.Tensor, exact: float, sigmas: float = 5.0, resolution: float = 1e-12) -> None:
    """The mean of i.i.d. per-group values is within `sigmas` standard errors (+ `resolution`) of `exact`."""
    per_group = per_group.to(torch.float64)
    mean = per_group.mean().item()
    se = per_group.std().item() / math.sqrt(per_group.numel())
    assert abs(mean - exact) <= sigmas * se + resolution, f"mean {mean:.6f} vs exact {exact:.6f} (se {se:.2e})"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.85])
def test_mc_pass_at_k_value_unbiased_bernoulli(p: float) -> None:
    """Bernoulli(p) rewards: E[maxg_at_k] = 1 - (1-p)^k for every k <= n. (A rare outcome, e.g. a group of
    8 failures at p = 0.85, may never be drawn: the tolerance adds the resolution 1/G of a mean of G values
    in [0, 1].)"""
    gen = torch.Generator().manual_seed(10)
    x = (torch.rand(MC_GROUPS, MC_N, generator=gen) < p).to(torch.float64)
    for k in range(1, MC_N + 1):
        assert_mc_mean(maxg_at_k(x, k), 1 - (1 - p) ** k, resolution=1 / MC_GROUPS)


@pytest.mark.parametrize("p", [0.15, 0.6])
@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_gradient_unbiased_bernoulli(estimator: str, p: float) -> None:
    """Bernoulli(p): E[sum_i A_i * d/dp log p(x_i)] = d/dp (1-(1-p)^k) = k(1-p)^(k-1), every estimator."""
    gen = torch.Generator().manual_seed(11)
    x = (torch.rand(MC_GROUPS, MC_N, generator=gen) < p).to(torch.float64)
    score = x / p - (1 - x) / (1 - p)
    for k in (1, 2, 4, MC_N - 1, MC_N):
        if k in valid_ks(MC_N, estimator):
            a = transform_rewards(x, k, estimator)
            assert_mc_mean((a * score).sum(-1), k * (1 - p) ** (k - 1))


def _discrete_expected_max(values: Sequence[float], probs: Sequence[float], k: int) -> float:
    """E[max of k i.i.d. draws] = sum_v v * (F(v)^k - F(v-)^k), values ascending."""
    total, below = 0.0, 0.0
    for v, p in zip(values, probs):
        total += v * ((below + p) ** k - below**k)
        below += p
    return total


def _sample_discrete(values: Sequence[float], probs: Sequence[float], shape: tuple[int, ...], seed: int):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(torch.tensor(probs, dtype=torch.float64), math.prod(shape), True, generator=gen)
    return torch.tensor(values, dtype=torch.float64)[idx].view(shape), idx.view(shape)


@pytest.mark.parametrize(
    ("values", "probs"),
    [
        ([0.0, 1.0, 2.0, 3.0, 4.0], [0.2] * 5),  # uniform on {0, ..., 4}
        ([-2.0, -0.5, 0.0, 1.0, 3.0], [0.1, 0.3, 0.2, 0.25, 0.15]),
    ],
)
def test_mc_maxg_value_unbiased_discrete_law(values: list[float], probs: list[float]) -> None:
    """Discrete law (many ties, sorted path): E[maxg_at_k] = exact E[max of k] from the CDF."""
    x, _ = _sample_discrete(values, probs, (MC_GROUPS, MC_N), seed=12)
    for k in range(1, MC_N + 1):
        assert_mc_mean(maxg_at_k(x, k), _discrete_expected_max(values, probs, k))


def _normal_expected_max(k: int) -> float:
    """E[max of k N(0,1)] = int x * k phi(x) Phi(x)^(k-1) dx (trapezoid on [-12, 12], error << 1e-10)."""
    xs = np.linspace(-12.0, 12.0, 240_001)
    phi = np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(xs / math.sqrt(2)))
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 only has trapz
    return float(trapezoid(xs * k * phi * cdf ** (k - 1), xs))


def test_normal_expected_max_quadrature() -> None:
    """The quadrature reproduces the known E[max of 2] = 1/sqrt(pi) and E[max of 3] = 3/(2 sqrt(pi))."""
    assert abs(_normal_expected_max(2) - 1 / math.sqrt(math.pi)) < 1e-10
    assert abs(_normal_expected_max(3) - 1.5 / math.sqrt(math.pi)) < 1e-10


def test_mc_maxg_value_unbiased_normal() -> None:
    """N(0,1) rewards: E[maxg_at_k] = E[max of k], for k in 1, 2, 4, 8."""
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(MC_GROUPS, MC_N, generator=gen, dtype=torch.float64)
    for k in (1, 2, 4, MC_N):
        assert_mc_mean(maxg_at_k(x, k), _normal_expected_max(k))


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_gradient_unbiased_gaussian_shift(estimator: str) -> None:
    """x ~ N(theta, 1), g = x: E[max of k] = theta + const, so E[sum_i A_i (x_i - theta)] = 1 for every k
    (continuous rewards, sorted path)."""
    gen = torch.Generator().manual_seed(14)
    theta = 0.3
    x = theta + torch.randn(MC_GROUPS, MC_N, generator=gen, dtype=torch.float64)
    for k in (1, 2, 5, MC_N - 1, MC_N):
        if k in valid_ks(MC_N, estimator):
            assert_mc_mean((transform_rewards(x, k, estimator) * (x - theta)).sum(-1), 1.0)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_gradient_unbiased_categorical(estimator: str) -> None:
    """Softmax-categorical policy over tied reward levels: E[sum_i A_i * grad_theta log pi(x_i)] equals the
    exact gradient of E[max of k] (central differences of the CDF formula), every logit component."""
    values = [-1.0, 0.0, 0.5, 2.0]
    logits = np.array([0.3, 0.1, -0.2, -0.9])

    def expected_max(theta: np.ndarray, k: int) -> float:
        probs = np.exp(theta) / np.exp(theta).sum()
        return _discrete_expected_max(values, probs.tolist(), k)

    probs = np.exp(logits) / np.exp(logits).sum()
    x, idx = _sample_discrete(values, probs.tolist(), (MC_GROUPS, MC_N), seed=15)
    onehot = torch.nn.functional.one_hot(idx, len(values)).to(torch.float64)
    score = onehot - torch.tensor(probs)  # d/dtheta log softmax(theta)[x]
    for k in (1, 3, MC_N - 1):
        if k not in valid_ks(MC_N, estimator):
            continue
        a = transform_rewards(x, k, estimator)
        for comp in range(len(values)):
            e = np.zeros(len(values))
            e[comp] = 1e-5
            exact = (expected_max(logits + e, k) - expected_max(logits - e, k)) / 2e-5
            assert_mc_mean((a * score[..., comp]).sum(-1), exact)


# ==================================================================================================
# 7. k = 1 is the ordinary objective.


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
# 8. Stability at n = 4096 against exact integer binomial weights.

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
    above; at large n we also check l2o's zero sum)."""
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


# ==================================================================================================
# 9. Errors.

G4 = torch.tensor([[0.1, 0.5, 0.2, 0.9]], dtype=torch.float64)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: transform_rewards(G4, 0), r"k must be >= 1"),
        (lambda: transform_rewards(G4, -3), r"k must be >= 1"),
        (lambda: transform_rewards(G4, 5), r"k=5 is too large .* n=4"),
        (lambda: transform_rewards(G4, 5, "s"), r"k=5 is too large .* n=4"),
        (lambda: transform_rewards(G4, 4, "sloo"), r"k=4 is too large for estimator 'sloo' .*k <= n-1"),
        (lambda: transform_rewards(G4, 4, "l2o"), r"k=4 is too large for estimator 'l2o' .*k <= n-1"),
        (lambda: transform_rewards(G4, 2.5), r"k must be an integer"),
        (lambda: transform_rewards(G4, 2.0), r"k must be an integer"),
        (lambda: transform_rewards(G4, np.float64(2.0)), r"k must be an integer"),
        (lambda: transform_rewards(G4, torch.tensor(2.0)), r"k must be an integer"),
        (lambda: transform_rewards(G4, True), r"k must be an integer"),
        (lambda: transform_rewards(torch.empty(3, 0), 1), r"empty group"),
        (lambda: transform_rewards([], 1), r"empty group"),
        (lambda: transform_rewards(torch.tensor(1.0), 1), r"shape \[..., n\]"),
        (lambda: transform_rewards(torch.tensor([0.0, math.inf]), 1), r"inf"),
        (lambda: transform_rewards(torch.tensor([-math.inf, 0.0, math.nan]), 1), r"inf"),
        (lambda: transform_rewards(G4, 2, "grpo"), r"unknown estimator 'grpo'"),
        (lambda: maxg_at_k(G4, 0), r"k must be >= 1"),
        (lambda: maxg_at_k(G4, 5), r"k=5 > n=4"),
        (lambda: maxg_at_k(G4, 1.0), r"k must be an integer"),
        (lambda: maxg_at_k(torch.empty(0), 1), r"empty group"),
        (lambda: maxg_at_k(torch.tensor([math.inf, 1.0]), 1), r"inf"),
        (lambda: pass_at_k(10, 3, 0), r"k must be >= 1"),
        (lambda: pass_at_k(10, 3, 11), r"k=11 exceeds num_samples"),
        (lambda: pass_at_k(torch.tensor([10, 3]), torch.tensor([1, 1]), 4), r"exceeds num_samples=3"),
        (lambda: pass_at_k(10, 11, 2), r"num_correct must lie in \[0, num_samples\]"),
        (lambda: pass_at_k(10, -1, 2), r"num_correct must lie"),
        (lambda: pass_at_k(10.5, 3, 2), r"must be integers"),
        (lambda: pass_at_k(10, 2.5, 2), r"must be integers"),
        (lambda: pass_at_k(10, 3, 2.0), r"k must be an integer"),
    ],
)
def test_errors_name_the_problem(call: Callable[[], object], match: str) -> None:
    """Invalid k, group, rewards, estimator name or pass@k counts raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_like_k_types_accepted() -> None:
    """numpy and 0-d torch integers are valid k and give the same numbers as a python int."""
    ref = transform_rewards(G4, 2)
    for k in (np.int64(2), np.int32(2), torch.tensor(2)):
        torch.testing.assert_close(transform_rewards(G4, k), ref)
        torch.testing.assert_close(maxg_at_k(G4, k), maxg_at_k(G4, 2))


# ==================================================================================================
# 10. NaN rewards (unscorable completions).


@HYP
@given(g=reward_groups(), data=st.data())
def test_nan_rewards_are_dropped(g: list[float], data: st.DataObject) -> None:
    """NaN entries are left out: the result equals the enumeration oracle on the scored rewards with
    k' = min(k, n' - min_others) (zeros when unusable), NaN slots get 0, no NaN anywhere; it also equals
    the code's own transform of the group without them."""
    n = len(g)
    mask = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    h = [math.nan if m else v for v, m in zip(g, mask)]
    estimator = data.draw(st.sampled_from(ALL_ESTIMATORS))
    ks = valid_ks(n, estimator)
    if len(ks) == 0:
        return
    k = data.draw(st.sampled_from(ks))
    out = transform_rewards(t64(h), k, estimator)
    assert not torch.isnan(out).any()
    assert_close(out, oracle_transform_with_nans(h, k, estimator), _scale([g]))
    kept = [i for i, m in enumerate(mask) if not m]
    k_eff = min(k, len(kept) - MIN_OTHERS[estimator])
    if k_eff >= 1 and (estimator == "s" or len(kept) >= 2):
        alone = transform_rewards(t64([g[i] for i in kept]), k_eff, estimator)
        torch.testing.assert_close(out[kept], alone, rtol=0, atol=1e-12 * max(1.0, _scale([g])))
    value = maxg_at_k(t64(h), k).item()
    if kept:
        assert abs(value - oracle_rho([g[i] for i in kept], min(k, len(kept)))) <= 1e-9 * max(1.0, _scale([g]))
    else:
        assert math.isnan(value)  # documented: no scored completion, no estimate


def test_nan_in_batch_only_affects_its_group() -> None:
    """A NaN in one row changes only that row; an all-NaN row gives zeros (binary and continuous)."""
    for g in (t64([[0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]]), t64([[0.3, -1.0, 2.0, 0.3, 5.0]] * 2)):
        clean = {e: transform_rewards(g, 3, e) for e in ALL_ESTIMATORS}
        for row_nans in ([1], [0, 1, 2, 3, 4], [0, 2, 4]):
            h = g.clone()
            h[1, row_nans] = math.nan
            for estimator in ALL_ESTIMATORS:
                out = transform_rewards(h, 3, estimator)
                assert torch.isfinite(out).all()
                torch.testing.assert_close(out[0], clean[estimator][0], rtol=0, atol=1e-12)
                assert (out[1, row_nans] == 0).all()
                if len(row_nans) == 5:
                    assert (out[1] == 0).all()


def test_nan_fallback_fewer_scored_than_k() -> None:
    """Fewer than k scored samples: s and sloo_minus_one use k' = n', sloo and l2o k' = n'-1 (documented);
    e.g. n=6, k=5, three scored rewards (1, 4, 2): s = oracle s with k'=3, sloo = oracle sloo with k'=2."""
    h = [math.nan, 1.0, math.nan, 4.0, 2.0, math.nan]
    for estimator, k_eff in (("s", 3), ("sloo_minus_one", 3), ("sloo", 2), ("l2o", 2)):
        expected = [0.0] * 6
        for slot, v in zip((1, 3, 4), ORACLES[estimator]([1.0, 4.0, 2.0], k_eff)):
            expected[slot] = v
        assert_close(transform_rewards(t64(h), 5, estimator), expected, 4.0)
    one_left = t64([math.nan, 3.0, math.nan])
    assert_close(transform_rewards(one_left, 2, "s"), [0.0, 3.0, 0.0], 3.0)  # k' = 1: s_i = g_i
    for estimator in BASELINED:  # no other sample: no baseline, no signal
        assert_close(transform_rewards(one_left, 2, estimator), [0.0, 0.0, 0.0], 3.0)


# ==================================================================================================
# 11. pass_at_k closed form.


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
# 12. Registry (the paper's variance ordering: tests/test_experiments.py, on the toy of pkpo_trl.experiments).


def test_registry_lists_the_estimators() -> None:
    """ESTIMATORS holds exactly the documented estimators (PKPO's four and the two successors'), each a
    function with a docstring; the default is sloo_minus_one."""
    assert set(ESTIMATORS) == set(ALL_ESTIMATORS + SUCCESSORS)
    for name, spec in ESTIMATORS.items():
        assert spec.name == name and callable(spec.fn) and spec.fn.__doc__
    g = torch.tensor([0.2, 0.9, 0.4], dtype=torch.float64)
    torch.testing.assert_close(transform_rewards(g, 2), transform_rewards(g, 2, "sloo_minus_one"))


def test_the_math_imports_neither_trl_nor_transformers() -> None:
    """The estimators are pure torch: a TRL upgrade cannot change them (checked in a fresh interpreter, since
    this one has TRL loaded already). pkpo_trl/__init__ loads the trainer lazily, so only the math is imported."""
    import subprocess
    import sys

    code = (
        "import sys, pkpo_trl.estimators, pkpo_trl.estimator_registry; "
        "print(sorted(m for m in ('trl', 'transformers', 'accelerate', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ==================================================================================================
# 13. Exact zeros for constant groups, None as NaN.


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


def test_none_is_treated_as_nan() -> None:
    """None in list or object-array input (TRL's "not scored") is NaN: same numbers as the NaN tensor."""
    rows = [[0.2, None, 0.9, 0.4, None], [1.0, 0.0, None, 1.0, 0.0]]
    nan_rows = t64([[math.nan if v is None else v for v in row] for row in rows])
    for estimator in ALL_ESTIMATORS:
        expected = transform_rewards(nan_rows, 2, estimator)
        torch.testing.assert_close(
            transform_rewards(rows, 2, estimator).to(torch.float64), expected, rtol=0, atol=1e-7
        )
        as_object = np.array(rows, dtype=object)
        torch.testing.assert_close(
            transform_rewards(as_object, 2, estimator).to(torch.float64), expected, rtol=0, atol=1e-7
        )
    value = maxg_at_k([0.5, None, 0.1], 2)
    assert abs(value.item() - 0.5) < 1e-7
    assert math.isnan(maxg_at_k([None, None], 1).item())


# ==================================================================================================
# 14. The successors' estimators: verl's grpo_passk (Tang et al.) and Chen et al.'s Pass@k Training.


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


# ==================================================================================================
# 15. One k per group, mixtures of k, adaptive k (issue 14).

from pkpo_trl.estimators import k_from_success_rate, transform_rewards_mixture  # noqa: E402


def _random_ks(n: int, estimator: str, rows: int, rng: random.Random) -> list[int]:
    return [rng.choice(valid_ks(n, estimator)) for _ in range(rows)]


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_per_group_k_matches_enumeration_row_by_row(estimator: str) -> None:
    """A k per group (an integer tensor [G]) transforms each group exactly as the enumeration definition
    at that group's k, on binary, continuous, tied, negative and all-equal groups, also with NaN slots."""
    rng = random.Random(15)
    for n in range(2, MAX_N + 1):
        binary, other = sweep_rows(n, seed=300 + n)
        for rows in (binary, other, [row[:-1] + [math.nan] for row in other]):
            ks = _random_ks(n, estimator, len(rows), rng)
            if len(set(ks)) == 1:
                ks[0] = 1 if ks[0] != 1 else max(valid_ks(n, estimator))
            got = transform_rewards(t64(rows), torch.tensor(ks), estimator)
            expected = [oracle_transform_with_nans(row, k, estimator) for row, k in zip(rows, ks)]
            assert_close(got, expected, _scale(rows))


def test_per_group_k_successors_and_batch_shapes() -> None:
    """pass_at_k_training with a k per group equals its row-by-row calls (with NaNs too); grpo_passk takes a
    per-group k only when every k is n; a [2, 3, n] batch takes a [2, 3] k."""
    gen = torch.Generator().manual_seed(151)
    x = (torch.rand(6, 7, generator=gen) < 0.4).to(torch.float64)
    ks = torch.tensor([1, 2, 3, 5, 7, 4])
    for g in (x, x.masked_fill(torch.rand(6, 7, generator=gen) < 0.2, math.nan)):
        rowwise = torch.stack([transform_rewards(g[i], int(ks[i]), "pass_at_k_training") for i in range(6)])
        torch.testing.assert_close(transform_rewards(g, ks, "pass_at_k_training"), rowwise, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        transform_rewards(x, torch.full((6,), 7), "grpo_passk"), transform_rewards(x, 7, "grpo_passk")
    )
    with pytest.raises(ValueError, match="k = n only"):
        transform_rewards(x, ks, "grpo_passk")
    y = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    k3 = torch.tensor([[1, 3, 6], [2, 6, 4]])
    rowwise = torch.stack([transform_rewards(y[i, j], int(k3[i, j])) for i in range(2) for j in range(3)])
    torch.testing.assert_close(transform_rewards(y, k3), rowwise.view(2, 3, 6), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: transform_rewards(torch.zeros(3, 4), torch.tensor([1.0, 2.0, 3.0])), "integer tensor"),
        (lambda: transform_rewards(torch.zeros(3, 4), torch.tensor([1, 2])), "batch shape"),
        (lambda: transform_rewards(torch.zeros(3, 4), torch.tensor([1, 0, 2])), "k must be >= 1"),
        (lambda: transform_rewards(torch.zeros(3, 4), torch.tensor([1, 4, 2]), "l2o"), "k=4 is too large"),
        (lambda: transform_rewards_mixture(torch.zeros(3, 4), {1: 0.5, 5: 0.5}), "k=5 is too large"),
        (lambda: transform_rewards_mixture(torch.zeros(3, 4), {1: -0.5, 2: 1.0}), "finite and >= 0"),
        (lambda: transform_rewards_mixture(torch.zeros(3, 4), {1: 0.0, 2: 0.0}), "sum to > 0"),
        (lambda: transform_rewards_mixture(torch.zeros(3, 4), {}), "non-empty"),
        (lambda: k_from_success_rate(torch.zeros(2), 3, 2), "k_min <= k_max"),
    ],
)
def test_per_group_k_and_mixture_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mixture_matches_weighted_enumeration(estimator: str) -> None:
    """transform_rewards_mixture(g, {k: w_k}) = sum_k w_k A^(k) / sum_k w_k with A^(k) the enumeration
    definition, with NaN slots too; a one-term mixture is transform_rewards at that k."""
    rng = random.Random(152)
    for n in range(2, MAX_N + 1):
        binary, other = sweep_rows(n, seed=400 + n)
        for rows in (binary, other, [[math.nan] + row[1:] for row in other]):
            ks = rng.sample(list(valid_ks(n, estimator)), min(3, len(valid_ks(n, estimator))))
            mixture = {k: rng.uniform(0.1, 2.0) for k in ks}
            total = math.fsum(mixture.values())
            expected = [
                [math.fsum(w / total * a for w, a in zip(mixture.values(), col)) for col in zip(*per_k)]
                for per_k in ([oracle_transform_with_nans(row, k, estimator) for k in mixture] for row in rows)
            ]
            assert_close(transform_rewards_mixture(t64(rows), mixture, estimator), expected, _scale(rows))
            k = ks[0]
            torch.testing.assert_close(
                transform_rewards_mixture(t64(rows), {k: 3.0}, estimator), transform_rewards(t64(rows), k, estimator)
            )


def test_mixture_of_pass_at_k_training_is_the_weighted_sum() -> None:
    gen = torch.Generator().manual_seed(153)
    x = (torch.rand(50, 8, generator=gen) < 0.3).to(torch.float64)
    expected = 0.25 * transform_rewards(x, 1, "pass_at_k_training") + 0.75 * transform_rewards(
        x, 6, "pass_at_k_training"
    )
    torch.testing.assert_close(transform_rewards_mixture(x, {1: 1, 6: 3}, "pass_at_k_training"), expected)


@HYP_FEW
@given(value=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), n=st.integers(2, 12), data=st.data())
def test_constant_groups_give_zeros_with_per_group_k_and_mixtures(value: float, n: int, data: st.DataObject) -> None:
    """Constant groups stay exactly 0 under per-group k and mixtures for the estimators that are 0 there by
    definition (sloo_minus_one, l2o; pass_at_k_training on 0/1 groups); sloo's documented constant
    k*c*(1/n - 1/(n-1)) mixes linearly."""
    g = t64([[value] * n] * 3)
    for estimator in SHIFT_INVARIANT:
        ks = data.draw(st.lists(st.sampled_from(valid_ks(n, estimator)), min_size=3, max_size=3))
        assert (transform_rewards(g, torch.tensor(ks), estimator) == 0).all(), estimator
        assert (transform_rewards_mixture(g, dict.fromkeys(ks, 1.0), estimator) == 0).all(), estimator
    for bit in (0.0, 1.0):
        ks = torch.tensor(data.draw(st.lists(st.integers(1, n), min_size=3, max_size=3)))
        assert (transform_rewards(t64([[bit] * n] * 3), ks, "pass_at_k_training") == 0).all()
        assert (transform_rewards_mixture(t64([[bit] * n] * 3), {1: 1, n: 1}, "pass_at_k_training") == 0).all()
    mixture = {1: 0.25, n - 1: 0.75} if n > 2 else {1: 1.0}
    expected = math.fsum(w * k * value * (1 / n - 1 / (n - 1)) for k, w in mixture.items())
    assert_close(transform_rewards_mixture(g[0], mixture, "sloo"), [expected] * n, abs(value))


@pytest.mark.parametrize("p", [0.15, 0.6])
@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_mc_mixture_gradient_unbiased_bernoulli(estimator: str, p: float) -> None:
    """Bernoulli(p): E[sum_i A_i d/dp log p(x_i)] = d/dp sum_k w_k (1-(1-p)^k) = sum_k w_k k (1-p)^(k-1)
    for the mixture {1: 0.5, 4: 0.3, 7: 0.2}."""
    gen = torch.Generator().manual_seed(154)
    x = (torch.rand(MC_GROUPS, MC_N, generator=gen) < p).to(torch.float64)
    score = x / p - (1 - x) / (1 - p)
    mixture = {1: 0.5, 4: 0.3, 7: 0.2}
    a = transform_rewards_mixture(x, mixture, estimator)
    assert_mc_mean((a * score).sum(-1), math.fsum(w * k * (1 - p) ** (k - 1) for k, w in mixture.items()))


def test_k_from_success_rate_is_the_integer_argmax_of_the_pass_at_k_slope() -> None:
    """k(p) = argmax over integers k in [k_min, k_max] of d pass@k / dp = k (1-p)^(k-1) (ties to the larger
    k), for every p = c/n < 1, n <= 16; unknown (NaN) and never-solved (0) prompts get k_max."""
    for k_min, k_max in ((1, 8), (2, 5), (1, 16)):
        for n in range(1, 17):
            for c in range(1, n):  # p = 1: every slope is 0 beyond k = 1; k_min by definition (checked below)
                p = c / n
                slope = {k: k * (1 - p) ** (k - 1) for k in range(k_min, k_max + 1)}
                best = max(slope.values())
                expected = max(k for k, v in slope.items() if v >= best * (1 - 1e-12))
                assert int(k_from_success_rate(torch.tensor(p), k_min, k_max)) == expected, (p, k_min, k_max)
        got = k_from_success_rate(torch.tensor([0.0, math.nan, 1.0]), k_min, k_max)
        assert got.tolist() == [k_max, k_max, k_min]


def _adaptive_mc(p: float, rule: str, groups: int = MC_GROUPS, n: int = MC_N) -> tuple[torch.Tensor, float]:
    """Per-group gradient estimates of the adaptive-k transform for Bernoulli(p) and the target
    E_k[k (1-p)^(k-1)], k = k_from_success_rate(c0/n, 1, n) with c0 ~ Binomial(n, p) from an independent
    earlier visit. rule: "history" (k from that earlier visit) or "same" (k from the weighted samples)."""
    gen = torch.Generator().manual_seed(155)
    earlier = (torch.rand(groups, n, generator=gen) < p).to(torch.float64)
    x = (torch.rand(groups, n, generator=gen) < p).to(torch.float64)
    score = x / p - (1 - x) / (1 - p)
    k = k_from_success_rate((earlier if rule == "history" else x).mean(-1), 1, n)
    per_group = (transform_rewards(x, k) * score).sum(-1)
    k_of = [int(k_from_success_rate(torch.tensor(c / n), 1, n)) for c in range(n + 1)]
    target = math.fsum(
        comb(n, c) * p**c * (1 - p) ** (n - c) * k_of[c] * (1 - p) ** (k_of[c] - 1) for c in range(n + 1)
    )
    return per_group, target


@pytest.mark.parametrize("p", [0.05, 0.15, 0.3, 0.6])
def test_mc_adaptive_k_from_history_is_unbiased_and_from_same_samples_is_not(p: float) -> None:
    """k chosen from an earlier visit (pkpo_adaptive_k="history"): the mean gradient estimate equals the
    expected gradient of pass@k at the chosen k (within 5 SE). k chosen from the very samples it weights:
    biased by many standard errors (the README reports the measured size), so this test can fail."""
    per_group, target = _adaptive_mc(p, "history")
    assert_mc_mean(per_group, target)
    per_group, target = _adaptive_mc(p, "same")
    se = per_group.std().item() / math.sqrt(per_group.numel())
    assert abs(per_group.mean().item() - target) > 10 * se
