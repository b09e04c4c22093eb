"""The two errors of `pkpo-eval`: both are raised before anything is generated."""

from __future__ import annotations

__all__ = ["CacheError", "EvalInputError"]


class EvalInputError(ValueError):
    """An evaluation cannot start: a model, adapter, data set or option is wrong (raised before generating)."""


class CacheError(EvalInputError):
    """A sample cache cannot be read, or was written with other settings."""
