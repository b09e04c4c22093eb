"""PKPOConfig validation: every bad setting fails at construction with a message naming it."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import N_GEN, continuous_reward, train
from trl import GRPOConfig
from trl.import_utils import is_vllm_available

from pkpo_trl import PKPOConfig
from pkpo_trl.estimators import transform_rewards


def make(tmp_path, **kwargs) -> PKPOConfig:
    defaults = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, num_generations=8)
    defaults.update(kwargs)
    return PKPOConfig(**defaults)


def test_defaults(tmp_path):
    config = make(tmp_path)
    assert (
        config.pkpo_k == "harmonic" and config.pkpo_estimator == "sloo_minus_one" and config.scale_rewards == "batch"
    )
    assert config.k_spec().points[0][1].ks == tuple(range(1, 9))  # a bare harmonic spans the estimator's k range


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(pkpo_k=9), r"pkpo_k=9.*uses k=9, but the estimator and group size allow 1 <= k <= 8"),
        (dict(pkpo_k=0), r"pkpo_k=0 is not a k spec \(k must be >= 1"),
        (dict(pkpo_k=8, pkpo_estimator="sloo"), r"allow 1 <= k <= 7"),
        (dict(pkpo_k=8, pkpo_estimator="l2o"), r"allow 1 <= k <= 7"),
        (dict(pkpo_k=2.5), "pkpo_k must be an int or a string"),
        (dict(pkpo_k="linear:16->1"), r"pkpo_k='linear:16->1' uses k=16"),
        (dict(pkpo_k="1:0.5,9:0.5"), r"uses k=9"),
        (dict(pkpo_k="adaptive:5..4"), "the smallest k exceeds the cap 4"),
        (dict(pkpo_k="adaptive:1..1:0.5,4:0.5"), "the cap of adaptive k is one k or a k schedule"),
        (dict(pkpo_k=4, pkpo_estimator="grpo_passk"), r"uses k=4, but the estimator and group size allow k = 8 only"),
        (dict(pkpo_k="linear:8->1", pkpo_estimator="grpo_passk"), "allow k = 8 only"),
        (dict(pkpo_k="adaptive:1..8", pkpo_estimator="grpo_passk"), "adaptive k needs an estimator defined for k < n"),
        (dict(pkpo_k=4, pkpo_estimator="maxrl"), "has no k"),
        (dict(pkpo_estimator="nope"), "pkpo_estimator='nope' is unknown"),
        (dict(multi_objective_aggregation="normalize_then_sum"), "is not supported by PKPO"),
    ],
)
def test_invalid_settings_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("pkpo_k_schedule", "pkpo_k='linear:8->1'"),
        ("pkpo_k_mixture", "pkpo_k='1:0.5,8:0.5'"),
        ("pkpo_adaptive_k", "pkpo_k='adaptive:1..8'"),
        ("pkpo_adaptive_k_min", "pkpo_k='adaptive:2..8'"),
    ],
)
def test_a_removed_k_field_is_refused_with_its_new_spelling(tmp_path, old, new):
    with pytest.raises(TypeError, match=rf"PKPOConfig has no {old} any more: k is one option, e.g. {re.escape(new)}"):
        make(tmp_path, **{old: "x"})


def test_grpo_passk_takes_the_whole_group(tmp_path):
    assert make(tmp_path, pkpo_estimator="grpo_passk").k_spec().values == (8,)  # the default spans k = n alone
    assert make(tmp_path, pkpo_k=8, pkpo_estimator="grpo_passk").k_spec().values == (8,)


def test_a_string_from_the_command_line_and_an_int_from_python_are_the_same_k(tmp_path):
    assert make(tmp_path, pkpo_k="4").k_spec().points == make(tmp_path, pkpo_k=4).k_spec().points


def test_the_grpo_baseline_config_keeps_the_runs_options_and_trls_defaults(tmp_path):
    config = make(tmp_path, pkpo_k=4, learning_rate=1e-3, num_generations=4, per_device_train_batch_size=8)
    baseline = config.to_grpo_config()
    assert type(baseline) is GRPOConfig and baseline.scale_rewards == GRPOConfig.scale_rewards == "group"
    assert (baseline.learning_rate, baseline.num_generations, baseline.per_device_train_batch_size) == (1e-3, 4, 8)
    assert make(tmp_path, scale_rewards="none").to_grpo_config().scale_rewards == "none"


def test_group_scaling_warns_when_the_trainer_applies_it(tmp_path):
    with pytest.warns(UserWarning, match="undoes PKPO's relative weighting"):
        train(tmp_path, max_steps=1, scale_rewards="group")


def test_boolean_scale_rewards_follow_grpo(tmp_path):
    assert make(tmp_path, scale_rewards=False).scale_rewards == "none"


@pytest.mark.skipif(is_vllm_available(), reason="checks the error path of a machine without vLLM")
def test_use_vllm_without_vllm_is_a_clear_error_before_any_model_loads(tmp_path):
    with pytest.raises(ImportError, match=r"use_vllm=True needs vLLM.*pkpo-trl\[vllm\]"):
        make(tmp_path, use_vllm=True, vllm_mode="colocate")


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
# The shipped default (issue 20): the harmonic mixture.


def test_the_default_config_trains_with_the_recommended_mixture(tmp_path):
    trainer = train(tmp_path, scale_rewards="none", reward_fn=continuous_reward)
    assert trainer.args.pkpo_k == "harmonic"
    harmonic = {k: (1 / k) / sum(1 / j for j in range(1, N_GEN + 1)) for k in range(1, N_GEN + 1)}
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        groups = torch.tensor(rewards).view(-1, N_GEN)  # the mixture's advantages: sum_k w_k A^(k)
        expected = sum(w * transform_rewards(groups, k) for k, w in harmonic.items()).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
