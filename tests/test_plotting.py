"""The training plot (`pkpo-train` writes it next to the adapter): every quantity once, on an axis of its kind."""

from __future__ import annotations

import math

from helpers import package_imports

from pkpo_trl.plotting import pass_at_k_figure, plot_pass_at_k


def _log(steps: int, mixture: bool, fixed_ks=(1, 2, 4)) -> list[dict]:
    """A log history as PKPOTrainer + PassAtKCallback write it (the keys of a real run of the quickstart)."""
    history = []
    for step in range(1, steps + 1):
        entry = {"step": step, "loss": -0.1, "pkpo/pass@1": 0.5, "pkpo/pass@k_at_current_k": 0.8,
                 "solved/frac_prompts": step / steps, "pkpo/k": 2.94 if mixture else 4.0}  # fmt: skip
        entry.update({f"pass@k/{k}": 1 - 0.5**k for k in fixed_ks})
        if mixture:
            entry.update({f"pkpo/k_mixture/w{k}": 1 / k for k in range(1, 9)})
        history.append(entry)
    return history


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def test_each_quantity_is_in_the_legend_once_and_fractions_have_their_own_axis():
    estimates, solved, k_axis = pass_at_k_figure(_log(10, mixture=True)).axes
    labels = _legend(estimates)
    assert len(labels) == len(set(labels))
    # pkpo/pass@1 and pass@k/1 are the same groups' pass@1: one line; a mixture has no single "current k".
    assert [label.split(" (")[0] for label in labels] == ["pass@1", "pass@2", "pass@4"]
    assert all(line.get_label() in labels or line.get_label() == "_nolegend_" for line in estimates.get_lines())
    (line,) = solved.get_lines()
    assert list(line.get_ydata()) == [step / 10 for step in range(1, 11)]
    assert "fraction" in solved.get_ylabel() and "mean k" in k_axis.get_ylabel()


def test_without_fixed_k_metrics_the_trainers_own_pass_at_1_and_current_k_are_drawn(tmp_path):
    estimates, _, k_axis = pass_at_k_figure(_log(3, mixture=False, fixed_ks=())).axes
    assert _legend(estimates) == ["pass@1 (train groups)", "pass@k at the current k (train groups)"]
    assert k_axis.get_ylabel() == "k"
    history = _log(3, mixture=False, fixed_ks=(1, 4))
    assert _legend(pass_at_k_figure(history).axes[0]) == ["pass@1 (train groups)", "pass@4 (train groups)"]
    history[1]["pkpo/pass@1"] = math.nan  # a step nothing could score: a gap, not a crash
    path = plot_pass_at_k(history, tmp_path / "sub" / "plot.png")
    assert path.stat().st_size > 0


def test_plotting_imports_nothing_of_the_package():
    # The bottom of the import graph: every plot takes its data as arguments (the toy figures once imported
    # pkpo_trl.experiments, which imports plotting).
    assert package_imports("pkpo_trl.plotting") == set()
