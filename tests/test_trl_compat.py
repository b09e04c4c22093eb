"""The TRL internals PKPOTrainer relies on. If a TRL upgrade moves them, these fail loudly here
instead of a run silently training with GRPO's advantages.

The real checks are behavioural: the advantages that reach TRL's loss are the PKPO transform of the rewards TRL
gathered, here for every way GRPOTrainer batches (evaluation groups of ``num_generations_eval``, a generation
batch reused over ``num_iterations``, split over ``gradient_accumulation_steps`` or ``steps_per_generation``),
in ``test_trainer.py`` for plain training and in ``test_distributed.py`` for two processes."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib

import pytest
import torch
from datasets import Dataset
from helpers import N_GEN, ROOT, continuous_reward, marked_block, train
from packaging.requirements import Requirement
from trl import GRPOTrainer, __version__

from pkpo_trl import PKPOTrainer, transform_rewards


def _trl_requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "trl")


def test_trl_version_is_in_the_supported_range():
    # The installed TRL is one pyproject.toml allows: CI's main suite gets the newest, the oldest-TRL job the lowest.
    assert _trl_requirement().specifier.contains(__version__), (__version__, str(_trl_requirement().specifier))


def test_the_oldest_trl_command_installs_the_lowest_allowed_trl():
    # README's oldest-TRL test command (run by .ci/run) pins exactly the lower bound of pyproject.toml's range.
    lower = next(spec.version for spec in _trl_requirement().specifier if spec.operator == ">=")
    command = marked_block("oldest-trl-test-command", "bash")[1]
    assert re.findall(r"trl==([0-9][0-9.]*)", command) == [lower], command


def test_override_points_exist_with_the_expected_signatures():
    rewards = inspect.signature(GRPOTrainer._calculate_rewards)
    assert list(rewards.parameters) == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    score = inspect.signature(GRPOTrainer._generate_and_score_completions)
    assert list(score.parameters) == ["self", "inputs"]


def test_pkpo_trainer_overrides_only_the_documented_points():
    own = {name for name, value in vars(PKPOTrainer).items() if callable(value) and hasattr(GRPOTrainer, name)}
    assert own == {"__init__", "_calculate_rewards", "_generate_and_score_completions"}


def test_every_private_trl_name_the_package_uses_is_there_after_a_training_step(tmp_path):
    from pkpo_trl.trainer import TRL_PRIVATE_NAMES

    trainer = train(tmp_path, max_steps=1)
    missing = [name for name in TRL_PRIVATE_NAMES if not hasattr(trainer, name)]
    assert not missing, f"GRPOTrainer no longer has {missing}"
    assert {"prompt", "rewards", "advantages"} <= set(trainer._logs)
    assert isinstance(trainer._buffered_inputs, list) and isinstance(trainer._step, int)


def test_the_constructor_binds_its_arguments_as_grpo_trainers_does():
    # PKPOTrainer forwards everything to GRPOTrainer.__init__, bound to its signature: a keyword GRPOTrainer does
    # not know is refused as by GRPOTrainer itself.
    with pytest.raises(TypeError, match="unexpected keyword argument 'train_datasett'"):
        PKPOTrainer("model", None, None, train_datasett=None)


class EventRecorder(PKPOTrainer):
    """Records, in order, each scored generation batch (mode and gathered rewards) and each loss call's advantages."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[list] = []

    def _generate_and_score_completions(self, inputs):
        self.events.append(["batch", "train" if self.model.training else "eval", None])
        return super()._generate_and_score_completions(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.events[-1][2] = rewards[:, 0].tolist()
        return rewards

    def _compute_loss(self, model, inputs):
        self.events.append(["loss", inputs["advantages"].detach().clone()])
        return super()._compute_loss(model, inputs)


def _batches(trainer) -> list[tuple[str, list[float], list[torch.Tensor]]]:
    """(mode, gathered rewards, advantages of each loss call) per generation batch, from the recorded events."""
    batches = []
    for event in trainer.events:
        if event[0] == "batch":
            batches.append((event[1], event[2], []))
        else:
            batches[-1][2].append(event[1])
    return batches


def assert_loss_sees_the_transform(trainer, k: int, n_eval: int = N_GEN, reuses: int = 1) -> dict[str, int]:
    """Each batch's loss calls, together, see the transform of its gathered rewards (``reuses`` times in
    training: num_iterations). Returns the number of batches per mode."""
    counts = {"train": 0, "eval": 0}
    for mode, rewards, losses in _batches(trainer):
        n = N_GEN if mode == "train" else n_eval
        expected = transform_rewards(torch.tensor(rewards).view(-1, n), min(k, n)).view(-1)
        expected = expected.repeat(reuses if mode == "train" else 1)
        seen = torch.cat(losses)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
        assert seen.abs().sum() > 0, "degenerate check: all advantages were zero"
        counts[mode] += 1
    return counts


def test_evaluation_groups_of_num_generations_eval_get_the_transform_with_a_k_they_support(tmp_path):
    eval_dataset = Dataset.from_dict({"prompt": [f"{i}*{i}=" for i in range(4)]})
    trainer = train(
        tmp_path, trainer_cls=EventRecorder, reward_fn=continuous_reward, scale_rewards="none", pkpo_k=3,
        eval_dataset=eval_dataset, num_generations_eval=2, per_device_eval_batch_size=8, eval_strategy="steps",
        eval_steps=2, max_steps=2,
    )  # fmt: skip
    assert assert_loss_sees_the_transform(trainer, k=3, n_eval=2) == {"train": 2, "eval": 1}
    # Groups of 2 support k <= 2: evaluation says which k it used.
    assert [e["eval_pkpo/k"] for e in trainer.state.log_history if "eval_pkpo/k" in e] == [2.0]


@pytest.mark.parametrize(
    ("setting", "batches", "reuses"),
    [
        (dict(num_iterations=2), 2, 2),  # each generation batch trains 2 optimizer steps, whole
        (dict(gradient_accumulation_steps=2), 4, 1),  # one batch per step, split over 2 micro-batches
        (dict(steps_per_generation=2), 2, 1),  # one batch per 2 optimizer steps, half each
    ],
    ids=["num_iterations", "gradient_accumulation_steps", "steps_per_generation"],
)
def test_reused_and_split_generation_batches_reach_the_loss_as_the_transform(tmp_path, setting, batches, reuses):
    trainer = train(
        tmp_path, trainer_cls=EventRecorder, reward_fn=continuous_reward, scale_rewards="none", pkpo_k=2,
        max_steps=4, **setting,
    )  # fmt: skip
    assert trainer.state.global_step == 4
    assert assert_loss_sees_the_transform(trainer, k=2, reuses=reuses) == {"train": batches, "eval": 0}


def test_a_whole_group_estimator_scores_evaluation_groups_of_another_size_whole(tmp_path):
    # grpo_passk is defined only for k = n: training groups use k = num_generations, evaluation groups of
    # num_generations_eval (here larger) their own size, not the training k that such groups cannot take.
    eval_dataset = Dataset.from_dict({"prompt": [f"{i}*{i}=" for i in range(4)]})
    trainer = train(
        tmp_path, trainer_cls=EventRecorder, reward_fn=continuous_reward, scale_rewards="none", pkpo_k=N_GEN,
        pkpo_estimator="grpo_passk", eval_dataset=eval_dataset, num_generations_eval=2 * N_GEN,
        per_device_eval_batch_size=2 * N_GEN, eval_strategy="steps", eval_steps=2, max_steps=2,
    )  # fmt: skip
    for mode, rewards, losses in _batches(trainer):
        n = N_GEN if mode == "train" else 2 * N_GEN
        expected = transform_rewards(torch.tensor(rewards).view(-1, n), n, "grpo_passk").view(-1)
        torch.testing.assert_close(torch.cat(losses).sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
    assert [e["eval_pkpo/k"] for e in trainer.state.log_history if "eval_pkpo/k" in e] == [2.0 * N_GEN]


def test_a_training_step_raises_no_future_warning(tmp_path):
    """transformers >= 5.25 deprecates the gradient-checkpointing names TRL 1.16 uses (config.py hides those two
    messages): no other FutureWarning may come out of a PKPOConfig and a training step. Every FutureWarning is an
    error in this subprocess, so a new deprecation fails here first."""
    script = f"""
import datasets
from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2
tokenizer = build_char_tokenizer()
args = PKPOConfig({str(tmp_path)!r}, per_device_train_batch_size=4, num_generations=4, max_completion_length=3,
                  max_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no", pkpo_k=2)
trainer = PKPOTrainer(build_tiny_gemma2(len(tokenizer)), args=args,
                      reward_funcs=lambda completions, **kw: [float(len(c) % 2) for c in completions],
                      train_dataset=datasets.Dataset.from_dict({{"prompt": ["1+1="] * 4}}),
                      processing_class=tokenizer)
trainer.train()
"""
    result = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_trls_generated_model_card_cites_the_pkpo_paper(tmp_path):
    # TRL's BaseTrainer.create_model_card reads _name, _tag_names and _paper (title, id, citation); GRPOTrainer's
    # _paper is DeepSeekMath's, which PKPOTrainer must not inherit.
    from types import SimpleNamespace

    assert PKPOTrainer._paper.keys() == GRPOTrainer._paper.keys() and PKPOTrainer._paper["id"] == "2505.15201"
    trainer = SimpleNamespace(
        is_world_process_zero=lambda: True, model=SimpleNamespace(config=SimpleNamespace(_name_or_path="tiny")),
        hub_model_id=None, args=SimpleNamespace(output_dir=str(tmp_path)), _tag_names=PKPOTrainer._tag_names,
        _name=PKPOTrainer._name, _paper=PKPOTrainer._paper,
        _template_file=getattr(PKPOTrainer, "_template_file", None),
    )  # fmt: skip
    PKPOTrainer.create_model_card(trainer)
    card = (tmp_path / "README.md").read_text()
    assert "Pass@K Policy Optimization" in card and "2505.15201" in card and "walder2025pkpo" in card
    assert "DeepSeekMath" not in card
