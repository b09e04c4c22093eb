"""Helpers shared by the estimator tests (test_estimators.py, test_estimators_inputs.py,
test_estimators_monte_carlo.py, test_estimators_stability.py, test_estimator_successors.py, test_per_group_k.py).

The estimator names and their valid k, hypothesis settings, the module-scoped one-thread fixture, float64
comparisons, the reward generators, the Monte Carlo check and a small group for the error tests. Pure torch: no
TRL (tests/helpers.py imports TRL). Nothing here calls the code under test; the one expectation built here,
:func:`oracle_transform_with_nans`, is the enumeration oracle of tests/oracle.py under the documented NaN rule.

``_one_torch_thread`` is an autouse fixture: a test module applies it by importing it by name.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from oracle import ORACLES

ALL_ESTIMATORS = ("s", "sloo", "sloo_minus_one", "l2o")  # PKPO's max@k estimators: any rewards, any valid k
BASELINED = ("sloo", "sloo_minus_one", "l2o")
SHIFT_INVARIANT = ("sloo_minus_one", "l2o")  # zero on constant groups by definition
MIN_OTHERS = {"s": 0, "sloo": 1, "sloo_minus_one": 0, "l2o": 1}  # largest valid k is n - MIN_OTHERS
MAX_N = 10  # the enumeration oracle is exact for every n <= MAX_N

HYP = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HYP_FEW = settings(HYP, max_examples=50)  # for properties that loop over every estimator and k per example


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Run each module that imports this on one intra-op thread: the tensors there are small, and on a shared
    2-core CI box (pytest -n 2) torch's thread pool oversubscribes and spin-waits, making the MC tests 10x slower."""
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
# Monte Carlo checks (seeded, 5 standard errors).

MC_GROUPS = 40_000
MC_N = 8


def assert_mc_mean(per_group: torch.Tensor, exact: float, sigmas: float = 5.0, resolution: float = 1e-12) -> None:
    """The mean of i.i.d. per-group values is within `sigmas` standard errors (+ `resolution`) of `exact`."""
    per_group = per_group.to(torch.float64)
    mean = per_group.mean().item()
    se = per_group.std().item() / math.sqrt(per_group.numel())
    assert abs(mean - exact) <= sigmas * se + resolution, f"mean {mean:.6f} vs exact {exact:.6f} (se {se:.2e})"


# ==================================================================================================
# A group of n = 4 rewards, for the tests of errors (an invalid k, estimator or reward kind for it).

G4 = torch.tensor([[0.1, 0.5, 0.2, 0.9]], dtype=torch.float64)
