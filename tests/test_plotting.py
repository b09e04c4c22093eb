"""The training plot (`pkpo-train` writes it next to the adapter): every quantity once, on an axis of its kind."""

from __future__ import annotations

import math

import pytest
from helpers import package_imports

from pkpo_trl.k import KMixture
from pkpo_trl.plotting import pass_at_k_figure, plot_pass_at_k

HARMONIC = KMixture.harmonic(8)


def _log(steps: int, k: str, fixed_ks=(1, 2, 4)) -> list[dict]:
    """A log history as PKPOTrainer and its PassAtKCallback write it (the keys of a real run of the quickstart):
    ``k`` is ``"fixed"`` (pkpo_k=4), ``"mixture"`` (the default harmonic mixture: ``pkpo/k`` is its mean k, the
    weights are not logged since they never change) or ``"scheduled"`` (a mixture schedule: its weights are logged)."""
    history = []
    for step in range(1, steps + 1):
        entry = {"step": step, "loss": -0.1, "pkpo/pass@k_at_current_k": 0.8, "solved/frac_prompts": step / steps,
                 "pkpo/k": 4.0 if k == "fixed" else HARMONIC.mean_k}  # fmt: skip
        entry.update({f"pass@k/{k}": 1 - 0.5**k for k in fixed_ks})
        if k == "scheduled":
            entry.update({f"pkpo/k_mixture/w{k}": w for k, w in HARMONIC.terms})
        history.append(entry)
    return history


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


@pytest.mark.parametrize("k", ["mixture", "scheduled"])
def test_each_quantity_is_in_the_legend_once_and_fractions_have_their_own_axis(k):
    estimates, solved, k_axis = pass_at_k_figure(_log(10, k)).axes
    labels = _legend(estimates)
    assert len(labels) == len(set(labels))
    # pass@k/1 is the one pass@1; a mixture has no single "current k".
    assert [label.split(" (")[0] for label in labels] == ["pass@1", "pass@2", "pass@4"]
    assert all(line.get_label() in labels or line.get_label() == "_nolegend_" for line in estimates.get_lines())
    (line,) = solved.get_lines()
    assert list(line.get_ydata()) == [step / 10 for step in range(1, 11)]
    assert "fraction" in solved.get_ylabel() and "mean k" in k_axis.get_ylabel()


def test_a_fixed_k_is_drawn_once_and_a_gap_is_no_crash(tmp_path):
    estimates, _, k_axis = pass_at_k_figure(_log(3, "fixed", fixed_ks=(1, 2))).axes
    # k = 4 is not among the fixed-k series: pass@k at the current k is a quantity of its own.
    assert _legend(estimates) == [
        "pass@k at the current k (train groups)", "pass@1 (train groups)", "pass@2 (train groups)",
    ]  # fmt: skip
    assert k_axis.get_ylabel() == "k"
    history = _log(3, "fixed", fixed_ks=(1, 4))
    assert _legend(pass_at_k_figure(history).axes[0]) == ["pass@1 (train groups)", "pass@4 (train groups)"]
    history[1]["pass@k/1"] = math.nan  # a step nothing could score: a gap, not a crash
    path = plot_pass_at_k(history, tmp_path / "sub" / "plot.png")
    assert path.stat().st_size > 0


def test_plotting_imports_nothing_of_the_package():
    # The bottom of the import graph: every plot takes its data as arguments (the toy figures once imported
    # pkpo_trl.experiments, which imports plotting).
    assert package_imports("pkpo_trl.plotting") == set()
