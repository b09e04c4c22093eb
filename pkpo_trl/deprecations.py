"""Warnings that TRL triggers in transformers and a user can do nothing about, hidden on import.

Imported by :mod:`pkpo_trl.config` (training) and :mod:`pkpo_trl.evaluation.models` (``pkpo-eval``).
"""

import warnings

# transformers >= 5.25 renamed gradient checkpointing to "activation checkpointing" and warns on the old names. TRL
# 1.16 still uses them: its configs default `gradient_checkpointing=True` (so every GRPOConfig warns, whatever the
# user sets) and its trainer calls `model.gradient_checkpointing_disable()` / reads `is_gradient_checkpointing`
# around generation. The new names cannot be used instead: vLLM 0.31 needs transformers < 5.18, which lacks them.
# Only these messages, only from transformers, are hidden (tests/test_trl_compat.py fails on any other).
warnings.filterwarnings(
    "ignore",
    message=r"`(is_)?gradient_checkpointing(_kwargs|_enable|_disable)?` is deprecated",
    category=FutureWarning,
    module=r"transformers\.",
)
