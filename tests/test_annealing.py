"""k schedules and KAnnealingCallback, in isolation and inside a real PKPOTrainer run (with resume)."""

from __future__ import annotations

import pytest
from helpers import N_GEN, train

from pkpo_trl import KAnnealingCallback, KSchedule


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
    schedule = KSchedule.parse(spec)
    assert [schedule(step, total) for step in range(total)] == expected


def test_linear_schedule_reaches_its_end_value():
    assert KSchedule.parse("linear:8->1")(100, 100) == 1


def test_int_is_a_constant_schedule():
    assert KSchedule.parse(5).values == (5,)


@pytest.mark.parametrize("spec", ["8->1", "linear:8", "steps:0=a", "steps:0=2,0=3", "piecewise:0=2,1=3", "constant:0"])
def test_malformed_schedules_raise(spec):
    with pytest.raises(ValueError, match="k schedule|must look like"):
        KSchedule.parse(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("piecewise:0=4,0.5=0", "k must be >= 1"),
        ("wavy:8->1", "unknown kind 'wavy'"),
        ("piecewise:0.2=4", "first breakpoint must be at 0"),
    ],
)
def test_malformed_schedules_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        KSchedule.parse(spec)


@pytest.mark.parametrize(
    "spec",
    ["steps:0=8,nan=2", "steps:nan=2,0=8", "steps:0=8,inf=2", "steps:0=8,-inf=2", "piecewise:0=8,nan=2"],
)
def test_breakpoints_that_are_not_finite_numbers_raise_in_any_order(spec):
    with pytest.raises(ValueError, match="breakpoints must be finite"):
        KSchedule.parse(spec)


def record_k_at_scoring(trainer_cls):
    """A subclass that notes (optimizer step, k) each time a generation batch is scored."""

    class Recording(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.k_at_scoring = []

        def _generate_and_score_completions(self, inputs):
            self.k_at_scoring.append((self.state.global_step, self.pkpo_k))
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
        pkpo_k_schedule="steps:0=4,2=3,4=1",
    )
    assert trainer.k_at_scoring == [(0, 4), (2, 3), (4, 1)]
    logged = [entry["pkpo/k"] for entry in trainer.state.log_history if "pkpo/k" in entry]
    assert logged and set(logged) <= {4.0, 3.0, 1.0}


def test_explicit_callback_overrides_config(tmp_path):
    from helpers import RecordingPKPOTrainer

    trainer_cls = record_k_at_scoring(RecordingPKPOTrainer)
    trainer = train(
        tmp_path,
        trainer_cls=trainer_cls,
        max_steps=2,
        callbacks=[KAnnealingCallback("constant:1")],
        pkpo_k_schedule="constant:3",
    )
    assert [k for _, k in trainer.k_at_scoring] == [1, 1]


def test_schedule_survives_save_and_resume(tmp_path):
    from helpers import RecordingPKPOTrainer

    schedule = f"linear:{N_GEN}->1"
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, pkpo_k_schedule=schedule)
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


def test_a_users_callback_is_validated_against_num_generations_at_train_start(tmp_path):
    # Without this check, the eval-group clamp would train with k = num_generations = 4 instead of 9.
    with pytest.raises(ValueError, match=r"KAnnealingCallback.*gives k=9 outside \[1, 4\].*num_generations=4"):
        train(tmp_path, max_steps=1, callbacks=[KAnnealingCallback("constant:9")])


def test_a_users_callback_is_validated_against_the_estimator(tmp_path):
    with pytest.raises(ValueError, match=r"gives k=4 outside \[1, 3\]: estimator 'sloo'"):
        train(tmp_path, max_steps=1, pkpo_k=2, pkpo_estimator="sloo", callbacks=[KAnnealingCallback("linear:4->1")])


def test_resuming_mid_generation_batch_trains_every_step_with_the_uninterrupted_runs_k(tmp_path):
    from helpers import RecordingPKPOTrainer

    class RecordKPerStep(RecordingPKPOTrainer):
        """Notes, for each optimizer step, the k its generation batch was scored with."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.k_per_step = {}

        def _generate_and_score_completions(self, inputs):
            self.batch_k = self.pkpo_k
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
            pkpo_k_schedule="steps:0=4,2=3,3=2,4=1",
            **kwargs,
        )

    full = run()
    # Batches start at steps 0, 2, 4: each step trains with the k of the step that started its batch.
    assert full.k_per_step == {0: 4, 1: 4, 2: 3, 3: 3, 4: 1, 5: 1}
    resumed = run(resume=str(tmp_path / "a" / "out" / "checkpoint-3"))
    assert resumed.k_per_step == {3: 3, 4: 1, 5: 1}
