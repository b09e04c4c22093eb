"""pkpo_trl.metrics: the one rule for the default ks, and the one pass@k of groups with its standard error."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from pkpo_trl.metrics import default_ks, group_pass_at_k, mean_se


@pytest.mark.parametrize(
    "n, ks", [(1, [1]), (2, [1, 2]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (16, [1, 2, 4, 8, 16])]
)
def test_default_ks_are_the_powers_of_two_up_to_n_and_n(n, ks):
    assert default_ks(n) == ks


def test_group_pass_at_k_with_standard_errors_from_success_counts():
    correct = torch.tensor([0, 3, 8, 1])
    groups = (torch.arange(8) < correct[:, None]).double()  # c_p successes in each row
    stats = group_pass_at_k(groups, [1, 4, 8], se=True)
    assert stats[1]["mean"] == pytest.approx(12 / 32)
    assert stats[1]["se"] == pytest.approx(statistics.stdev([0, 3 / 8, 1, 1 / 8]) / 2)
    assert stats[8]["mean"] == pytest.approx(3 / 4)
    c4 = math.comb(8, 4)  # pass@4 = 1 - C(8-c, 4) / C(8, 4)
    assert stats[4]["mean"] == pytest.approx((0 + (1 - math.comb(5, 4) / c4) + 1 + (1 - math.comb(7, 4) / c4)) / 4)
    assert group_pass_at_k(groups, [1, 4, 8, 16]) == {k: stat["mean"] for k, stat in stats.items()}  # 16 > n: skipped


def test_unscored_completions_and_groups_are_left_out():
    """NaN (unscored) is left out of its group, which uses k' = min(k, n'); a group with none scored is left out of
    the mean and of the standard error; the threshold decides success."""
    nan = math.nan
    groups = torch.tensor([[1.0, 0.0, nan, nan], [nan, nan, nan, nan], [0.5, 0.7, 0.2, 0.9]])
    stats = group_pass_at_k(groups, [1, 4], threshold=0.6, se=True)
    assert stats[1]["mean"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert stats[4]["mean"] == pytest.approx((1 + 1) / 2)  # group 0: k' = n' = 2
    assert stats[1]["se"] == pytest.approx(0.0)
    assert group_pass_at_k(groups, [1, 4], threshold=0.6) == pytest.approx({1: 0.5, 4: 1.0})


def test_mean_se_is_the_mean_and_std_over_sqrt_p():
    assert mean_se([1.0, 2.0, 3.0]) == pytest.approx({"mean": 2.0, "se": 1 / math.sqrt(3)})
    one = mean_se(torch.tensor([0.25]))
    assert one["mean"] == 0.25 and math.isnan(one["se"])
