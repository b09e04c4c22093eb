"""k annealing and mixtures of k: one schedule type, whose value is a k mixture, and one callback that applies it.

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

Those are :class:`KSchedule`'s (an int k per step: a schedule of one-term mixtures, interpolated k rounded);
:class:`KMixtureSchedule` holds mixtures ``sum_k w_k pass@k`` and blends their weights. A fixed ``pkpo_k`` is a
constant schedule. :class:`KMixtureCallback` applies either kind (:class:`KAnnealingCallback` is its int-k
spelling). k is a pure function of the optimizer step that starts the generation batch (and the total), so a
run resumed from a checkpoint continues the schedule exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .estimators import ESTIMATORS

__all__ = [
    "KAnnealingCallback",
    "KMixture",
    "KMixtureCallback",
    "KMixtureSchedule",
    "KSchedule",
    "check_k_values",
    "generation_start_step",
]

_KINDS = ("constant", "linear", "cosine", "piecewise", "steps")


@dataclass(frozen=True)
class KMixture:
    """A mixture of k, ``{k: w_k}`` with the weights normalised to sum to 1 (``"1:1,8:1"`` is ``"1:0.5,8:0.5"``).

    The objective is ``sum_k w_k pass@k`` and its unbiased gradient weights are ``A = sum_k w_k A^(k)``
    (:func:`pkpo_trl.estimators.transform_rewards_mixture`).

    Attributes:
        terms: ``(k, w_k)`` pairs, k ascending, every ``w_k > 0``, ``sum_k w_k = 1``.
    """

    terms: tuple[tuple[int, float], ...]

    @classmethod
    def parse(cls, spec: str | int | dict[int, float] | KMixture, k_max: int | None = None) -> KMixture:
        """``"1:0.5,8:0.5"`` (``k:weight`` pairs; weights >= 0, summing to > 0, normalised here), ``"8"`` or ``8``
        (one k, weight 1), a ``{k: weight}`` dict, or ``"harmonic:T"`` / ``"harmonic"`` (:meth:`harmonic`; without
        ``T``, ``T = k_max``, the largest k the estimator allows for the group size)."""
        if isinstance(spec, KMixture):
            return spec
        if isinstance(spec, str) and spec.replace(" ", "").lower().partition(":")[0] == HARMONIC:
            return cls.harmonic(_harmonic_size(spec, k_max))
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = {spec: 1.0}
        elif isinstance(spec, str):
            try:
                pairs = [item.split(":") if ":" in item else (item, "1") for item in spec.replace(" ", "").split(",")]
                weights: dict[int, float] = {}
                for k, w in pairs:
                    weights[_as_k(k)] = weights.get(_as_k(k), 0.0) + float(w)
            except ValueError as err:
                raise ValueError(f"invalid k mixture {spec!r} (expected e.g. '1:0.5,8:0.5'): {err}") from None
            spec = weights
        if not isinstance(spec, dict) or not spec:
            raise ValueError(f"a k mixture is 'k:weight,...', an int or a {{k: weight}} dict, got {spec!r}")
        spec = {k: float(w) for k, w in spec.items()}
        for k, w in spec.items():
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"k mixture keys must be integers >= 1, got {k!r} in {spec!r}")
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"k mixture weights must be finite and >= 0, got {w} for k={k} in {spec!r}")
        total = math.fsum(spec.values())
        if total <= 0:
            raise ValueError(f"k mixture weights must sum to > 0, got {spec!r}")
        return cls(tuple((k, w / total) for k, w in sorted(spec.items()) if w > 0))

    @classmethod
    def harmonic(cls, size: int) -> KMixture:
        """``w_k = (1/k) / H_T`` for ``k = 1..T`` (``H_T = sum_k 1/k``): the objective ``sum_{k<=T} pass@k / k``,
        MaxRL's truncated maximum-likelihood objective (Tajwar et al., arXiv 2602.02710: ``grad log p = sum_k (1/k)
        grad pass@k``), up to the constant ``H_T``. Its PKPO transform is an unbiased gradient of it, for any
        baseline the estimator has, and through max@k it applies to continuous rewards as well."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"a harmonic k mixture needs an integer T >= 1, got {size!r}")
        return cls.parse({k: 1.0 / k for k in range(1, size + 1)})

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(k for k, _ in self.terms)

    @property
    def mean_k(self) -> float:
        """``sum_k w_k k``, logged as ``pkpo/k``."""
        return math.fsum(k * w for k, w in self.terms)

    def as_dict(self) -> dict[int, float]:
        return dict(self.terms)

    def capped(self, k_max: int, k_min: int = 1) -> KMixture:
        """Every k above ``k_max`` replaced by ``k_max`` (smaller eval groups), and every k below ``k_min`` by it."""
        out: dict[int, float] = {}
        for k, w in self.terms:
            out[min(max(k, k_min), k_max)] = out.get(min(max(k, k_min), k_max), 0.0) + w
        return KMixture(tuple(sorted(out.items())))

    def __str__(self) -> str:
        return ",".join(f"{k}:{w:g}" for k, w in self.terms)


HARMONIC = "harmonic"


def _harmonic_size(spec: str, k_max: int | None) -> int:
    """T of ``"harmonic:T"``, or ``k_max`` for a bare ``"harmonic"``."""
    _, _, size = spec.replace(" ", "").partition(":")
    if not size:
        if k_max is None:
            raise ValueError(f"k mixture {spec!r}: say its size, 'harmonic:T' (e.g. 'harmonic:8'), or give k_max")
        return k_max
    try:
        return _as_k(size)
    except ValueError:
        raise ValueError(f"invalid k mixture {spec!r}: expected 'harmonic' or 'harmonic:T' with T >= 1") from None


def _blend(a: KMixture, b: KMixture, t: float) -> KMixture:
    """``(1 - t) * a + t * b``, weight by weight."""
    out = {k: (1 - t) * w for k, w in a.terms}
    for k, w in b.terms:
        out[k] = out.get(k, 0.0) + t * w
    return KMixture(tuple((k, w) for k, w in sorted(out.items()) if w > 0))


def _one_k(k: int) -> KMixture:
    """The one-term mixture of ``k`` (weight 1)."""
    return KMixture(((k, 1.0),))


@dataclass(frozen=True)
class KMixtureSchedule:
    """A schedule of k mixtures; call it with ``(step, max_steps)`` to get the :class:`KMixture` in use.

    Specs (``f = t / T`` the fraction of training, as for :class:`KSchedule`):

    ====================================  ==============================================================
    spec                                  mixture at step ``t``
    ====================================  ==============================================================
    ``"1:0.5,8:0.5"``                     constant (also ``"constant:1:0.5,8:0.5"``)
    ``"linear:8->1"``                     ``(1 - f) * [8] + f * [1]``: weight moves from pass@8 to pass@1
    ``"cosine:8->1:0.5,8:0.5"``           the same blend with ``f`` replaced by ``(1 - cos(pi f)) / 2``
    ``"piecewise:0=8;0.5=1:0.5,8:0.5"``   breakpoints at fractions of training, separated by ``;``
    ``"steps:0=8;100=1"``                 breakpoints in optimizer steps
    ``"harmonic"``, ``"harmonic:8"``      ``w_k ∝ 1/k``, k = 1..T (:meth:`KMixture.harmonic`; T = ``k_max``)
    ====================================  ==============================================================

    ``linear``/``cosine`` blend the weights continuously: no rounding of k, every step optimises an exact
    mixture objective (annealing k from 8 to 1 without jumps).
    """

    kind: str
    points: tuple[tuple[float, KMixture], ...]
    _verb = "uses"  # in a range error: "<label> uses k=9 outside [1, 8]"

    @classmethod
    def parse(cls, spec: str | int | KMixture, k_max: int | None = None) -> KMixtureSchedule:
        """Parse a spec (table above); ``k_max`` is the size of a bare ``"harmonic"`` mixture in it."""
        if isinstance(spec, (int, KMixture)) and not isinstance(spec, bool):
            return cls("constant", ((0.0, KMixture.parse(spec)),))
        if not isinstance(spec, str):
            raise ValueError(f"k mixture schedule {spec!r} must be a string such as '1:0.5,8:0.5' or 'linear:8->1'")
        kind, _, body = spec.partition(":")
        kind = kind.strip().lower()
        if kind not in _KINDS:  # a bare mixture
            kind, body = "constant", spec
        return cls._parse_points(spec, kind, body, ";", lambda text: KMixture.parse(text, k_max), "k mixture schedule")

    @classmethod
    def _parse_points(cls, spec: str, kind: str, body: str, sep: str, value: Callable, what: str):
        """The schedule of ``kind`` whose breakpoints (separated by ``sep``) ``body`` holds, each read by ``value``."""
        body = body.replace(" ", "")
        try:
            if kind == "constant":
                points = ((0.0, value(body)),)
            elif kind in ("linear", "cosine"):
                start, end = body.split("->")
                points = ((0.0, value(start)), (1.0, value(end)))
            elif kind in ("piecewise", "steps"):
                pairs = [item.split("=", 1) for item in body.split(sep) if item]
                points = _breakpoints(kind, [(float(pos), value(v)) for pos, v in pairs])
            else:
                raise ValueError(f"unknown kind {kind!r}, expected one of {_KINDS}")
        except ValueError as err:
            raise ValueError(f"invalid {what} {spec!r}: {err}") from None
        return cls(kind, points)

    @property
    def values(self) -> tuple[int, ...]:
        """Every k any mixture of the schedule uses (for validation against ``num_generations``)."""
        return tuple(sorted({k for _, mixture in self.points for k in mixture.ks}))

    def mixture(self, step: int, max_steps: int | None) -> KMixture:
        """The mixture at optimizer step ``step`` of ``max_steps`` (fractions need ``max_steps > 0``): a
        breakpoint's for ``constant``/``steps``/``piecewise``, else interpolated at ``frac = step / max_steps``
        clipped to [0, 1] (0 without ``max_steps``)."""
        if self.kind == "constant":
            return self.points[0][1]
        if self.kind == "steps":
            return _last_at_or_before(self.points, step)
        frac = min(max(step / max_steps, 0.0), 1.0) if max_steps else 0.0
        if self.kind == "piecewise":
            return _last_at_or_before(self.points, frac)
        (_, start), (_, end) = self.points
        return self._interpolate(start, end, frac)

    __call__ = mixture

    def _interpolate(self, start: KMixture, end: KMixture, frac: float) -> KMixture:
        return _blend(start, end, frac if self.kind == "linear" else (1 - math.cos(math.pi * frac)) / 2)


class KSchedule(KMixtureSchedule):
    """A schedule of one k per step (a :class:`KMixtureSchedule` of one-term mixtures, see the module docstring);
    call it with ``(step, max_steps)`` to get k, an int. ``linear``/``cosine`` round the interpolated k half up.

    Attributes:
        kind: one of ``constant``, ``linear``, ``cosine``, ``piecewise``, ``steps``.
        points: ``(position, mixture)`` pairs, each mixture one k: for ``linear``/``cosine`` the start and end at
            positions 0 and 1; for ``piecewise`` fractions of training; for ``steps`` optimizer steps.
    """

    _verb = "gives"

    @classmethod
    def parse(cls, spec: str | int) -> KSchedule:
        """Parse a schedule spec (see the module docstring); an int means a constant k."""
        if isinstance(spec, int) and not isinstance(spec, bool):
            return cls("constant", ((0.0, _one_k(spec)),))
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f"k schedule {spec!r} must look like 'KIND:ARGS' with KIND in {_KINDS}")
        kind, _, body = spec.partition(":")
        return cls._parse_points(spec, kind.strip().lower(), body, ",", lambda text: _one_k(_as_k(text)), "k schedule")

    @property
    def values(self) -> tuple[int, ...]:
        """Every k the schedule can produce bounds, in breakpoint order (to validate against ``num_generations``)."""
        return tuple(mixture.ks[0] for _, mixture in self.points)

    def __call__(self, step: int, max_steps: int | None) -> int:
        """k at optimizer step ``step`` of ``max_steps`` (fractions need ``max_steps > 0``)."""
        return self.mixture(step, max_steps).ks[0]

    def _interpolate(self, start: KMixture, end: KMixture, frac: float) -> KMixture:
        (a,), (b,) = start.ks, end.ks
        value = a + (b - a) * frac if self.kind == "linear" else b + (a - b) * (1 + math.cos(math.pi * frac)) / 2
        return _one_k(math.floor(value + 0.5))  # round half up, not to even


def check_k_values(values, where: str, num_generations: int, estimator: str, verb: str = "gives") -> None:
    """Raise a ValueError naming ``where`` unless every k in ``values`` fits groups of ``num_generations``: the
    estimator's :meth:`~pkpo_trl.estimator_registry.Estimator.k_range`, ``[1, num_generations - min_others]``
    (``min_others`` is 1 for ``sloo`` and ``l2o``, whose baselines need k samples besides the one they score), or
    ``k = num_generations`` for an estimator defined only for the whole group (``grpo_passk``)."""
    spec = ESTIMATORS[estimator]
    k_min, k_max = spec.k_range(num_generations)
    for k in values:
        if k_min <= k <= k_max:
            continue
        if spec.k_is_n:
            raise ValueError(
                f"{where} {verb} k={k}: estimator {estimator!r} is defined only for k = num_generations "
                f"({num_generations}), the whole group"
            )
        raise ValueError(
            f"{where} {verb} k={k} outside [{k_min}, {k_max}]: estimator {estimator!r} with "
            f"num_generations={num_generations} needs {k_min} <= k <= {k_max} (an unbiased pass@k estimate "
            "needs at least k samples per prompt)"
        )


def _breakpoints(kind: str, unsorted: list[tuple[float, object]]) -> tuple:
    """The ``(position, value)`` breakpoints of a ``steps`` or ``piecewise`` schedule, sorted by position and
    checked: finite, distinct, the first at 0, and for ``piecewise`` fractions of training in [0, 1)."""
    # Before sorting: NaN compares false with everything, so it would land anywhere in the order.
    if not all(math.isfinite(pos) for pos, _ in unsorted):
        raise ValueError("breakpoints must be finite numbers")
    points = tuple(sorted(unsorted, key=lambda point: point[0]))
    if not points or points[0][0] != 0:
        raise ValueError("the first breakpoint must be at 0")
    if len({pos for pos, _ in points}) != len(points):
        raise ValueError("breakpoints must be distinct")
    if kind == "piecewise" and points[-1][0] >= 1:
        raise ValueError("piecewise breakpoints are fractions of training in [0, 1)")
    return points


def _as_k(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"k must be >= 1, got {value}")
    return value


def _last_at_or_before(points: tuple[tuple[float, KMixture], ...], position: float) -> KMixture:
    value = points[0][1]
    for pos, point in points:
        if pos <= position:
            value = point
    return value


class KMixtureCallback(TrainerCallback):
    """Sets PKPO's k mixture (a k, for a :class:`KSchedule`) from its schedule at the start of every optimizer step.

    :class:`~pkpo_trl.PKPOTrainer` reads :attr:`mixture` (:attr:`k`) when it scores a generation batch, which is
    where k enters the transformed rewards. With ``steps_per_generation > 1`` (or ``num_iterations > 1``) one
    batch of completions is scored once and reused for several optimizer steps; the mixture is then the
    schedule's value at the step that starts that batch, :func:`generation_start_step`. That makes it a pure
    function of the step in a resumed run too, even one resumed from a checkpoint in the middle of a generation
    batch. The trainer holds one of these as its k source, built from ``pkpo_k_mixture``, ``pkpo_k_schedule`` or
    ``pkpo_k``; pass one in ``callbacks`` to override the config's. It is validated against ``num_generations``
    and the estimator when the trainer is built and when training starts.

    Args:
        schedule: a :class:`KMixtureSchedule` or a spec string such as ``"1:0.5,8:0.5"`` or ``"linear:8->1"``.
    """

    schedule_type: type[KMixtureSchedule] = KMixtureSchedule

    def __init__(self, schedule: KMixtureSchedule | str):
        self.schedule = schedule if isinstance(schedule, self.schedule_type) else self.schedule_type.parse(schedule)
        self._label = f"{type(self).__name__}({schedule!r})"
        self.mixture = self.schedule.mixture(0, None)

    @property
    def k(self) -> int:
        """The largest k of the mixture in use: the schedule's k for a :class:`KSchedule`."""
        return max(self.mixture.ks)

    def check(self, args: TrainingArguments) -> None:
        """Raise a ValueError naming this callback unless every k of its schedule fits groups of
        ``args.num_generations`` under ``args.pkpo_estimator``, as PKPOConfig checks its own k options: a callback
        passed by the user bypasses that check (and the eval clamp would change its k silently)."""
        estimator = getattr(args, "pkpo_estimator", "sloo_minus_one")
        check_k_values(self.schedule.values, self._label, args.num_generations, estimator, self.schedule._verb)

    def _update(self, args: TrainingArguments, state: TrainerState) -> None:
        self.mixture = self.schedule.mixture(generation_start_step(args, state.global_step), state.max_steps)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.check(args)
        self._update(args, state)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._update(args, state)


class KAnnealingCallback(KMixtureCallback):
    """:class:`KMixtureCallback` for a :class:`KSchedule`: one k per step, read as :attr:`k`.

    Args:
        schedule: a :class:`KSchedule` or a spec string such as ``"linear:8->1"``.
    """

    schedule_type = KSchedule


def generation_start_step(args: TrainingArguments, step: int) -> int:
    """The optimizer step that starts the generation batch which optimizer step ``step`` trains on.

    GRPOTrainer generates once every ``steps_per_generation * num_iterations`` micro-batches, and an
    optimizer step is ``gradient_accumulation_steps`` micro-batches; without those fields (not a GRPO
    config) every step starts its own batch.
    """
    accumulation = getattr(args, "gradient_accumulation_steps", 1) or 1
    every = (getattr(args, "steps_per_generation", 1) or 1) * (getattr(args, "num_iterations", 1) or 1)
    return (step * accumulation // every) * every // accumulation
