"""PKPOTrainer on a real tiny Gemma-2, on CPU: training, the advantages that reach the loss, NaN rewards."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import (  # noqa: F401 - the training helpers lived here; other test files imported them from here
    N_GEN,
    RecordingGRPOTrainer,
    RecordingPKPOTrainer,
    binary_reward,
    continuous_reward,
    prompt_dataset,
    recording,
    train,
)
from trl import GRPOConfig, GRPOTrainer

from pkpo_trl import PKPOConfig, PKPOTrainer, transform_rewards
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2


def test_trains_and_changes_parameters(tmp_path):
    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = train(tmp_path, model=model, pkpo_k=2, max_steps=3)
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p.detach())]
    assert changed, "no parameter changed after 3 PKPO steps"
    logged = {key for entry in trainer.state.log_history for key in entry}
    fixed = ("pkpo/k", "pass@k/1", "pkpo/pass@k_at_current_k", "pkpo/frac_groups_no_success")
    for key in (*fixed, "pkpo/frac_zero_advantage"):
        assert key in logged
    assert "solved/frac_prompts" in logged and "solved/num_prompts" in logged


def test_lora_changes_only_adapter_weights(tmp_path):
    from peft import LoraConfig

    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer))
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
    )
    trainer = train(tmp_path, model=model, peft_config=lora, pkpo_k=2, max_steps=3, learning_rate=1e-1)
    adapter_changed = False
    for name, p in trainer.model.named_parameters():
        if "lora_" in name:
            adapter_changed |= not torch.equal(p.detach(), torch.zeros_like(p)) and p.requires_grad
            continue
        original = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(base[original], p.detach()), f"base weight {name} changed under LoRA"
    lora_b = [p for name, p in trainer.model.named_parameters() if "lora_B" in name]
    assert adapter_changed and any(p.abs().sum() > 0 for p in lora_b), "LoRA B matrices (initialised to 0) never moved"


@pytest.mark.parametrize(
    ("estimator", "k", "reward_fn"),
    [("sloo_minus_one", 2, binary_reward), ("s", 3, continuous_reward), ("l2o", 3, continuous_reward)],
)
def test_advantages_reaching_the_loss_are_the_transform_of_the_rewards(tmp_path, estimator, k, reward_fn):
    trainer = train(tmp_path, pkpo_k=k, pkpo_estimator=estimator, scale_rewards="none", reward_fn=reward_fn)
    # One generation per step, whole generation batch in one loss call (steps_per_generation = 1).
    assert len(trainer.rewards) == len(trainer.loss_advantages) == 2
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        expected = transform_rewards(torch.tensor(rewards).view(-1, N_GEN), k, estimator).view(-1)
        # TRL shuffles the batch after scoring: compare as multisets.
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
        assert seen.abs().sum() > 0, "degenerate check: all advantages were zero"


def test_batch_scaling_divides_by_one_number(tmp_path):
    trainer = train(tmp_path, pkpo_k=2, scale_rewards="batch", reward_fn=continuous_reward)
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        raw = transform_rewards(torch.tensor(rewards).view(-1, N_GEN), 2).view(-1)
        expected = raw / (raw.std() + 1e-4)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-4, atol=1e-5)


def test_k1_is_proportional_to_grpo_advantages(tmp_path):
    pkpo = train(tmp_path / "pkpo", pkpo_k=1, scale_rewards="none")
    grpo = train(tmp_path / "grpo", trainer_cls=RecordingGRPOTrainer, config_cls=GRPOConfig, scale_rewards="none")
    assert pkpo.rewards == grpo.rewards, "same seed and model should sample the same completions"
    for p_adv, g_adv in zip(pkpo.loss_advantages, grpo.loss_advantages, strict=True):
        # RLOO (k = 1): (g_i - mean_{j != i} g_j) / n = (g_i - mean) / (n - 1).
        torch.testing.assert_close(p_adv * (N_GEN - 1), g_adv, rtol=1e-5, atol=1e-6)


def test_unscorable_completions_get_zero_advantage_and_no_nan_loss(tmp_path):
    def sometimes_unscorable(completion_ids, **kwargs):
        values = binary_reward(completion_ids)
        return [None if i % 3 == 0 else (math.nan if i % 3 == 1 else v) for i, v in enumerate(values)]

    trainer = train(tmp_path, pkpo_k=2, scale_rewards="none", reward_fn=sometimes_unscorable, max_steps=2)
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        groups = torch.tensor([math.nan if r is None else r for r in rewards]).view(-1, N_GEN)
        expected = transform_rewards(groups, 2).view(-1)
        assert not torch.isnan(seen).any()
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
        assert (seen == 0).sum() >= 2 * len(rewards) // 3
    assert all(torch.isfinite(loss) for loss in trainer.losses)


def test_plain_grpo_config_is_rejected_with_a_clear_message(tmp_path):
    tokenizer = build_char_tokenizer()
    args = GRPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, num_generations=4)
    with pytest.raises(TypeError, match="needs a PKPOConfig"):
        PKPOTrainer(build_tiny_gemma2(len(tokenizer)), binary_reward, args=args, processing_class=tokenizer)


def test_arguments_can_be_passed_positionally_as_to_grpo_trainer(tmp_path):
    from transformers import TrainerCallback

    class Marker(TrainerCallback):
        pass

    tokenizer = build_char_tokenizer()
    args = PKPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, num_generations=N_GEN, pkpo_k=2)
    marker = Marker()
    # model, reward_funcs, args, train_dataset, eval_dataset, processing_class, reward_processing_classes, callbacks
    trainer = PKPOTrainer(
        build_tiny_gemma2(len(tokenizer)), binary_reward, args, prompt_dataset(), None, tokenizer, None, [marker]
    )
    assert marker in trainer.callback_handler.callbacks


def test_captured_rewards_are_a_copy_of_trls_tensor(tmp_path):
    # A subclass (or a later TRL) that changes the returned reward tensor in place after PKPO has seen it must
    # not change the advantages PKPO computed from it.
    class ZeroesRewardsAfterwards(RecordingPKPOTrainer):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            rewards.zero_()
            return rewards

    trainer = train(tmp_path, trainer_cls=ZeroesRewardsAfterwards, pkpo_k=2, scale_rewards="none")
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        expected = transform_rewards(torch.tensor(rewards).view(-1, N_GEN), 2).view(-1)
        assert expected.abs().sum() > 0
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)


def test_scoring_rewards_twice_per_batch_is_an_error(tmp_path):
    # Stands for a TRL version whose _generate_and_score_completions calls _calculate_rewards a second time:
    # PKPO could not tell which call's rewards the returned batch was built from.
    class ScoresTwice(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            prompts = [x["prompt"] for x in inputs]
            self._calculate_rewards(inputs, prompts, ["x"] * len(inputs), [[5]] * len(inputs))
            return output

    class Trainer(RecordingPKPOTrainer, ScoresTwice):
        pass

    with pytest.raises(RuntimeError, match="_calculate_rewards ran 2 times"):
        train(tmp_path, trainer_cls=Trainer, pkpo_k=2, max_steps=1)


@pytest.mark.parametrize("scale_rewards", ["batch", "group"])
def test_scaling_uses_the_std_of_scored_completions_only(tmp_path, scale_rewards):
    # As TRL's own scaling (nanstd): the zeros forced onto unscorable completions do not shrink the std.
    from trl.trainer.utils import nanstd

    def continuous_sometimes_unscorable(completion_ids, **kwargs):
        return [None if i % 3 == 0 else v for i, v in enumerate(continuous_reward(completion_ids))]

    trainer = train(tmp_path, pkpo_k=2, scale_rewards=scale_rewards, reward_fn=continuous_sometimes_unscorable)
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        groups = torch.tensor([math.nan if r is None else r for r in rewards]).view(-1, N_GEN)
        raw = transform_rewards(groups, 2)
        scored = raw.masked_fill(groups.isnan(), math.nan)
        std = nanstd(scored) if scale_rewards == "batch" else nanstd(scored, dim=1, keepdim=True)
        expected = (raw / (std + 1e-4)).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-4, atol=1e-5)


def test_reward_values_that_are_not_numbers_name_the_function_and_value(tmp_path):
    def string_reward(completion_ids, **kwargs):
        return ["1.0"] * len(completion_ids)

    with pytest.raises(TypeError, match=r"reward function 'string_reward' returned '1\.0' \(str\)"):
        train(tmp_path, reward_fn=string_reward, pkpo_k=2, max_steps=1)


# Renders tool calls and tool results, which TRL requires of a template used with `environment_factory`.
TOOL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
    "{% for call in message.get('tool_calls') or [] %}"
    "{{ call['function']['name'] }}({{ call['function']['arguments'] | tojson }}){% endfor %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def test_prompts_supplied_by_an_environment_are_counted_as_solved(tmp_path, monkeypatch):
    # TRL allows a data set without a `prompt` column when an environment's reset() supplies the prompt.
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")

    class AdditionEnvironment:
        def reset(self, a: int, **kwargs) -> str:
            return f"{a}+{a % 3}="

    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = TOOL_CHAT_TEMPLATE
    args = PKPOConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, num_generations=N_GEN, pkpo_k=2, max_steps=2,
        per_device_train_batch_size=8, max_completion_length=4, logging_steps=1, save_strategy="no",
        gradient_checkpointing=False, seed=0,
    )  # fmt: skip
    trainer = PKPOTrainer(
        build_tiny_gemma2(len(tokenizer)),
        lambda completion_ids, **kwargs: [1.0] * len(completion_ids),  # every prompt solved
        args=args,
        train_dataset=Dataset.from_dict({"a": list(range(16))}),
        processing_class=tokenizer,
        environment_factory=AdditionEnvironment,
    )
    trainer.train()
    # 2 steps x 2 prompts, all distinct, all solved.
    solved = [entry["solved/num_prompts"] for entry in trainer.state.log_history if "solved/num_prompts" in entry]
    assert solved == [2.0, 4.0]


@pytest.mark.parametrize(
    "make",
    [np.bool_, np.int64, np.float32, np.uint8, lambda v: np.array([v]), lambda v: torch.tensor(v)],
    ids=["np.bool_", "np.int64", "np.float32", "np.uint8", "np.ndarray", "torch.Tensor"],
)
def test_every_real_number_type_of_numpy_and_torch_is_a_reward(tmp_path, make):
    # A numpy.bool_ reward was refused while a Python bool was accepted.
    def typed_reward(completion_ids, **kwargs):
        return [make(value) for value in binary_reward(completion_ids)]

    trainer = train(tmp_path, reward_fn=typed_reward, pkpo_k=2, max_steps=1)
    returned = [float(np.asarray(value).item()) for value in trainer.rewards[0]]
    assert returned == list(trainer._logs["rewards"]["typed_reward"])[:8]


@pytest.mark.parametrize("value", [1 + 0j, np.complex64(1), "1", [1.0], np.array([1.0, 0.0])])
def test_a_reward_that_is_not_one_real_number_is_refused_by_type(tmp_path, value):
    def odd_reward(completion_ids, **kwargs):
        return [value] * len(completion_ids)

    with pytest.raises(TypeError, match=rf"reward function 'odd_reward' returned .* \({type(value).__name__}\)"):
        train(tmp_path, reward_fn=odd_reward, pkpo_k=2, max_steps=1)


def test_rewards_of_a_huge_finite_magnitude_scale_like_small_ones(tmp_path):
    # Their float32 variance overflowed to inf and every advantage became 0, silently.
    def huge(completion_ids, **kwargs):
        return [value * 1e30 for value in binary_reward(completion_ids)]

    small = train(tmp_path / "small", reward_fn=binary_reward, pkpo_k=2, max_steps=1)
    large = train(tmp_path / "large", reward_fn=huge, pkpo_k=2, max_steps=1)
    assert small.loss_advantages[0].abs().sum() > 0
    # Equal up to the 1e-4 that the scaling adds to the std (negligible against 1e30).
    torch.testing.assert_close(large.loss_advantages[0], small.loss_advantages[0], rtol=3e-3, atol=3e-3)


def test_a_batch_without_reward_signal_is_warned_about(tmp_path, caplog):
    def constant(completion_ids, **kwargs):
        return [1.0] * len(completion_ids)

    with caplog.at_level(logging.WARNING, logger="pkpo_trl.trainer"):
        train(tmp_path, reward_fn=constant, pkpo_k=2, max_steps=1)
    assert any("step 1 has no reward signal, the rewards are constant" in r.getMessage() for r in caplog.records)
