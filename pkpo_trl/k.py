"""The one k spec (``PKPOConfig.pkpo_k``), parsed once, and the callback that applies it at every step.

PKPO optimises ``sum_k w_k pass@k`` (paper Eq. 8; a single k is the one-term mixture), whose unbiased gradient
weights are ``A = sum_k w_k A^(k)`` (:func:`pkpo_trl.estimators.transform_rewards_mixture`). The paper (Walder &
Karkhanis 2025, Sec. 5) also anneals k, large early (explore) and small late (exploit). One spec string says all
of it, so that a YAML recipe or a command line can hold it (``f = t / T``, the fraction of training at optimizer
step ``t`` of ``T``):

======================================  ===========================================================================
spec                                    objective at step ``t``
======================================  ===========================================================================
``8`` or ``"8"``                        pass@8
``"harmonic"``, ``"harmonic:8"``        ``sum_{k<=T} pass@k / k`` (``w_k ∝ 1/k``): MaxRL's objective (arXiv
                                        2602.02710), exactly; T defaults to the largest k the estimator allows
``"1:0.5,8:0.5"``                       ``0.5 pass@1 + 0.5 pass@8`` (``k:weight`` pairs, weights normalised)
``"linear:8->1"``, ``"cosine:8->1"``    one k, interpolated from 8 to 1 and rounded half up (annealing)
``"linear:8:1->1:1"``                   ends written as mixtures blend their weights: ``(1-f) pass@8 + f pass@1``
``"piecewise:0=8,0.5=4,0.75=1"``        breakpoints at fractions of training (``;`` between mixtures)
``"steps:0=8;100=1:0.5,8:0.5"``         breakpoints at optimizer steps
``"adaptive:1..8"``                     per prompt, ``k = clamp(floor(1/p), 1, 8)`` from the prompt's success
                                        rate ``p`` at its previous visit (:func:`~pkpo_trl.estimators.
                                        k_from_success_rate`); the cap may be a schedule: ``"adaptive:1..linear:8->2"``
======================================  ===========================================================================

k is a pure function of the optimizer step that starts the generation batch (and of the total), so a run resumed
from a checkpoint continues the schedule exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

__all__ = ["KCallback", "KMixture", "KSpec", "generation_start_step"]

_SCHEDULES = ("constant", "linear", "cosine", "piecewise", "steps")
_EXAMPLES = "8, 'harmonic', '1:0.5,8:0.5', 'linear:8->1', 'steps:0=8;100=1' or 'adaptive:1..8'"


@dataclass(frozen=True)
class KMixture:
    """A mixture of k, ``{k: w_k}`` with the weights normalised to sum to 1 (``"1:1,8:1"`` is ``"1:0.5,8:0.5"``).

    Attributes:
        terms: ``(k, w_k)`` pairs, k ascending, every ``w_k > 0``, ``sum_k w_k = 1``.
    """

    terms: tuple[tuple[int, float], ...]

    @classmethod
    def parse(cls, text: str, k_range: tuple[int, int] | None = None) -> KMixture:
        """``"8"``, ``"1:0.5,8:0.5"`` or ``"harmonic[:T]"`` (:meth:`harmonic` over ``k_range``)."""
        if text.lower().partition(":")[0] == "harmonic":
            _, _, size = text.partition(":")
            if not size and k_range is None:
                raise ValueError("a bare 'harmonic' needs the group size: say its size, e.g. 'harmonic:8'")
            k_min = 1 if k_range is None else k_range[0]
            return cls.harmonic(_as_k(size) if size else k_range[1], k_min)
        weights: dict[int, float] = {}
        for item in text.split(","):
            k, _, w = item.partition(":")
            weights[_as_k(k)] = weights.get(_as_k(k), 0.0) + (float(w) if w else 1.0)
        return cls.from_weights(weights)

    @classmethod
    def from_weights(cls, weights: dict[int, float]) -> KMixture:
        """``{k: weight}``: finite weights >= 0 summing to > 0, normalised here."""
        if any(not math.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"weights must be finite and >= 0, got {weights}")
        total = math.fsum(weights.values())
        if total <= 0:
            raise ValueError(f"weights must sum to > 0, got {weights}")
        return cls(tuple((k, w / total) for k, w in sorted(weights.items()) if w > 0))

    @classmethod
    def harmonic(cls, size: int, k_min: int = 1) -> KMixture:
        """``w_k = (1/k) / sum_j (1/j)`` for ``k = k_min..T``: ``sum_{k<=T} pass@k / k``, MaxRL's truncated
        maximum-likelihood objective (Tajwar et al., arXiv 2602.02710: ``grad log p = sum_k (1/k) grad pass@k``),
        up to a constant. ``k_min > 1`` only for an estimator defined at ``k = n`` alone (``grpo_passk``)."""
        if size < k_min:
            raise ValueError(f"harmonic:{size} has no k the estimator allows (k >= {k_min})")
        return cls.from_weights({k: 1.0 / k for k in range(k_min, size + 1)})

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(k for k, _ in self.terms)

    @property
    def mean_k(self) -> float:
        """``sum_k w_k k``, logged as ``pkpo/k``."""
        return math.fsum(k * w for k, w in self.terms)

    def as_dict(self) -> dict[int, float]:
        return dict(self.terms)

    def capped(self, k_min: int, k_max: int) -> KMixture:
        """Every k moved into ``[k_min, k_max]`` (evaluation groups smaller than training's)."""
        out: dict[int, float] = {}
        for k, w in self.terms:
            out[min(max(k, k_min), k_max)] = out.get(min(max(k, k_min), k_max), 0.0) + w
        return KMixture(tuple(sorted(out.items())))

    def __str__(self) -> str:
        return ",".join(f"{k}:{w:g}" for k, w in self.terms)


@dataclass(frozen=True)
class KSpec:
    """A parsed ``pkpo_k`` (module docstring): a schedule of :class:`KMixture`, maybe adaptive per prompt.

    Attributes:
        text: the spec as given.
        kind: ``constant``, ``linear``, ``cosine``, ``piecewise`` or ``steps``.
        points: ``(position, mixture)``: the two ends of ``linear``/``cosine`` (at 0 and 1), the breakpoints of
            ``piecewise`` (fractions of training) and ``steps`` (optimizer steps).
        round_k: ``linear``/``cosine`` between two plain ks: k is interpolated and rounded, not the weights blended.
        adaptive_min: the smallest k of ``adaptive:MIN..CAP`` (the schedule is then its cap), else None.
    """

    text: str
    kind: str
    points: tuple[tuple[float, KMixture], ...]
    round_k: bool = False
    adaptive_min: int | None = None

    @classmethod
    def parse(cls, spec: int | str | KSpec, k_range: tuple[int, int] | None = None) -> KSpec:
        """Parse ``spec``; ``k_range``, the estimator's ``(k_min, k_max)`` for the group size, sizes a bare
        ``"harmonic"``. Raises a ValueError that quotes the spec and says what is wrong."""
        if isinstance(spec, KSpec):
            return spec
        if isinstance(spec, bool) or not isinstance(spec, int | str):
            raise ValueError(f"pkpo_k must be an int or a string such as {_EXAMPLES}; got {spec!r}")
        text = str(spec).replace(" ", "")
        try:
            return cls._parse(text, k_range)
        except ValueError as err:
            raise ValueError(f"pkpo_k={spec!r} is not a k spec ({err}); examples: {_EXAMPLES}") from None

    @classmethod
    def _parse(cls, text: str, k_range: tuple[int, int] | None) -> KSpec:
        head, _, body = text.partition(":")
        head = head.lower()
        if head == "adaptive":
            low, dots, cap = body.partition("..")
            low, cap = (low, cap) if dots else ("1", body)
            capping = cls._parse(cap, k_range)
            if capping.adaptive_min is not None or not capping.one_k:
                raise ValueError("the cap of adaptive k is one k or a k schedule, e.g. 'adaptive:1..8'")
            return dataclasses.replace(capping, text=text, adaptive_min=_as_k(low))
        if head not in _SCHEDULES:
            return cls(text, "constant", ((0.0, KMixture.parse(text, k_range)),))
        if head == "constant":
            return cls(text, head, ((0.0, KMixture.parse(body, k_range)),))
        if head in ("linear", "cosine"):
            ends = body.split("->")
            if len(ends) != 2:
                raise ValueError(f"{head} needs START->END")
            points = ((0.0, KMixture.parse(ends[0], k_range)), (1.0, KMixture.parse(ends[1], k_range)))
            return cls(text, head, points, round_k=all(re.fullmatch(r"\d+", end) for end in ends))
        # `,` separates breakpoints of single ks; `;` is needed once a breakpoint's value is a mixture.
        items = body.split(";") if ";" in body or any("=" not in item for item in body.split(",")) else body.split(",")
        pairs = [item.split("=", 1) for item in items if item]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"{head} needs POSITION=K breakpoints")
        return cls(text, head, _breakpoints(head, [(float(pos), KMixture.parse(v, k_range)) for pos, v in pairs]))

    @property
    def one_k(self) -> bool:
        """Every step uses a single k (a fixed k, or a k schedule), not a mixture."""
        blends = self.kind in ("linear", "cosine") and not self.round_k
        return not blends and all(len(mixture.terms) == 1 for _, mixture in self.points)

    @property
    def values(self) -> tuple[int, ...]:
        """Every k any step can use (an interpolated k lies between the ends)."""
        return tuple(sorted({k for _, mixture in self.points for k in mixture.ks}))

    def mixture(self, step: int, max_steps: int | None) -> KMixture:
        """The mixture at optimizer step ``step`` of ``max_steps`` (fractions clip to [0, 1]; 0 without
        ``max_steps``); for adaptive k, the cap."""
        if self.kind == "constant":
            return self.points[0][1]
        if self.kind == "steps":
            return _last_at_or_before(self.points, step)
        frac = min(max(step / max_steps, 0.0), 1.0) if max_steps else 0.0
        if self.kind == "piecewise":
            return _last_at_or_before(self.points, frac)
        (_, start), (_, end) = self.points
        t = frac if self.kind == "linear" else (1 - math.cos(math.pi * frac)) / 2
        if self.round_k:
            (a,), (b,) = start.ks, end.ks
            return KMixture(((math.floor(a + (b - a) * t + 0.5), 1.0),))  # round half up, not to even
        out = {k: (1 - t) * w for k, w in start.terms}
        for k, w in end.terms:
            out[k] = out.get(k, 0.0) + t * w
        return KMixture(tuple((k, w) for k, w in sorted(out.items()) if w > 0))

    def check(self, k_range: tuple[int, int], where: str = "pkpo_k") -> None:
        """Raise a ValueError naming ``where`` unless every k fits ``k_range``, the estimator's ``(k_min, k_max)``
        for the group size (an unbiased pass@k estimate needs at least k samples besides those its baseline
        uses)."""
        k_min, k_max = k_range
        where = f"{where}={self.text if self.text.isdigit() else repr(self.text)}"
        for k in self.values:
            if not k_min <= k <= k_max:
                allowed = f"k = {k_min} only" if k_min == k_max else f"{k_min} <= k <= {k_max}"
                raise ValueError(f"{where} uses k={k}, but the estimator and group size allow {allowed}")
        if self.adaptive_min is not None:
            if k_min == k_max:
                raise ValueError(f"{where}: adaptive k needs an estimator defined for k < n")
            if self.adaptive_min > max(self.values):
                raise ValueError(f"{where}: the smallest k exceeds the cap {max(self.values)}")


def _breakpoints(kind: str, unsorted: list[tuple[float, KMixture]]) -> tuple[tuple[float, KMixture], ...]:
    """Sorted, checked breakpoints: finite, distinct, the first at 0, ``piecewise`` fractions in [0, 1)."""
    if not all(math.isfinite(pos) for pos, _ in unsorted):  # before sorting: NaN compares false with everything
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
    return [mixture for pos, mixture in points if pos <= position][-1]


class KCallback(TrainerCallback):
    """Sets the k mixture in use (:attr:`mixture`) from a :class:`KSpec` at the start of every optimizer step.

    :class:`~pkpo_trl.PKPOTrainer` holds one, built from ``pkpo_k``, and reads :attr:`mixture` when it scores a
    generation batch. With ``steps_per_generation > 1`` (or ``num_iterations > 1``) one batch serves several
    optimizer steps; the mixture is then the spec's at the step that starts that batch
    (:func:`generation_start_step`), also in a run resumed in the middle of a generation batch.
    """

    def __init__(self, spec: KSpec):
        self.spec = spec
        self.mixture = spec.mixture(0, None)

    def _update(self, args: TrainingArguments, state: TrainerState) -> None:
        self.mixture = self.spec.mixture(generation_start_step(args, state.global_step), state.max_steps)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._update(args, state)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._update(args, state)


def generation_start_step(args: TrainingArguments, step: int) -> int:
    """The optimizer step that starts the generation batch which optimizer step ``step`` trains on.

    GRPOTrainer generates once every ``steps_per_generation * num_iterations`` micro-batches, and an optimizer
    step is ``gradient_accumulation_steps`` micro-batches.
    """
    accumulation = args.gradient_accumulation_steps
    every = args.steps_per_generation * args.num_iterations
    return (step * accumulation // every) * every // accumulation
