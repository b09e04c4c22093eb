"""k annealing: schedules for PKPO's k and the callback that applies them.

The paper (Walder & Karkhanis 2025, Sec. 5) trains with a large k early (explore: the pass@k
objective rewards diverse, risk-seeking samples) and a small k late (exploit: pass@1), and reports
strong pass@1 together with higher pass@k. A schedule maps the optimizer step to k.

Schedules are strings, so that a YAML recipe or a command line can hold them:

=================================  ===============================================================
spec                               k at optimizer step ``t`` of ``T`` (``f = t / T``)
=================================  ===============================================================
``"constant:4"``                   4
``"linear:8->1"``                  ``round_half_up(8 + (1 - 8) * f)``
``"cosine:8->1"``                  ``round_half_up(1 + 7 * (1 + cos(pi * f)) / 2)``
``"piecewise:0=8,0.5=4,0.75=1"``   8 for ``f < 0.5``, 4 for ``0.5 <= f < 0.75``, then 1
``"steps:0=8,100=4,200=1"``        the same with breakpoints in optimizer steps
=================================  ===============================================================

k is a pure function of the optimizer step that starts the generation batch (and the total), so a
run resumed from a checkpoint continues the schedule exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .estimators import ESTIMATORS

__all__ = ["KAnnealingCallback", "KSchedule", "check_k_values", "generation_start_step"]

_KINDS = ("constant", "linear", "cosine", "piecewise", "steps")


@dataclass(frozen=True)
class KSchedule:
    """A parsed k schedule; call it with ``(step, max_steps)`` to get k.

    Attributes:
        kind: one of ``constant``, ``linear``, ``cosine``, ``piecewise``, ``steps``.
        points: ``(position, k)`` pairs: for ``linear``/``cosine`` the start and end k at positions
            0 and 1; for ``piecewise`` fractions of training; for ``steps`` optimizer steps.
    """

    kind: str
    points: tuple[tuple[float, int], ...]

    @classmethod
    def parse(cls, spec: str | int) -> KSchedule:
        """Parse a schedule spec (see the module docstring); an int means a constant k."""
        if isinstance(spec, int) and not isinstance(spec, bool):
            return cls("constant", ((0.0, spec),))
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f"k schedule {spec!r} must look like 'KIND:ARGS' with KIND in {_KINDS}")
        kind, _, body = spec.partition(":")
        kind, body = kind.strip().lower(), body.replace(" ", "")
        try:
            if kind == "constant":
                points = ((0.0, _as_k(body)),)
            elif kind in ("linear", "cosine"):
                start, end = body.split("->")
                points = ((0.0, _as_k(start)), (1.0, _as_k(end)))
            elif kind in ("piecewise", "steps"):
                pairs = [item.split("=") for item in body.split(",") if item]
                unsorted = [(float(pos), _as_k(k)) for pos, k in pairs]
                # Before sorting: NaN compares false with everything, so it would land anywhere in the order.
                if not all(math.isfinite(pos) for pos, _ in unsorted):
                    raise ValueError("breakpoints must be finite numbers")
                points = tuple(sorted(unsorted))
                if not points or points[0][0] != 0:
                    raise ValueError("the first breakpoint must be at 0")
                if len({pos for pos, _ in points}) != len(points):
                    raise ValueError("breakpoints must be distinct")
                if kind == "piecewise" and points[-1][0] >= 1:
                    raise ValueError("piecewise breakpoints are fractions of training in [0, 1)")
            else:
                raise ValueError(f"unknown kind {kind!r}, expected one of {_KINDS}")
        except ValueError as err:
            raise ValueError(f"invalid k schedule {spec!r}: {err}") from None
        return cls(kind, points)

    @property
    def values(self) -> tuple[int, ...]:
        """Every k the schedule can produce bounds (for validation against ``num_generations``)."""
        return tuple(k for _, k in self.points)

    def __call__(self, step: int, max_steps: int | None) -> int:
        """k at optimizer step ``step`` of ``max_steps`` (fractions need ``max_steps > 0``)."""
        if self.kind == "constant":
            return self.points[0][1]
        if self.kind == "steps":
            return _last_at_or_before(self.points, step)
        frac = min(max(step / max_steps, 0.0), 1.0) if max_steps else 0.0
        if self.kind == "piecewise":
            return _last_at_or_before(self.points, frac)
        (_, start), (_, end) = self.points
        if self.kind == "linear":
            value = start + (end - start) * frac
        else:
            value = end + (start - end) * (1 + math.cos(math.pi * frac)) / 2
        return math.floor(value + 0.5)  # round half up, not to even


def check_k_values(values, where: str, num_generations: int, estimator: str) -> None:
    """Raise a ValueError naming ``where`` unless every k in ``values`` fits groups of ``num_generations``.

    The range is ``[1, num_generations - m]``, ``m`` being the estimator's ``min_others`` (1 for ``sloo`` and
    ``l2o``, whose baselines need k samples besides the one they score).
    """
    k_max = num_generations - ESTIMATORS[estimator].min_others
    for k in values:
        if not 1 <= k <= k_max:
            raise ValueError(
                f"{where} gives k={k} outside [1, {k_max}]: estimator {estimator!r} with "
                f"num_generations={num_generations} needs 1 <= k <= {k_max} (an unbiased pass@k estimate "
                "needs at least k samples per prompt)"
            )


def _as_k(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"k must be >= 1, got {value}")
    return value


def _last_at_or_before(points: tuple[tuple[float, int], ...], position: float) -> int:
    k = points[0][1]
    for pos, value in points:
        if pos <= position:
            k = value
    return k


class KAnnealingCallback(TrainerCallback):
    """Sets PKPO's k from a schedule at the start of every optimizer step.

    :class:`~pkpo_trl.PKPOTrainer` reads :attr:`k` when it scores a generation batch, which is where
    k enters the transformed rewards. With ``steps_per_generation > 1`` (or ``num_iterations > 1``) one
    batch of completions is scored once and reused for several optimizer steps; k is then the
    schedule's value at the step that starts that batch, :func:`generation_start_step`. That makes k a
    pure function of the step in a resumed run too, even one resumed from a checkpoint in the middle of
    a generation batch. The trainer adds this callback itself when ``PKPOConfig.pkpo_k_schedule`` is
    set; pass one explicitly to override the config's schedule. It is validated against
    ``num_generations`` and the estimator when training starts.

    Args:
        schedule: a :class:`KSchedule` or a spec string such as ``"linear:8->1"``.
    """

    def __init__(self, schedule: KSchedule | str):
        self.schedule = schedule if isinstance(schedule, KSchedule) else KSchedule.parse(schedule)
        self._label = f"KAnnealingCallback({schedule!r})"
        self.k = self.schedule(0, None)

    def _update(self, args: TrainingArguments, state: TrainerState) -> None:
        self.k = self.schedule(generation_start_step(args, state.global_step), state.max_steps)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # A callback passed by the user bypasses PKPOConfig's validation: check it here, against the run's
        # num_generations and estimator, before a step could train with a k the groups cannot support.
        estimator = getattr(args, "pkpo_estimator", "sloo_minus_one")
        check_k_values(self.schedule.values, self._label, args.num_generations, estimator)
        self._update(args, state)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._update(args, state)


def generation_start_step(args: TrainingArguments, step: int) -> int:
    """The optimizer step that starts the generation batch which optimizer step ``step`` trains on.

    GRPOTrainer generates once every ``steps_per_generation * num_iterations`` micro-batches, and an
    optimizer step is ``gradient_accumulation_steps`` micro-batches; without those fields (not a GRPO
    config) every step starts its own batch.
    """
    accumulation = getattr(args, "gradient_accumulation_steps", 1) or 1
    every = (getattr(args, "steps_per_generation", 1) or 1) * (getattr(args, "num_iterations", 1) or 1)
    return (step * accumulation // every) * every // accumulation
