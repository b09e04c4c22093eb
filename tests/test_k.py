"""The one k spec (pkpo_k): parsing, its values per step, and inside real PKPOTrainer runs (with resume), where
every former k option trains exactly as it did under its old spelling (stored advantages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import N_GEN, train

from pkpo_trl import KSpec


def ks(spec, total):
    parsed = KSpec.parse(spec)
    return [parsed.mixture(step, total).ks[0] for step in range(total)]


@pytest.mark.parametrize(
    ("spec", "total", "expected"),
    [
        ("constant:3", 10, [3] * 10),
        ("linear:8->1", 7, [8, 7, 6, 5, 4, 3, 2]),
        ("cosine:8->1", 4, [8, 7, 5, 2]),
        ("piecewise:0=8,0.5=4,0.75=1", 8, [8, 8, 8, 8, 4, 4, 1, 1]),
        ("steps:0=4,2=3,5=1", 7, [4, 4, 3, 3, 3, 1, 1]),
    ],
)
def test_schedule_values(spec, total, expected):
    assert ks(spec, total) == expected


def test_linear_schedule_reaches_its_end_value():
    assert KSpec.parse("linear:8->1").mixture(100, 100).ks == (1,)


def test_int_is_a_constant_schedule():
    assert KSpec.parse(5).values == (5,) == KSpec.parse("5").values


@pytest.mark.parametrize("spec", ["8->1", "linear:8", "steps:0=a", "steps:0=2,0=3", "piecewise:0=2,1=3", "constant:0"])
def test_malformed_schedules_raise(spec):
    with pytest.raises(ValueError, match="is not a k spec"):
        KSpec.parse(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("piecewise:0=4,0.5=0", "k must be >= 1"),
        ("wavy:8->1", "invalid literal for int"),
        ("piecewise:0.2=4", "first breakpoint must be at 0"),
    ],
)
def test_malformed_schedules_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        KSpec.parse(spec)


@pytest.mark.parametrize(
    "spec",
    ["steps:0=8,nan=2", "steps:nan=2,0=8", "steps:0=8,inf=2", "steps:0=8,-inf=2", "piecewise:0=8,nan=2"],
)
def test_breakpoints_that_are_not_finite_numbers_raise_in_any_order(spec):
    with pytest.raises(ValueError, match="breakpoints must be finite"):
        KSpec.parse(spec)


def record_k_at_scoring(trainer_cls):
    """A subclass that notes (optimizer step, k) each time a generation batch is scored."""

    class Recording(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.k_at_scoring = []

        def _generate_and_score_completions(self, inputs):
            self.k_at_scoring.append((self.state.global_step, max(self.k_source.mixture.ks)))
            return super()._generate_and_score_completions(inputs)

    return Recording


def test_callback_sets_k_at_scheduled_steps_with_reused_generation_batches(tmp_path):
    from helpers import RecordingPKPOTrainer

    trainer_cls = record_k_at_scoring(RecordingPKPOTrainer)
    # steps_per_generation=2: one generation batch is scored every 2 optimizer steps and reused.
    trainer = train(
        tmp_path,
        trainer_cls=trainer_cls,
        max_steps=6,
        per_device_train_batch_size=4,
        steps_per_generation=2,
        pkpo_k="steps:0=4,2=3,4=1",
    )
    assert trainer.k_at_scoring == [(0, 4), (2, 3), (4, 1)]
    logged = [entry["pkpo/k"] for entry in trainer.state.log_history if "pkpo/k" in entry]
    assert logged and set(logged) <= {4.0, 3.0, 1.0}


def test_schedule_survives_save_and_resume(tmp_path):
    from helpers import RecordingPKPOTrainer

    schedule = f"linear:{N_GEN}->1"
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, pkpo_k=schedule)
    trainer_cls = record_k_at_scoring(RecordingPKPOTrainer)
    full = train(tmp_path / "a", trainer_cls=trainer_cls, **common)
    assert [k for _, k in full.k_at_scoring] == [4, 3, 3, 2]  # round(4 - 3 * t / 4)

    # Resume the same configuration from its step-2 checkpoint: k continues from step 2, not step 0.
    resumed = train(
        tmp_path / "a",
        trainer_cls=trainer_cls,
        resume=str(tmp_path / "a" / "out" / "checkpoint-2"),
        **common,
    )
    assert resumed.k_at_scoring == [(2, 3), (3, 2)]


def test_resuming_mid_generation_batch_trains_every_step_with_the_uninterrupted_runs_k(tmp_path):
    from helpers import RecordingPKPOTrainer

    class RecordKPerStep(RecordingPKPOTrainer):
        """Notes, for each optimizer step, the k its generation batch was scored with."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.k_per_step = {}

        def _generate_and_score_completions(self, inputs):
            self.batch_k = max(self.k_source.mixture.ks)
            return super()._generate_and_score_completions(inputs)

        def _compute_loss(self, model, inputs):
            self.k_per_step[self.state.global_step] = self.batch_k
            return super()._compute_loss(model, inputs)

    def run(**kwargs):
        return train(
            tmp_path / "a",
            trainer_cls=RecordKPerStep,
            max_steps=6,
            per_device_train_batch_size=4,
            steps_per_generation=2,  # one generation batch per 2 optimizer steps ...
            save_strategy="steps",
            save_steps=3,  # ... and a checkpoint in the middle of one
            pkpo_k="steps:0=4,2=3,3=2,4=1",
            **kwargs,
        )

    full = run()
    # Batches start at steps 0, 2, 4: each step trains with the k of the step that started its batch.
    assert full.k_per_step == {0: 4, 1: 4, 2: 3, 3: 3, 4: 1, 5: 1}
    resumed = run(resume=str(tmp_path / "a" / "out" / "checkpoint-3"))
    assert resumed.k_per_step == {3: 3, 4: 1, 5: 1}


@pytest.mark.parametrize(
    ("spec", "step", "total", "expected"),
    [
        ("harmonic:4", 0, 10, {1: 12 / 25, 2: 6 / 25, 3: 4 / 25, 4: 3 / 25}),
        ("1:1,8:3", 0, 10, {1: 0.25, 8: 0.75}),
        ("linear:8:1->1:1", 5, 10, {1: 0.5, 8: 0.5}),  # ends written as mixtures blend their weights
        ("linear:8->1", 5, 10, {5: 1.0}),  # plain ends: k interpolated (4.5) and rounded half up
        ("cosine:8->1:0.5,8:0.5", 10, 10, {1: 0.5, 8: 0.5}),
        ("steps:0=8;3=1:0.5,8:0.5", 2, 10, {8: 1.0}),
        ("steps:0=8;3=1:0.5,8:0.5", 3, 10, {1: 0.5, 8: 0.5}),
        ("piecewise:0=8,0.5=4,0.75=1", 6, 8, {1: 1.0}),
        ("adaptive:2..linear:8->2", 10, 10, {2: 1.0}),  # the cap
    ],
)
def test_each_kind_of_spec_gives_its_mixture(spec, step, total, expected):
    mixture = KSpec.parse(spec).mixture(step, total).as_dict()
    assert mixture.keys() == expected.keys() and all(mixture[k] == pytest.approx(w) for k, w in expected.items())


def test_adaptive_k_keeps_its_smallest_k_and_its_cap():
    spec = KSpec.parse("adaptive:2..8")
    assert (spec.adaptive_min, spec.values) == (2, (8,))
    assert KSpec.parse("adaptive:8").adaptive_min == 1


def test_a_bare_harmonic_needs_the_group_size():
    with pytest.raises(ValueError, match="needs the group size"):
        KSpec.parse("harmonic")
    assert KSpec.parse("harmonic", (1, 3)).values == (1, 2, 3)


STORED = json.loads((Path(__file__).parent / "data" / "k_spec_advantages.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", STORED["cases"], ids=[case["spec"] for case in STORED["cases"]])
def test_each_former_k_option_trains_as_before_under_its_new_spelling(tmp_path, case):
    # The advantages were recorded with the former options (case["former"]) before they were merged into pkpo_k.
    trainer = train(tmp_path, max_steps=10, pkpo_k=case["spec"])
    assert len(trainer.loss_advantages) == len(case["advantages"])
    for seen, stored in zip(trainer.loss_advantages, case["advantages"], strict=True):
        torch.testing.assert_close(seen, torch.tensor(stored, dtype=seen.dtype), rtol=0, atol=0)
