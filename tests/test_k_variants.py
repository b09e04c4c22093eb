"""Mixtures of k and adaptive k (issue 14), said through the one ``pkpo_k`` spec: PKPOConfig validation, mixture
schedules, and what reaches PKPOTrainer's loss. The estimator math (per-group k, mixtures, unbiasedness) is in
test_per_group_k.py."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import N_GEN, binary_reward, continuous_reward, prompt_dataset, train

from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.estimators import ESTIMATORS, k_from_success_rate, transform_rewards, transform_rewards_mixture
from pkpo_trl.k import KCallback, KMixture, KSpec
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

# --------------------------------------------------------------------------------------------------
# Config.


def make(tmp_path, **kwargs) -> PKPOConfig:
    defaults = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, num_generations=8)
    defaults.update(kwargs)
    return PKPOConfig(**defaults)


def test_valid_mixture_and_adaptive_configs(tmp_path):
    assert make(tmp_path, pkpo_k="1:0.5,8:0.5").k_spec().mixture(0, None).as_dict() == {1: 0.5, 8: 0.5}
    blend = make(tmp_path, pkpo_k="linear:8:1->1:1").k_spec()
    assert blend.mixture(5, 10).as_dict() == {1: 0.5, 8: 0.5} and not blend.one_k
    spec = make(tmp_path, pkpo_k="adaptive:2..8").k_spec()
    assert (spec.adaptive_min, spec.values) == (2, (8,))
    capped = make(tmp_path, pkpo_k="adaptive:1..linear:8->2").k_spec()
    assert capped.adaptive_min == 1 and [capped.mixture(step, 6).ks for step in (0, 6)] == [(8,), (2,)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(pkpo_k="1:0.5,9:0.5"), r"uses k=9, but the estimator and group size allow 1 <= k <= 8"),
        (dict(pkpo_k="1:1,8:1", pkpo_estimator="l2o"), r"uses k=8, but .* allow 1 <= k <= 7"),
        (dict(pkpo_k="linear:16->1"), r"uses k=16, but"),
        (dict(pkpo_k="1:-0.5,8:1"), "finite and >= 0"),
        (dict(pkpo_k="1:0,8:0"), "sum to > 0"),
        (dict(pkpo_k="1:a"), "'1:a' is not a k spec"),
        (dict(pkpo_k="piecewise:0.5=8"), "first breakpoint must be at 0"),
        (dict(pkpo_k="steps:0=8;nan=1"), "breakpoints must be finite"),
        (dict(pkpo_k="steps:inf=1;0=8"), "breakpoints must be finite"),
        (dict(pkpo_k="adaptive:1..1:0.5,8:0.5"), "the cap of adaptive k is one k or a k schedule"),
        (dict(pkpo_k="loo:8"), "'loo:8' is not a k spec"),
        (dict(pkpo_k="adaptive:1..8", pkpo_estimator="grpo_passk"), "defined for k < n"),
        (dict(pkpo_k="adaptive:0..8"), "k must be >= 1, got 0"),
        (dict(pkpo_k="adaptive:3..2"), "the smallest k exceeds the cap 2"),
    ],
)
def test_invalid_mixture_and_adaptive_settings_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **kwargs)


# --------------------------------------------------------------------------------------------------
# Mixtures and their schedules.


def test_mixture_parsing_normalises_and_merges():
    assert KMixture.parse("1:1,8:3").terms == ((1, 0.25), (8, 0.75))
    assert KMixture.parse("8").terms == KSpec.parse(8).mixture(0, None).terms == ((8, 1.0),)
    assert KMixture.from_weights({4: 2.0, 1: 0.0}).terms == ((4, 1.0),)
    assert KMixture.parse("1:1,8:1,1:2").as_dict() == {1: 0.75, 8: 0.25}
    assert KMixture.parse("1:0.25,8:0.75").mean_k == pytest.approx(6.25)
    assert KMixture.parse("1:0.25,4:0.25,8:0.5").capped(1, 4).as_dict() == {1: 0.25, 4: 0.75}
    for bad in ("", "0:1", "1:inf", "1.5:1"):
        with pytest.raises(ValueError):
            KMixture.parse(bad)


@pytest.mark.parametrize(
    ("spec", "total", "expected"),
    [
        ("1:0.5,8:0.5", 10, [{1: 0.5, 8: 0.5}] * 3),
        ("constant:4", 10, [{4: 1.0}] * 3),
        ("linear:8:1->1:1", 10, [{8: 1.0}, {1: 0.5, 8: 0.5}, {1: 1.0}]),
        ("linear:8->1", 10, [{8: 1.0}, {5: 1.0}, {1: 1.0}]),  # two plain ks: k interpolated, rounded half up
        ("cosine:8->1:0.5,8:0.5", 10, [{8: 1.0}, {1: 0.25, 8: 0.75}, {1: 0.5, 8: 0.5}]),
        ("piecewise:0=8;0.5=1:0.5,8:0.5;0.9=1", 10, [{8: 1.0}, {1: 0.5, 8: 0.5}, {1: 1.0}]),
        ("steps:0=8;5=4:1,1:1;10=1", 10, [{8: 1.0}, {1: 0.5, 4: 0.5}, {1: 1.0}]),
    ],
)
def test_mixture_schedule_values(spec, total, expected):
    schedule = KSpec.parse(spec)
    for step, want in zip((0, 5, 10), expected, strict=True):
        got = schedule.mixture(step, total).as_dict()
        assert got.keys() == want.keys() and all(math.isclose(got[k], w) for k, w in want.items()), (step, got)


# --------------------------------------------------------------------------------------------------
# The trainer.


def test_mixture_advantages_reach_the_loss_and_are_logged(tmp_path):
    mixture = {1: 0.25, 3: 0.75}
    trainer = train(tmp_path, pkpo_k="1:0.25,3:0.75", scale_rewards="none", reward_fn=continuous_reward)
    assert len(trainer.rewards) == len(trainer.loss_advantages) == 2
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        groups = torch.tensor(rewards).view(-1, N_GEN)
        expected = transform_rewards_mixture(groups, mixture).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
        single = transform_rewards(groups, 3).view(-1)
        assert not torch.allclose(seen.sort().values, single.sort().values), "degenerate: mixture == k=3 alone"
    logged = [entry for entry in trainer.state.log_history if "pkpo/k" in entry]
    assert logged and all(entry["pkpo/k"] == pytest.approx(2.5) for entry in logged)
    # A constant mixture's weights are the spec itself: only a scheduled one logs them.
    assert not any(key.startswith("pkpo/k_mixture/") for entry in logged for key in entry)


def test_mixture_weights_logged_for_smaller_evaluation_groups_are_those_applied_and_sum_to_one(tmp_path):
    # Evaluation groups of 2 cap the scheduled mixture 1:0.5,4:0.5 to {1: 0.5, 2: 0.5}; w4 was logged as the merged
    # weight (a mixture summing to more than 1), for a k the groups cannot take. (A constant mixture logs no weights.)
    from datasets import Dataset

    trainer = train(
        tmp_path, pkpo_k=f"steps:0=1:0.5,{N_GEN}:0.5;100=1", scale_rewards="none", max_steps=2,
        eval_dataset=Dataset.from_dict({"prompt": [f"{i}*{i}=" for i in range(4)]}), num_generations_eval=2,
        per_device_eval_batch_size=8, eval_strategy="steps", eval_steps=2,
    )  # fmt: skip
    logged = [e for e in trainer.state.log_history if "eval_pkpo/k_mixture/w1" in e]
    assert len(logged) == 1
    weights = {k: logged[0].get(f"eval_pkpo/k_mixture/w{k}") for k in (1, 2, N_GEN)}
    assert weights == pytest.approx({1: 0.5, 2: 0.5, N_GEN: 0.0})
    train_logged = [e for e in trainer.state.log_history if f"pkpo/k_mixture/w{N_GEN}" in e]
    assert train_logged and train_logged[0][f"pkpo/k_mixture/w{N_GEN}"] == pytest.approx(0.5)


def test_mixture_schedule_is_applied_per_step(tmp_path):
    # linear:4:1->1:1 over 2 steps: step 0 is pass@4 alone, step 1 is half pass@4, half pass@1.
    trainer = train(tmp_path, pkpo_k=f"linear:{N_GEN}:1->1:1", scale_rewards="none", max_steps=2)
    assert any(isinstance(c, KCallback) for c in trainer.callback_handler.callbacks)
    mixtures = [{N_GEN: 1.0}, {1: 0.5, N_GEN: 0.5}]
    for rewards, seen, mixture in zip(trainer.rewards, trainer.loss_advantages, mixtures, strict=True):
        expected = transform_rewards_mixture(torch.tensor(rewards).view(-1, N_GEN), mixture).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
    logged = [entry["pkpo/k_mixture/w1"] for entry in trainer.state.log_history if "pkpo/k_mixture/w1" in entry]
    assert logged == pytest.approx([0.0, 0.5])


def test_adaptive_k_uses_each_prompts_previous_success_rate(tmp_path):
    """pkpo_k="adaptive:1..4": replay the rule from the recorded prompts and rewards (k from the prompt's
    success rate at its previous visit, the cap for unseen prompts) and check that exactly those per-group
    k reached the loss; the second epoch's groups have a history, and some get k below the cap."""
    visits: list[list[str]] = []

    def reward(completion_ids, prompts, **kwargs):
        visits.append(list(prompts))
        return binary_reward(completion_ids)

    reward.__name__ = "parity"
    trainer = train(
        tmp_path,
        reward_fn=reward,
        pkpo_k=f"adaptive:1..{N_GEN}",
        scale_rewards="none",
        max_steps=10,  # 16 prompts, 2 per step: steps 9-10 revisit 4 of them
    )
    history: dict[str, float] = {}
    ks_used = []
    for prompts, rewards, seen in zip(visits, trainer.rewards, trainer.loss_advantages, strict=True):
        groups = torch.tensor(rewards).view(-1, N_GEN)
        keys = prompts[::N_GEN]
        ks = k_from_success_rate(torch.tensor([history.get(p, math.nan) for p in keys]), 1, N_GEN)
        expected = transform_rewards(groups, ks).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
        history.update(zip(keys, groups.mean(-1).tolist()))
        ks_used += ks.tolist()
    assert set(ks_used) > {N_GEN}, f"degenerate: every group used k = the cap ({ks_used})"
    logged = [entry["pkpo/k"] for entry in trainer.state.log_history if "pkpo/k" in entry]
    assert min(logged) < N_GEN


# --------------------------------------------------------------------------------------------------
# One way to say k (issue 22): a k is a one-term mixture, a fixed k a constant schedule, one k source.


def test_the_k_range_rule_is_the_estimators(tmp_path):
    assert ESTIMATORS["sloo_minus_one"].k_range(8) == (1, 8)
    assert ESTIMATORS["sloo"].k_range(8) == ESTIMATORS["l2o"].k_range(8) == (1, 7)
    assert ESTIMATORS["grpo_passk"].k_range(8) == (8, 8)
    assert ESTIMATORS["sloo"].k_range(1) == (1, 0)  # no k: a group of one has no others
    for name in ("sloo_minus_one", "sloo", "grpo_passk"):
        assert make(tmp_path, pkpo_estimator=name).k_range() == ESTIMATORS[name].k_range(8)


def test_a_mixture_for_an_estimator_defined_only_for_the_whole_group_is_refused_by_the_config(tmp_path):
    # It passed the config and failed at the first scored batch.
    with pytest.raises(ValueError, match=r"pkpo_k='1:0.5,8:0.5' uses k=1, but .* allow k = 8 only"):
        make(tmp_path, pkpo_estimator="grpo_passk", pkpo_k="1:0.5,8:0.5")
    assert make(tmp_path, pkpo_estimator="grpo_passk", pkpo_k="8:1").k_spec().values == (8,)
    assert make(tmp_path, pkpo_estimator="grpo_passk").k_spec().values == (8,)  # a bare "harmonic" spans k = n


@pytest.mark.parametrize(
    ("as_k", "as_mixture"),
    [
        (dict(pkpo_k="steps:0=4,1=2"), dict(pkpo_k="steps:0=4:1;1=2:1")),
        (dict(pkpo_k=3), dict(pkpo_k="constant:3:1")),
    ],
)
def test_a_k_and_the_same_k_as_a_one_term_mixture_train_identically(tmp_path, as_k, as_mixture):
    runs = [train(tmp_path / name, scale_rewards="none", **kw) for name, kw in (("k", as_k), ("m", as_mixture))]
    (k_run, mixture_run) = runs
    assert len(k_run.loss_advantages) == len(mixture_run.loss_advantages) == 2
    for a, b in zip(k_run.loss_advantages, mixture_run.loss_advantages, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    k_logged, m_logged = ([e["pkpo/k"] for e in run.state.log_history if "pkpo/k" in e] for run in runs)
    assert k_logged == m_logged and len(set(k_logged)) == (2 if "steps" in str(as_k["pkpo_k"]) else 1)
    assert not any(key.startswith("pkpo/k_mixture/") for run in runs for e in run.state.log_history for key in e)


def build_trainer(tmp_path, **config) -> PKPOTrainer:
    args = PKPOConfig(output_dir=str(tmp_path), num_generations=N_GEN, per_device_train_batch_size=N_GEN,
                      use_cpu=True, report_to="none", **config)  # fmt: skip
    tokenizer = build_char_tokenizer()
    return PKPOTrainer(build_tiny_gemma2(len(tokenizer)), binary_reward, args=args, train_dataset=prompt_dataset(),
                       processing_class=tokenizer)  # fmt: skip


def test_the_trainer_holds_one_k_source(tmp_path):
    fixed = build_trainer(tmp_path, pkpo_k=3)
    assert fixed.k_source.spec.kind == "constant" and fixed.k_source.mixture.as_dict() == {3: 1.0}
    default = build_trainer(tmp_path)  # the harmonic mixture over every k the group allows
    assert default.k_source.mixture == KMixture.harmonic(N_GEN) and default.k_source.spec.text == "harmonic"
    schedule = build_trainer(tmp_path, pkpo_k="linear:3->1")
    assert schedule.k_source.mixture.as_dict() == {3: 1.0}
    assert sum(isinstance(c, KCallback) for c in schedule.callback_handler.callbacks) == 1
