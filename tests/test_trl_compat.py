"""The TRL internals PKPOTrainer relies on. If a TRL upgrade moves them, these fail loudly here
instead of a run silently training with GRPO's advantages."""

from __future__ import annotations

import inspect

from packaging.version import Version
from trl import GRPOTrainer, __version__

from pkpo_trl import PKPOTrainer


def test_trl_version_is_in_the_supported_range():
    assert Version("1.16.0") <= Version(__version__) < Version("1.17"), __version__


def test_override_points_exist_with_the_expected_signatures():
    rewards = inspect.signature(GRPOTrainer._calculate_rewards)
    assert list(rewards.parameters) == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    score = inspect.signature(GRPOTrainer._generate_and_score_completions)
    assert list(score.parameters) == ["self", "inputs"]


def test_grpo_computes_advantages_from_gathered_rewards_and_returns_them():
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    # Advantages are built from the output of _calculate_rewards (all processes) ...
    assert "rewards_per_func = self._calculate_rewards(" in source
    # ... sliced to this process by index * len(prompts) ...
    assert "self.accelerator.process_index * len(prompts)" in source
    # ... and handed to the loss under this key.
    assert '"advantages": advantages' in source
    loss_source = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'inputs["advantages"]' in loss_source


def test_pkpo_trainer_overrides_only_the_documented_points():
    own = {name for name, value in vars(PKPOTrainer).items() if callable(value) and hasattr(GRPOTrainer, name)}
    assert own == {"__init__", "_calculate_rewards", "_generate_and_score_completions"}


def test_pkpo_trainer_signature_is_grpo_trainers():
    # Parameter names, order, kinds, defaults and annotations: a GRPO script's call works unchanged.
    assert inspect.signature(PKPOTrainer.__init__) == inspect.signature(GRPOTrainer.__init__)
