"""Every plot of the package: a training run's logged PKPO metrics, and pass@k-vs-k curves of `pkpo-eval`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_pass_at_k", "plot_pass_at_k_curves"]


def _series(log_history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry:
            steps.append(entry["step"])
            values.append(entry[key])
    return steps, values


_SMOOTH = 4


def _running_mean(values: list[float]) -> list[float]:
    return [
        sum(values[max(0, i - _SMOOTH + 1) : i + 1]) / len(values[max(0, i - _SMOOTH + 1) : i + 1])
        for i in range(len(values))
    ]


def _fixed_k_keys(log_history: Sequence[dict]) -> list[tuple[str, str]]:
    # PassAtKCallback's fixed-k metrics, `pass@k/<k>` (train) and `eval_pass@k/<k>`, in order of k.
    keys = {key for entry in log_history for key in entry if key.split("/")[0] in ("pass@k", "eval_pass@k")}
    ordered = sorted(keys, key=lambda key: (key.startswith("eval_"), int(key.split("/")[1])))
    return [
        (key, f"pass@{key.split('/')[1]}{' (eval)' if key.startswith('eval_') else ' (train groups)'}")
        for key in ordered
    ]


def plot_pass_at_k(log_history: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Plot pass@1, pass@k at the current k, fixed-k ``pass@k/<k>`` (and max@k, k, fraction of prompts solved
    when logged) against the step.

    Args:
        log_history: ``trainer.state.log_history`` of a :class:`~pkpo_trl.PKPOTrainer` run.
        path: the PNG to write.
        title: figure title.

    Returns:
        The path written.
    """
    path = Path(path)
    fig, (ax, ax_k) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=[3, 1])
    for key, label in [
        ("pkpo/pass@1", "pass@1 (train groups)"),
        ("pkpo/pass@k_at_current_k", "pass@k at the current k (train groups)"),
        ("pkpo/max@k", "max@k (train groups)"),
        ("pkpo/frac_prompts_solved", "prompts solved so far"),
        ("eval_pkpo/pass@1", "pass@1 (eval)"),
        ("eval_pkpo/pass@k_at_current_k", "pass@k at the current k (eval)"),
        *_fixed_k_keys(log_history),
    ]:
        steps, values = _series(log_history, key)
        if not steps:
            continue
        if len(steps) >= 2 * _SMOOTH and "solved" not in key:
            # Per-batch estimates from a few prompts are noisy: show them faintly, with a running mean.
            (line,) = ax.plot(steps, _running_mean(values), label=f"{label}, running mean of {_SMOOTH}")
            ax.plot(steps, values, "o", markersize=2.5, alpha=0.35, color=line.get_color())
        else:
            ax.plot(steps, values, marker="o", markersize=3, label=label)
    ax.set_ylabel("estimate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "PKPO training")
    steps, values = _series(log_history, "pkpo/k")
    ax_k.step(steps, values, where="post", color="black")
    ax_k.set_ylabel("k")
    ax_k.set_xlabel("optimizer step")
    ax_k.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pass_at_k_curves(results: dict, path: str | Path, title: str | None = None) -> Path:
    """Plot pass@k against k (log-2 axis), one line per model, with ±1 standard error bands.

    Args:
        results: the output of :func:`pkpo_trl.evaluate.run` (``results.json``): ``settings.ks`` and, per
            model, ``pass@k[k] = {"mean", "se"}``.
        path: the PNG to write.
        title: figure title (default: prompts × samples).

    Returns:
        The path written.
    """
    path = Path(path)
    ks = results["settings"]["ks"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
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
    ax.set_ylabel("pass@k (unbiased, ±1 s.e. over prompts)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    sampling = results["settings"]["sampling"]
    ax.set_title(title or f"{results['settings']['num_prompts']} prompts × {sampling['num_samples']} samples")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
