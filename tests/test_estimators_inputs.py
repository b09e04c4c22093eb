"""Tests of the inputs :func:`pkpo_trl.estimators.transform_rewards` and :func:`~pkpo_trl.estimators.maxg_at_k`
take: shapes (batched, nested, empty, non-contiguous, python lists), dtypes, autograd and inference mode, the
errors that name an invalid k, group, reward or estimator, and NaN and None rewards (unscorable completions).

Where a test is about values, the expected ones come from the *independent enumeration oracle* (tests/oracle.py)
under the documented NaN rule; otherwise a test states an *internal consistency* property (batched == per row,
list == tensor, NaN-dropped group == the group without the NaNs, None == NaN). Helpers: tests/estimator_helpers.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from estimator_helpers import (
    ALL_ESTIMATORS,
    BASELINED,
    G4,
    HYP,
    MIN_OTHERS,
    _one_torch_thread,  # noqa: F401 (an autouse fixture: importing it applies it here)
    _scale,
    assert_close,
    oracle_transform_with_nans,
    reward_groups,
    t64,
    valid_ks,
)
from hypothesis import given
from hypothesis import strategies as st
from oracle import ORACLES, oracle_rho

from pkpo_trl.estimators import maxg_at_k, pass_at_k, transform_rewards

# ==================================================================================================
# 1. Shapes and dtypes.


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
# 2. Errors.


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
# 3. NaN and None rewards (unscorable completions).


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
