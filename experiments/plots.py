"""The toy reproductions' figures (paper Figures 1 and 4, training curves): each returns a
:class:`matplotlib.figure.Figure` and draws nothing else, for callers (notebooks, :mod:`experiments.runner`) to save
or show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .training import TrainingResult
    from .variance import VarianceResult

__all__ = ["ESTIMATOR_STYLE", "plot_maxg_vs_theta", "plot_training", "plot_variance"]

ESTIMATOR_STYLE: dict[str, dict] = {
    "s": {"color": "tab:red", "marker": "o", "label": "s (no baseline)"},
    "sloo": {"color": "tab:blue", "marker": "s", "label": "sloo (leave-one-out)"},
    "sloo_minus_one": {"color": "tab:green", "marker": "^", "label": "sloo_minus_one"},
    "l2o": {"color": "black", "marker": "x", "linestyle": ":", "label": "l2o (zero-sum k/n)"},
    "grpo_passk": {"color": "tab:purple", "marker": "D", "markersize": 7, "label": "grpo_passk (k = n)"},
    "pass_at_k_training": {"color": "tab:orange", "marker": "v", "label": "pass_at_k_training (biased)"},
}


def plot_maxg_vs_theta(
    thetas: Sequence[float],
    curves: Mapping[int, Sequence[float]],
    optima: Mapping[int, tuple[float, float]],
    mc: Mapping[int, tuple[Sequence[float], Sequence[float], Sequence[float]]] | None = None,
    sigma: float = 0.1,
) -> Figure:
    """Paper Figure 1: ``maxg@k(theta)`` for several ``k`` with each optimum marked.

    Args:
        thetas: grid of policy means.
        curves: ``k -> maxg@k`` on ``thetas`` (exact quadrature).
        optima: ``k -> (theta*, maxg@k(theta*))``.
        mc: optional ``k -> (thetas, means, standard errors)`` of the Monte Carlo estimator
            :func:`pkpo_trl.estimators.maxg_at_k`, drawn as points with error bars.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    ks = sorted(curves)
    for j, k in enumerate(ks):
        color = cmap(j / max(len(ks) - 1, 1))
        ax.plot(thetas, curves[k], color=color, label=f"k = {k}")
        t_star, v_star = optima[k]
        ax.plot([t_star], [v_star], marker="*", markersize=12, color=color, markeredgecolor="black", zorder=5)
        if mc is not None and k in mc:
            mt, mm, ms = mc[k]
            ax.errorbar(mt, mm, yerr=[2 * s for s in ms], fmt="o", markersize=3, color=color, alpha=0.7)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(rf"policy mean $\theta$  ($x \sim N(\theta, {sigma:.2g}^2)$)")
    ax.set_ylabel(r"maxg@k$(\theta) = E[\max_{i \leq k} g(x_i)]$")
    ax.set_title(r"Toy objective, $g(x) = x^2$ on $[0,1]$; $\star$ = optimum per k")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_variance(results: Sequence[VarianceResult]) -> Figure:
    """Paper Figure 4: variance of the per-group gradient estimate vs ``k`` (log y), one panel per ``theta``
    (continuous rewards, then the binary variant)."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        for e, var in res.variance.items():
            if all(v != v for v in var):  # undefined here (binary-only estimator on continuous rewards)
                continue
            style = {"markersize": 4, **ESTIMATOR_STYLE.get(e, {"label": e})}
            ax.plot(res.ks, var, **style)
        ax.set_yscale("log")
        ax.set_xlabel("k")
        kind = "0/1 reward, pass@k" if res.binary else "reward x², maxg@k"
        ax.set_title(rf"$\theta = {res.theta:g}$, n = {res.n} ({kind})", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("Var of gradient estimate per group")
    axes[0][0].legend(fontsize=7)
    binary = [ax for ax, res in zip(axes[0], results) if res.binary]
    if binary:
        binary[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_training(
    results: Mapping[str, Mapping[str, TrainingResult]],
    eval_ks: Sequence[int] = (1, 8),
    references: Mapping[int, tuple[float, float]] | None = None,
) -> Figure:
    """Training curves: one row per start, columns ``theta`` and ``maxg@k`` for each ``k`` in ``eval_ks``.

    Lines are means over runs, bands one standard deviation. ``references`` (``k -> (theta*, max)``) draws
    the optimum of each evaluated ``k`` as dashed lines.
    """
    rows = list(results)
    ncols = 1 + len(eval_ks)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.3 * len(rows)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for r, start in enumerate(rows):
        for j, (name, res) in enumerate(results[start].items()):
            steps = range(len(res.theta_mean))
            series = [(res.theta_mean, res.theta_std)] + [(res.maxg[k], res.maxg_std[k]) for k in eval_ks]
            for c, (mean, std) in enumerate(series):
                ax = axes[r][c]
                dashed = "anneal" in name  # overlaps its k_start curve until the switch (same seed)
                ax.plot(steps, mean, color=colors(j), label=name, linestyle="--" if dashed else "-")
                lo = [m - s for m, s in zip(mean, std)]
                hi = [m + s for m, s in zip(mean, std)]
                ax.fill_between(steps, lo, hi, color=colors(j), alpha=0.15, linewidth=0)
        axes[r][0].set_ylabel(start, fontsize=9)
        axes[r][0].set_title(r"$\theta$")
        for c, k in enumerate(eval_ks, start=1):
            axes[r][c].set_title(f"maxg@{k}")
        if references:
            for c, k in enumerate(eval_ks, start=1):
                if k in references:
                    t_star, v_star = references[k]
                    axes[r][0].axhline(t_star, color="grey", linestyle="--", linewidth=0.8)
                    axes[r][c].axhline(v_star, color="grey", linestyle="--", linewidth=0.8)
        for ax in axes[r]:
            ax.grid(alpha=0.3)
            ax.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
