"""Fields whose value is one of a fixed set: checked wherever the value came from.

argparse enforces a field's ``choices`` only for a value typed on the command line; a value from a YAML recipe
becomes the parser's default and is never compared with them. Several of TRL's own fields with a fixed set of
values have no ``choices`` at all (``loss_type``, ``vllm_mode``, ...), and TRL compares them only deep inside
training, if at all (``vllm_mode="colocated"`` silently runs the server branch). :func:`check_fixed_values`
checks both kinds on a built dataclass, so that a typo is refused before anything is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

__all__ = ["TRL_FIXED_VALUES", "check_fixed_values"]

# TRL 1.16 GRPOConfig fields with a fixed set of values but no `choices` metadata (from its docstring and the
# branches of GRPOTrainer that read them).
TRL_FIXED_VALUES: dict[str, tuple[str, ...]] = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "vllm_mode": ("server", "colocate"),
    "vllm_model_impl": ("transformers", "vllm"),
    "importance_sampling_level": ("token", "sequence"),
    "vllm_importance_sampling_mode": ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"),
    "scale_rewards": ("group", "batch", "none"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
}


def _allowed(field: dataclasses.Field, table: dict[str, tuple[str, ...]]) -> Collection[Any] | None:
    choices = field.metadata.get("choices")
    return list(choices) if choices is not None else table.get(field.name)


def check_fixed_values(obj: Any, table: dict[str, tuple[str, ...]] | None = None) -> None:
    """Raise a ValueError naming the field, the value and the allowed values when a field of dataclass ``obj``
    with ``choices`` metadata (or listed in ``table``, default :data:`TRL_FIXED_VALUES`) holds another value.
    ``None`` (unset) is always allowed."""
    table = TRL_FIXED_VALUES if table is None else table
    for field in dataclasses.fields(obj):
        allowed = _allowed(field, table)
        value = getattr(obj, field.name, None)
        if allowed is None or value is None or value in allowed:
            continue
        values = ", ".join(repr(v) for v in allowed)
        raise ValueError(f"{field.name}={value!r} is not one of its values: choose one of {values}.")
