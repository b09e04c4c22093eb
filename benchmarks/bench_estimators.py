"""Time ``pkpo_trl.transform_rewards`` against TRL's group normalisation and a per-group numpy loop.

For every batch shape ``[G, n]`` (G prompts, n completions each), estimator and reward kind
(continuous ``N(0, 1)`` or binary ``Bernoulli(0.3)``), the script reports the median wall time of

* ``pkpo``: ``transform_rewards(rewards, k, estimator)`` (one vectorised torch call);
* ``trl-norm``: the exact torch ops TRL 1.16 ``GRPOTrainer._generate_and_score_completions`` runs on the
  same flat reward tensor (``scale_rewards="group"``): ``view(-1, n)``, ``nanmean``, TRL's ``nanstd``,
  ``repeat_interleave``, subtract, divide by ``std + 1e-4``, ``nan_to_num``;
* ``numpy-loop`` (``sloo_minus_one`` rows only): a straightforward Python loop over groups, each
  group sorted with numpy and weighted with the sorted formula (log-space binomials via ``gammaln``).

and fits the growth exponent of the per-group cost in ``n`` (``n log n`` shows up as an exponent a
little above 1 over this range). Run ``python benchmarks/bench_estimators.py`` (``--quick`` for a
smoke run). The rewards are float32, as in TRL; pkpo computes in float64 internally.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from trl.trainer.utils import nanstd

from pkpo_trl.estimators import ESTIMATORS as REGISTRY
from pkpo_trl.estimators import transform_rewards

try:
    from scipy.special import gammaln
except ImportError:  # scipy is a dev extra; fall back to the (slower) stdlib lgamma
    gammaln = np.vectorize(math.lgamma, otypes=[np.float64])

SHAPES = [(1024, 16), (256, 64), (64, 256), (8, 4096)]
ESTIMATORS = list(REGISTRY)  # grpo_passk runs at k = n; pass_at_k_training on binary rewards only
KINDS = ["continuous", "binary"]


def trl_group_normalise(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """TRL 1.16 GRPOTrainer advantages for flat rewards [G*n], scale_rewards="group" (grpo_trainer.py
    ~2764-2811, sum_then_normalize branch)."""
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
    std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def _log_binom(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """log C(a, b), -inf outside 0 <= b <= a."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    ok = (b >= 0) & (b <= a)
    out = np.full(a.shape, -np.inf)
    out[ok] = gammaln(a[ok] + 1) - gammaln(b[ok] + 1) - gammaln(a[ok] - b[ok] + 1)
    return out


def numpy_loop_sloo_minus_one(rewards: np.ndarray, k: int) -> np.ndarray:
    """Per-group loop: sort, s_(i) = [C(i-1,k-1) g_(i) + sum_{j>i} C(j-2,k-2) g_(j)] / C(n,k),
    minus k/n * rho(-i, max(k-1, 1)) from prefix sums; weights recomputed per group, as a naive port would."""
    out = np.empty_like(rewards, dtype=np.float64)
    n = rewards.shape[-1]
    m = max(k - 1, 1)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    for row in range(rewards.shape[0]):
        order = np.argsort(rewards[row], kind="stable")
        g = rewards[row, order].astype(np.float64)
        log_cnk = _log_binom(np.float64(n), k)
        own = np.exp(_log_binom(ranks - 1, k - 1) - log_cnk) * g
        up = np.exp(_log_binom(ranks - 2, k - 2) - log_cnk) * g
        s = own + (np.cumsum(up[::-1])[::-1] - up)
        log_cn1m = _log_binom(np.float64(n - 1), m)
        below_w = np.exp(_log_binom(ranks - 1, m - 1) - log_cn1m) * g
        above_w = np.exp(_log_binom(ranks - 2, m - 1) - log_cn1m) * g
        rho_others = (np.cumsum(below_w) - below_w) + (np.cumsum(above_w[::-1])[::-1] - above_w)
        result = np.empty(n)
        result[order] = s - k / n * rho_others
        out[row] = result
    return out


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2, min_time: float = 0.0) -> float:
    """Median over `repeats` timed runs (after `warmup` untimed ones) of fn's wall time, in ms; each timed run
    repeats fn until it has taken at least `min_time` seconds, to resolve sub-millisecond calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        times.append(elapsed / calls * 1e3)
    return statistics.median(times)


def make_rewards(shape: tuple[int, int], kind: str, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "binary":
        return (torch.rand(shape, generator=gen) < 0.3).to(torch.float32)
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def growth_exponent(ns: list[int], per_group_ms: list[float]) -> float:
    """Least-squares slope of log(per-group time) against log(n)."""
    return float(np.polyfit(np.log(ns), np.log(per_group_ms), 1)[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per cell (median reported)")
    parser.add_argument("--quick", action="store_true", help="3 repeats, loop baseline on 2 groups only")
    parser.add_argument("--k", type=str, default="n/4", help='k per shape: an integer or "n/4" (default)')
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    min_time = 0.01 if args.quick else 0.05

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()},"
        f" {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; repeats={repeats}; rewards float32 on CPU\n"
    )
    print("| shape [G, n] | k | rewards | estimator | pkpo ms | trl-norm ms | ratio | numpy-loop ms | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    per_group: dict[tuple[str, str], list[float]] = {}
    checks: list[tuple[str, bool]] = []
    for G, n in SHAPES:
        k = max(1, n // 4) if args.k == "n/4" else min(int(args.k), n - 1)
        for kind in KINDS:
            rewards = make_rewards((G, n), kind)
            flat = rewards.view(-1)
            trl_ms = median_ms(partial(trl_group_normalise, flat, n), repeats, min_time=min_time)
            per_group.setdefault(("trl-norm", kind), []).append(trl_ms / G)
            for estimator in ESTIMATORS:
                spec = REGISTRY[estimator]
                if spec.binary_only and kind != "binary":
                    continue
                k_e = max(k, spec.k_range(n)[0])  # grpo_passk: its one k, n
                pkpo_ms = median_ms(partial(transform_rewards, rewards, k_e, estimator), repeats, min_time=min_time)
                per_group.setdefault((estimator, kind), []).append(pkpo_ms / G)
                ratio = pkpo_ms / trl_ms
                loop_cell = speed_cell = "-"
                if estimator == "sloo_minus_one":
                    groups = 2 if args.quick else min(G, 256)  # time a subset of groups, scale to G
                    sub = rewards[:groups].numpy()
                    expected = transform_rewards(rewards[:groups].double(), k, estimator).numpy()
                    np.testing.assert_allclose(numpy_loop_sloo_minus_one(sub, k), expected, rtol=1e-6, atol=1e-9)
                    loop_ms = median_ms(partial(numpy_loop_sloo_minus_one, sub, k), max(3, repeats // 3)) * G / groups
                    loop_cell, speed_cell = f"{loop_ms:.2f}", f"{loop_ms / pkpo_ms:.0f}x"
                    if (G, n) == (1024, 16):
                        label = f">= 20x faster than the numpy loop at [1024, 16] ({kind})"
                        checks.append((label, loop_ms >= 20 * pkpo_ms))
                if n <= 64:
                    checks.append((f"within 3x of trl-norm at [{G}, {n}] {estimator} {kind}", ratio <= 3))
                print(
                    f"| [{G}, {n}] | {k_e} | {kind} | {estimator} | {pkpo_ms:.3f} | {trl_ms:.3f} | {ratio:.1f}x"
                    f" | {loop_cell} | {speed_cell} |",
                    flush=True,
                )

    ns = [n for _, n in SHAPES]
    print(f"\nGrowth exponent of per-group time vs n (fit over n = {ns}; n log n gives ~1.1-1.2):")
    for (name, kind), values in per_group.items():
        print(f"- {name} ({kind}): {growth_exponent(ns, values):.2f}")
    print("\nTargets:")
    for label, ok in checks:
        print(f"- [{'x' if ok else ' '}] {label}")


if __name__ == "__main__":
    main()
