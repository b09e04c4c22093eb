"""Every plot of the package, one home: a training run's logged PKPO metrics and `pkpo-eval`'s pass@k-vs-k
curves. :func:`plot_pass_at_k` and :func:`plot_pass_at_k_curves` write a PNG (training machines have no display).
The toy reproductions' figures are in the repository's ``experiments/plots.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["pass_at_k_figure", "plot_pass_at_k", "plot_pass_at_k_curves"]


def _series(log_history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    # A step where no completion was scored logs None or NaN: a gap in the line, not a crash.
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry:
            steps.append(entry["step"])
            values.append(math.nan if entry[key] is None else float(entry[key]))
    return steps, values


_SMOOTH = 4


def _running_mean(values: list[float]) -> list[float]:
    """The mean of each value and the ``_SMOOTH - 1`` before it, NaNs left out (NaN where all are)."""
    windows = [[v for v in values[max(0, i - _SMOOTH + 1) : i + 1] if v == v] for i in range(len(values))]
    return [sum(window) / len(window) if window else math.nan for window in windows]


def _fixed_k_keys(log_history: Sequence[dict]) -> list[tuple[str, str]]:
    # PassAtKCallback's fixed-k metrics, `pass@k/<k>` (train) and `eval_pass@k/<k>`, in order of k.
    keys = {key for entry in log_history for key in entry if key.split("/")[0] in ("pass@k", "eval_pass@k")}
    ordered = sorted(keys, key=lambda key: (key.startswith("eval_"), int(key.split("/")[1])))
    return [
        (key, f"pass@{key.split('/')[1]}{' (eval)' if key.startswith('eval_') else ' (train groups)'}")
        for key in ordered
    ]


def _logs_a_mixture(log_history: Sequence[dict]) -> bool:
    """Whether the run trained with a k mixture, or adaptive k: ``pkpo/k`` is then a mean k, not an integer (a
    scheduled mixture also logs its weights, ``pkpo/k_mixture/w<k>``)."""
    ks = [value for value in _series(log_history, "pkpo/k")[1] if value == value]
    return any(not float(k).is_integer() for k in ks) or any(
        key.startswith("pkpo/k_mixture/") for entry in log_history for key in entry
    )


def _estimate_series(log_history: Sequence[dict]) -> list[tuple[str, str]]:
    """The (key, label) pairs of the estimates panel, each quantity once: pass@k "at the current k" is left out
    where that k is a fixed-k series already or is no single k (a mixture logs its mean k)."""
    fixed = _fixed_k_keys(log_history)
    fixed_keys = {key for key, _ in fixed}
    ks = {v for _, v in zip(*_series(log_history, "pkpo/k"), strict=True) if v == v}
    single_k = next(iter(ks)) if len(ks) == 1 else None
    mixture = _logs_a_mixture(log_history)
    pairs = []
    for prefix, where in (("", "train groups"), ("eval_", "eval")):
        fixed_prefix = "pass@k" if prefix == "" else "eval_pass@k"
        duplicate = single_k is not None and single_k.is_integer() and f"{fixed_prefix}/{int(single_k)}" in fixed_keys
        if not (mixture or duplicate):
            pairs.append((f"{prefix}pkpo/pass@k_at_current_k", f"pass@k at the current k ({where})"))
        if prefix == "":  # max@k is logged for training batches only: after their other estimates
            pairs.append(("pkpo/max@k", "max@k (train groups)"))
    return pairs + fixed


def plot_pass_at_k(log_history: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Write :func:`pass_at_k_figure` of ``log_history`` to ``path`` (a PNG); returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pass_at_k_figure(log_history, title).savefig(path, dpi=120)
    return path


def pass_at_k_figure(log_history: Sequence[dict], title: str | None = None) -> Figure:
    """The pass@k estimates (pass@1, fixed-k ``pass@k/<k>``, max@k, pass@k at the current k where it is a
    quantity of its own), the fraction of prompts solved so far and k against the step, each on its own axis.

    Args:
        log_history: ``trainer.state.log_history`` of a :class:`~pkpo_trl.PKPOTrainer` run.
        title: figure title.
    """
    # A bare Figure, not pyplot: it needs no display and leaves the user's backend (a notebook's) alone.
    fig = Figure(figsize=(7, 7.5))
    ax, ax_solved, ax_k = fig.subplots(3, 1, sharex=True, height_ratios=[3, 1.2, 1])
    for key, label in _estimate_series(log_history):
        steps, values = _series(log_history, key)
        if not steps:
            continue
        if len(steps) >= 2 * _SMOOTH:
            # Per-batch estimates from a few prompts are noisy: show them faintly, with a running mean.
            (line,) = ax.plot(steps, _running_mean(values), label=f"{label}, running mean of {_SMOOTH}")
            ax.plot(steps, values, "o", markersize=2.5, alpha=0.35, color=line.get_color(), label="_nolegend_")
        else:
            ax.plot(steps, values, marker="o", markersize=3, label=label)
    ax.set_ylabel("estimate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, title="dots: each step's estimate", title_fontsize=8)
    ax.set_title(title or "PKPO training")
    steps, values = _series(log_history, "solved/frac_prompts")
    ax_solved.plot(steps, values, marker="o", markersize=3, color="tab:green")
    ax_solved.set_ylabel("prompts solved\nso far (fraction)", fontsize=9)
    ax_solved.set_ylim(-0.02, 1.02)
    ax_solved.grid(alpha=0.3)
    steps, values = _series(log_history, "pkpo/k")
    ax_k.step(steps, values, where="post", color="black")
    ax_k.set_ylabel("mixture's mean k\n(sum_k w_k k)" if _logs_a_mixture(log_history) else "k", fontsize=9)
    ax_k.set_xlabel("optimizer step")
    ax_k.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_pass_at_k_curves(
    results: dict, path: str | Path, title: str | None = None, ylabel: str = "pass@k (unbiased, ±1 s.e. over prompts)"
) -> Path:
    """Plot pass@k against k (log-2 axis), one line per model, with ±1 standard error bands.

    Args:
        results: the output of :func:`pkpo_trl.evaluation.run` (``results.json``): ``settings.ks`` and, per
            model, ``pass@k[k] = {"mean", "se"}``.
        path: the PNG to write.
        title: figure title (default: prompts × samples).
        ylabel: y-axis label (say what the standard errors are over).

    Returns:
        The path written.
    """
    path = Path(path)
    ks = results["settings"]["ks"]
    fig = Figure(figsize=(6.5, 4.5))  # no pyplot: no display needed, the user's backend left alone
    ax = fig.subplots()
    for label, model in results["models"].items():
        means = [model["pass@k"][str(k)]["mean"] for k in ks]
        ses = [model["pass@k"][str(k)]["se"] for k in ks]
        (line,) = ax.plot(ks, means, marker="o", label=label)
        if all(se is not None and se == se for se in ses):  # no band from one prompt (NaN / null)
            lower = [m - s for m, s in zip(means, ses, strict=True)]
            upper = [m + s for m, s in zip(means, ses, strict=True)]
            ax.fill_between(ks, lower, upper, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel(ylabel)
    top = max(line.get_ydata().max() for line in ax.get_lines())
    ax.set_ylim(0, min(1.02, max(0.05, 1.25 * top)))  # zoom in when every pass@k is low
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    if title is None:
        settings = results["settings"]
        title = f"{settings['num_prompts']} prompts × {settings['sampling']['num_samples']} samples"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
