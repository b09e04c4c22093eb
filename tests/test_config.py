"""PKPOConfig validation: every bad setting fails at construction with a message naming it."""

from __future__ import annotations

import pytest
import torch
from helpers import N_GEN, continuous_reward, train
from trl.import_utils import is_vllm_available

from pkpo_trl import PKPOConfig
from pkpo_trl.estimators import transform_rewards


def make(tmp_path, **kwargs) -> PKPOConfig:
    defaults = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, num_generations=8)
    defaults.update(kwargs)
    return PKPOConfig(**defaults)


def test_defaults(tmp_path):
    config = make(tmp_path)
    assert config.pkpo_k == 4
    assert config.pkpo_estimator == "sloo_minus_one"
    assert config.scale_rewards == "batch"
    assert config.pkpo_k_schedule is None and config.pkpo_k_mixture == "harmonic"  # the recommended default


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(pkpo_k=9), r"pkpo_k=9 gives k=9 outside \[1, 8\]"),
        (dict(pkpo_k=0), r"pkpo_k=0 gives k=0 outside \[1, 8\]"),
        (dict(pkpo_k=8, pkpo_estimator="sloo"), r"outside \[1, 7\].*'sloo'"),
        (dict(pkpo_k=8, pkpo_estimator="l2o"), r"outside \[1, 7\].*'l2o'"),
        (dict(pkpo_k=2.5), "pkpo_k must be an integer"),
        (dict(pkpo_estimator="grpo"), "pkpo_estimator='grpo' is unknown"),
        (dict(pkpo_k_schedule="linear:16->1"), r"pkpo_k_schedule='linear:16->1' gives k=16 outside \[1, 8\]"),
        (dict(multi_objective_aggregation="normalize_then_sum"), "multi_objective_aggregation='normalize_then_sum'"),
        (dict(scale_rewards="median"), "scale_rewards='median'"),
        (dict(pkpo_k=4, pkpo_estimator="grpo_passk"), r"pkpo_k=4 gives k=4: estimator 'grpo_passk' is defined only"),
        (dict(pkpo_k_schedule="linear:8->1", pkpo_estimator="grpo_passk"), "defined only for k = num_generations"),
    ],
)
def test_invalid_settings_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **kwargs)


def test_a_malformed_schedule_is_an_error_of_the_config(tmp_path):
    # The parse errors themselves are tested in test_annealing.py; here: PKPOConfig surfaces them.
    with pytest.raises(ValueError, match="unknown kind 'wavy'"):
        make(tmp_path, pkpo_k_schedule="wavy:8->1")


def test_grpo_passk_takes_the_whole_group(tmp_path):
    assert make(tmp_path, pkpo_k=8, pkpo_estimator="grpo_passk").pkpo_k == 8


def test_a_schedule_overrides_pkpo_k_without_it_being_validated(tmp_path):
    # pkpo_k keeps its default 4, which num_generations=2 could not support; the schedule is what is used.
    config = make(tmp_path, num_generations=2, per_device_train_batch_size=2, pkpo_k_schedule="linear:2->1")
    assert config.pkpo_k_schedule == "linear:2->1"
    with pytest.raises(ValueError, match="pkpo_k_schedule='linear:3->1' gives k=3"):
        make(tmp_path, num_generations=2, per_device_train_batch_size=2, pkpo_k_schedule="linear:3->1")


def test_group_scaling_warns(tmp_path):
    with pytest.warns(UserWarning, match="undoes PKPO's relative weighting"):
        make(tmp_path, scale_rewards="group")


def test_boolean_scale_rewards_follow_grpo(tmp_path):
    assert make(tmp_path, scale_rewards=False).scale_rewards == "none"


@pytest.mark.skipif(is_vllm_available(), reason="checks the error path of a machine without vLLM")
def test_use_vllm_without_vllm_is_a_clear_error_before_any_model_loads(tmp_path):
    with pytest.raises(ImportError, match=r"use_vllm=True needs vLLM.*pkpo-trl\[vllm\]"):
        make(tmp_path, use_vllm=True, vllm_mode="colocate")


@pytest.mark.parametrize(
    "field, value", [("loss_type", "dapoo"), ("vllm_mode", "colocated"), ("pkpo_adaptive_k", "x")]
)
def test_a_value_outside_a_fields_fixed_set_is_refused(tmp_path, field, value):
    # TRL compares loss_type only in the first loss, and reads any vllm_mode but "colocate" as "server".
    with pytest.raises(ValueError, match=rf"{field}='{value}'"):
        make(tmp_path, **{field: value})


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("num_generations", 0, "num_generations=0: completions per prompt must be an integer >= 2"),
        ("num_generations_eval", 0, "num_generations_eval=0"),
        ("pkpo_success_threshold", float("nan"), "pkpo_success_threshold=nan must be a finite number"),
        ("pkpo_success_threshold", float("inf"), "pkpo_success_threshold=inf must be a finite number"),
    ],
)
def test_group_size_and_success_threshold_are_checked_before_trl_divides_by_them(tmp_path, field, value, match):
    # num_generations=0 was TRL's ZeroDivisionError; a NaN threshold was accepted and counted nothing as solved.
    with pytest.raises(ValueError, match=match):
        make(tmp_path, **{field: value})


# --------------------------------------------------------------------------------------------------
# The shipped default (issue 20): the recommended mixture when no k option is set; whatever is set wins.


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(), dict(pkpo_k=4, pkpo_k_mixture="harmonic")),  # nothing set: the recommended mixture
        (dict(num_generations=16, per_device_train_batch_size=16), dict(pkpo_k=4, pkpo_k_mixture="harmonic")),
        (dict(num_generations=2), dict(pkpo_k=2, pkpo_k_mixture="harmonic")),
        (dict(num_generations=2, pkpo_estimator="sloo"), dict(pkpo_k=1, pkpo_k_mixture="harmonic")),
        (dict(num_generations=16, per_device_train_batch_size=16, pkpo_adaptive_k="history"), dict(pkpo_k=4)),
        (dict(pkpo_k=4), dict(pkpo_k=4, pkpo_k_mixture=None, pkpo_k_schedule=None)),  # the default before 12-04
        (dict(pkpo_k=8), dict(pkpo_k=8, pkpo_k_mixture=None)),  # the default from 12-04 to 12-07
        (dict(pkpo_k_schedule="linear:8->1"), dict(pkpo_k_schedule="linear:8->1", pkpo_k_mixture=None)),
        (dict(pkpo_adaptive_k="history"), dict(pkpo_adaptive_k="history", pkpo_k=4, pkpo_k_mixture=None)),
        (dict(pkpo_k_mixture="harmonic"), dict(pkpo_k_mixture="harmonic")),
        (dict(pkpo_estimator="maxrl"), dict(pkpo_k_mixture=None)),
        (dict(pkpo_estimator="grpo_passk"), dict(pkpo_k=8, pkpo_k_mixture=None)),
        (dict(pkpo_estimator="l2o"), dict(pkpo_k=4, pkpo_k_mixture="harmonic")),  # the estimator set wins, T = n - 1
        (dict(scale_rewards="group"), dict(scale_rewards="group", pkpo_k_mixture="harmonic")),
    ],
)
def test_what_a_user_sets_wins_over_the_default_k(tmp_path, kwargs, expected):
    config = make(tmp_path, **kwargs)
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    assert make(tmp_path).scale_rewards == "batch" and make(tmp_path).pkpo_estimator == "sloo_minus_one"


def test_the_default_config_trains_with_the_recommended_mixture(tmp_path):
    trainer = train(tmp_path, scale_rewards="none", reward_fn=continuous_reward)
    assert trainer.args.pkpo_k_mixture == "harmonic"
    harmonic = {k: (1 / k) / sum(1 / j for j in range(1, N_GEN + 1)) for k in range(1, N_GEN + 1)}
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        groups = torch.tensor(rewards).view(-1, N_GEN)  # the mixture's advantages: sum_k w_k A^(k)
        expected = sum(w * transform_rewards(groups, k) for k, w in harmonic.items()).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
