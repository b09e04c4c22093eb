"""PassAtKCallback: the same fixed-k pass@k, equal to a brute-force count, from PKPOTrainer and TRL's GRPOTrainer."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.callbacks import PassAtKCallback
from pkpo_trl.metrics import combine_rewards, group_pass_at_k
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

N_GEN = 4
KS = (1, 2, 4, 8)  # 8 > N_GEN: never logged
# One batch of 2 prompts x 4 completions per call; scripted, so both trainers see the same rewards whatever they
# sample. Group (prompt) successes: 1/4 and 3/4, then 0/4 and 4/4, then (eval) 2/4 and 1/4.
SCRIPT = [
    [1, 0, 0, 0, 1, 1, 0, 1],
    [0, 0, 0, 0, 1, 1, 1, 1],
    [0, 1, 1, 0, 0, 0, 1, 0],
]


def brute_force_pass_at_k(successes: list[int], k: int) -> float:
    """The fraction of k-subsets of a group that hold at least one success (the definition of pass@k)."""
    subsets = list(itertools.combinations(successes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def expected(batch: list[int], k: int) -> float:
    groups = [batch[i : i + N_GEN] for i in range(0, len(batch), N_GEN)]
    return sum(brute_force_pass_at_k(g, k) for g in groups) / len(groups)


def scripted_reward(seen: list[list[str]]):
    calls = iter(SCRIPT)

    def scripted(prompts, completions, **kwargs) -> list[float]:
        batch = next(calls)
        assert len(batch) == len(completions)
        seen.append(list(prompts))
        return [float(r) for r in batch]

    return scripted


def run(trainer_cls, config_cls, attach_after: bool, seen: list[list[str]]):
    tokenizer = build_char_tokenizer()
    data = Dataset.from_dict({"prompt": [f"{i}+{i}=" for i in range(8)]})
    args = config_cls(
        output_dir="unused", per_device_train_batch_size=8, per_device_eval_batch_size=8, num_generations=N_GEN,
        max_completion_length=4, max_steps=2, learning_rate=1e-2, report_to="none", logging_steps=1,
        save_strategy="no", use_cpu=True, seed=0, gradient_checkpointing=False,
    )  # fmt: skip
    callback = PassAtKCallback(ks=KS)
    trainer = trainer_cls(
        build_tiny_gemma2(len(tokenizer)),
        scripted_reward(seen),
        args=args,
        train_dataset=data,
        eval_dataset=data.select(range(2)),
        processing_class=tokenizer,
        callbacks=None if attach_after else [callback],
    )
    if attach_after:
        callback.attach(trainer)
    # one PassAtKCallback, the one given: PKPOTrainer adds its default one only when none is given
    assert [c for c in trainer.callback_handler.callbacks if isinstance(c, PassAtKCallback)] == [callback]
    trainer.train()
    trainer.evaluate()
    return trainer.state.log_history


def fixed_k_logs(history: list[dict]) -> list[dict]:
    keep = ("pass@k/", "solved/")
    return [
        {k: v for k, v in entry.items() if any(p in k for p in keep)}
        for entry in history
        if any(p in k for k in entry for p in keep)
    ]


def brute_force_solved(seen: list[list[str]]) -> list[float]:
    """Distinct prompts with a success so far, after each training batch."""
    solved: set[str] = set()
    counts = []
    for prompts, batch in zip(seen[:2], SCRIPT[:2], strict=True):
        solved |= {prompt for prompt, reward in zip(prompts, batch, strict=True) if reward}
        counts.append(float(len(solved)))
    return counts


def test_pkpo_and_grpo_log_the_same_fixed_k_pass_at_k_equal_to_brute_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen_pkpo: list[list[str]] = []
    seen_grpo: list[list[str]] = []
    pkpo = fixed_k_logs(run(PKPOTrainer, PKPOConfig, attach_after=False, seen=seen_pkpo))  # attached by PKPOTrainer
    grpo = fixed_k_logs(run(GRPOTrainer, GRPOConfig, attach_after=True, seen=seen_grpo))
    assert seen_pkpo == seen_grpo and pkpo == grpo
    solved = brute_force_solved(seen_pkpo)
    want = [
        {
            **{f"pass@k/{k}": expected(batch, k) for k in KS if k <= N_GEN},
            "solved/num_prompts": count,
            "solved/frac_prompts": count / 8,
        }
        for batch, count in zip(SCRIPT[:2], solved, strict=True)
    ]
    want.append({f"eval_pass@k/{k}": expected(SCRIPT[2], k) for k in KS if k <= N_GEN})
    assert len(pkpo) == 3
    for got, exp in zip(pkpo, want, strict=True):
        assert got.keys() == exp.keys()
        for key in exp:
            assert got[key] == pytest.approx(exp[key], abs=1e-6), key


def test_pass_at_k_of_combined_weighted_rewards_drops_unscored():
    # Two functions, weights 1 and 0.5: combined 1.0 succeeds, 0.5 fails; a NaN row is left out of its group.
    per_func = torch.tensor([[1.0, 0.0], [0.0, 1.0], [float("nan"), float("nan")], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    got = group_pass_at_k(combine_rewards(per_func, torch.tensor([1.0, 0.5])).view(-1, 3), ks=[1, 2, 3])
    # group 1: scored [1, 0] -> pass@1 = 1/2, pass@2 = 1 (pass@3 uses k' = n' = 2); group 2: [1, 0, 0]
    assert got[1] == pytest.approx((0.5 + 1 / 3) / 2)
    assert got[2] == pytest.approx((1.0 + brute_force_pass_at_k([1, 0, 0], 2)) / 2)
    assert got[3] == pytest.approx(1.0)


def test_pkpo_trainer_attaches_a_default_callback(tmp_path):
    tokenizer = build_char_tokenizer()
    args = PKPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=N_GEN, pkpo_k=2,
        report_to="none", use_cpu=True, save_strategy="no",
    )  # fmt: skip
    data = Dataset.from_dict({"prompt": ["1+1="] * 4})
    trainer = PKPOTrainer(build_tiny_gemma2(len(tokenizer)), scripted_reward([]), args=args, train_dataset=data,
                          processing_class=tokenizer)  # fmt: skip
    (callback,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, PassAtKCallback)]
    assert callback.trainer is trainer and callback.ks == [1, 4, 8, 16]
    assert type(trainer)._calculate_rewards is PKPOTrainer._calculate_rewards  # the callback patches nothing
    assert "_calculate_rewards" not in vars(trainer)


def test_callback_refuses_to_run_unattached(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tokenizer = build_char_tokenizer()
    args = GRPOConfig(
        output_dir="unused", per_device_train_batch_size=4, num_generations=N_GEN, max_completion_length=2,
        max_steps=1, report_to="none", use_cpu=True, save_strategy="no",
    )  # fmt: skip
    trainer = GRPOTrainer(
        build_tiny_gemma2(len(tokenizer)),
        lambda completions, **kw: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["1+1="] * 4}),
        processing_class=tokenizer,
        callbacks=[PassAtKCallback(ks=(1,))],
    )
    with pytest.raises(RuntimeError, match="attach"):
        trainer.train()
    with pytest.raises(ValueError, match="positive integers"):
        PassAtKCallback(ks=(0, 2))


def test_pkpo_train_logs_fixed_k_pass_at_k_for_the_grpo_baseline_too(tmp_path, tiny_model_dir):
    # (`--trainer pkpo` is checked by tests/test_quickstart.py, which finds `pass@k/8` in the real run's log.)
    from pkpo_trl.train import parse_args, run

    recipe = Path(__file__).parent / "data" / "tiny_recipe.yaml"
    argv = [
        "--config", str(recipe), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "run"),
        "--trainer", "grpo", "--plot", "false", "--pass_at_ks", "1", "2", "4", "8",
    ]  # fmt: skip
    trainer = run(*parse_args(argv))
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert {"pass@k/1", "pass@k/2", "pass@k/4"} <= entry.keys() and "pass@k/8" not in entry  # 4 per group
        assert not any(key.startswith("pkpo/") for key in entry)
        assert 0.0 <= entry["pass@k/1"] <= entry["pass@k/2"] <= entry["pass@k/4"] <= 1.0
