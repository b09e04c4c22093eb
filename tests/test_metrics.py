"""pkpo_trl.metrics: the one rule for the default ks, pass@k with standard errors from success counts, and the
names training and evaluation import from their old homes."""

from __future__ import annotations

import statistics

import pytest
import torch

from pkpo_trl.metrics import default_ks, group_pass_at_k, pass_at_k_with_se


@pytest.mark.parametrize(
    "n, ks", [(1, [1]), (2, [1, 2]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (16, [1, 2, 4, 8, 16])]
)
def test_default_ks_are_the_powers_of_two_up_to_n_and_n(n, ks):
    assert default_ks(n) == ks


def test_pass_at_k_with_se_from_success_counts_agrees_with_the_group_table():
    correct = torch.tensor([0, 3, 8, 1])
    stats = pass_at_k_with_se(correct, 8, [1, 4, 8])
    assert stats["1"]["mean"] == pytest.approx(12 / 32)
    assert stats["1"]["se"] == pytest.approx(statistics.stdev([0, 3 / 8, 1, 1 / 8]) / 2)
    assert stats["8"]["mean"] == pytest.approx(3 / 4)
    groups = (torch.arange(8) < correct[:, None]).double()  # c_p successes in each row
    for k, value in group_pass_at_k(groups, [1, 4, 8]).items():
        assert stats[str(k)]["mean"] == pytest.approx(value)


def test_old_import_locations_still_work():
    import pkpo_trl.metrics as metrics
    from pkpo_trl.callbacks import combine_rewards, group_pass_at_k, prompt_key

    assert (combine_rewards, group_pass_at_k, prompt_key) == (
        metrics.combine_rewards, metrics.group_pass_at_k, metrics.prompt_key,
    )  # fmt: skip
