"""pkpo_trl: Pass@K Policy Optimization (Walder & Karkhanis, arXiv 2505.15201) for Hugging Face TRL.

Drop-in use: replace ``GRPOTrainer``/``GRPOConfig`` with :class:`PKPOTrainer`/:class:`PKPOConfig`.

The public API is :data:`__all__` here and each subpackage's face: :mod:`pkpo_trl.estimators` (the math, pure torch,
importable without TRL's trainer), :mod:`pkpo_trl.evaluation` (``pkpo-eval``), :mod:`pkpo_trl.rewards` (reward
functions by name); and the modules :mod:`~pkpo_trl.callbacks`, :mod:`~pkpo_trl.data`, :mod:`~pkpo_trl.metrics`,
:mod:`~pkpo_trl.plotting`, :mod:`~pkpo_trl.tiny`, each with its own ``__all__``.
"""

from .estimators import ESTIMATORS, maxg_at_k, pass_at_k, transform_rewards, transform_rewards_mixture

__version__ = "0.1.0"

__all__ = [
    "ESTIMATORS",
    "KMixture",
    "KSpec",
    "PKPOConfig",
    "PKPOTrainer",
    "PassAtKCallback",
    "maxg_at_k",
    "pass_at_k",
    "transform_rewards",
    "transform_rewards_mixture",
]


def __getattr__(name: str):
    # The trainer pulls in TRL/transformers (seconds to import); the estimators must stay light.
    if name in ("PKPOTrainer",):
        from .trainer import PKPOTrainer

        return PKPOTrainer
    if name in ("PKPOConfig",):
        from .config import PKPOConfig

        return PKPOConfig
    if name in ("PassAtKCallback",):
        from .callbacks import PassAtKCallback

        return PassAtKCallback
    if name in ("KMixture", "KSpec"):
        from . import k

        return getattr(k, name)
    raise AttributeError(f"module 'pkpo_trl' has no attribute {name!r}")
