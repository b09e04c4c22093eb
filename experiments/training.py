"""Gradient ascent on the 1D toy's ``theta`` with PKPO gradient estimates (paper Sec. 5 toy, k annealing).

Each step draws ``groups_per_step`` groups of ``n`` samples from ``N(theta, sigma^2)``, transforms their
rewards with :func:`pkpo_trl.estimators.transform_rewards` at the step's ``k`` and moves ``theta`` by
plain SGD on the averaged estimate

    theta <- theta + lr * mean_groups( sum_i A_i (x_i - theta) / sigma^2 ).

``num_runs`` independent runs are vectorised (``theta`` is a ``[num_runs]`` tensor). The curves logged are
*exact* objective values of the current ``theta`` (:func:`experiments.toy.exact_maxg_at_k`), so
they carry no evaluation noise.

The k schedule is :class:`pkpo_trl.k.KSpec`, the one PKPOTrainer anneals with: a spec such as
``"constant:8"`` or ``"steps:0=8,150=1"`` (large ``k`` first to explore, then ``k = 1`` to exploit, as the
paper's annealing experiments do), or an int for a constant ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pkpo_trl.k import KSpec

from .toy import SIGMA, exact_maxg_at_k, gradient_estimates

__all__ = ["TrainingResult", "train_schedules", "train_theta"]


@dataclass
class TrainingResult:
    """Histories of one schedule: ``[steps + 1]`` lists of per-step values (index 0 is the start).

    ``theta_mean``/``theta_std`` are over runs; ``maxg[k]``/``maxg_std[k]`` are the mean/std over runs of
    the exact ``maxg@k(theta)`` for each evaluation ``k``; ``final_*`` are end-of-training means.
    """

    name: str
    ks: list[int]
    theta_mean: list[float]
    theta_std: list[float]
    maxg: dict[int, list[float]] = field(default_factory=dict)
    maxg_std: dict[int, list[float]] = field(default_factory=dict)
    final_theta: list[float] = field(default_factory=list)

    def final(self, k: int) -> float:
        """Mean over runs of ``maxg@k`` at the last step."""
        return self.maxg[k][-1]

    def to_dict(self) -> dict:
        """JSON-ready dict (integer keys become strings)."""
        return {
            "name": self.name,
            "ks": self.ks,
            "theta_mean": self.theta_mean,
            "theta_std": self.theta_std,
            "maxg": {str(k): v for k, v in self.maxg.items()},
            "maxg_std": {str(k): v for k, v in self.maxg_std.items()},
            "final_theta": self.final_theta,
        }


def train_theta(
    schedule: KSpec | str | int,
    *,
    steps: int = 300,
    lr: float = 0.05,
    n: int = 16,
    groups_per_step: int = 4,
    estimator: str = "sloo_minus_one",
    theta0: float = 0.0,
    num_runs: int = 32,
    eval_ks: Sequence[int] = (1, 8),
    seed: int = 0,
    sigma: float = SIGMA,
    name: str = "",
    progress: Any = None,
) -> TrainingResult:
    """SGD on ``theta`` following ``schedule``; returns exact ``maxg@k`` curves for ``k in eval_ks``.

    Args:
        schedule: a :class:`~pkpo_trl.k.KSpec`, its spec, or an int (constant ``k``); each ``k``
            must satisfy ``k <= n`` (``k <= n-1`` for sloo/l2o).
        steps: optimizer steps.
        lr: SGD step size. The toy's ``maxg@1`` has curvature about -20 at its optimum (the reward drops
            to 0 at ``x = 1``), so ``lr`` must stay below ~0.1 for ``k = 1`` to be stable.
        n: group size; groups_per_step: groups averaged per step.
        estimator: name in :data:`pkpo_trl.estimators.ESTIMATORS`.
        theta0: starting mean of every run.
        num_runs: independent runs, vectorised.
        eval_ks: ``k`` values whose exact ``maxg@k`` is logged.
        seed: seed of the torch generator.
        progress: optional ``tqdm`` bar, updated once per step.

    Returns:
        A :class:`TrainingResult`.
    """
    schedule = KSpec.parse(schedule)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.full((num_runs,), float(theta0), dtype=torch.float64)
    ks: list[int] = []
    thetas = [theta.clone()]
    for step in range(steps):
        (k,) = schedule.mixture(step, steps).ks
        ks.append(k)
        grad = gradient_estimates(theta, k, n, groups_per_step, estimator, sigma, gen).mean(-1)
        theta = theta + lr * grad
        thetas.append(theta.clone())
        if progress is not None:
            progress.update(1)
    history = torch.stack(thetas)  # [steps + 1, runs]
    result = TrainingResult(
        name=name,
        ks=ks,
        theta_mean=history.mean(-1).tolist(),
        theta_std=history.std(-1).tolist() if num_runs > 1 else [0.0] * (steps + 1),
        final_theta=history[-1].tolist(),
    )
    for k in eval_ks:
        values = exact_maxg_at_k(history, k, sigma)  # [steps + 1, runs]
        result.maxg[k] = values.mean(-1).tolist()
        result.maxg_std[k] = values.std(-1).tolist() if num_runs > 1 else [0.0] * (steps + 1)
    return result


def train_schedules(
    schedules: dict[str, KSpec | str | int], *, seed: int = 0, progress: Any = None, **kwargs: Any
) -> dict[str, TrainingResult]:
    """Run :func:`train_theta` for each named schedule with the same seed (common random numbers).

    ``kwargs`` are passed to :func:`train_theta`.
    """
    return {
        name: train_theta(schedule, seed=seed, name=name, progress=progress, **kwargs)
        for name, schedule in schedules.items()
    }
