"""One model evaluated: sample (or take from the cache), score with every reward function, combine, summarise."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..callbacks import combine_rewards, prompt_key
from .cache import SampleCache
from .sampling import SamplingSettings, sample_completions
from .scoring import pass_at_k_stats, score_completions

__all__ = ["evaluate_model"]


def evaluate_model(
    model,
    tokenizer,
    prompts: Sequence[Any],
    answers: Sequence[str],
    reward_funcs: Sequence[Callable[..., Any]],
    settings: SamplingSettings,
    ks: Sequence[int],
    *,
    reward_names: Sequence[str] | None = None,
    reward_weights: Sequence[float] | None = None,
    threshold: float = 1.0,
    columns: dict[str, Sequence[Any]] | None = None,
    cache: SampleCache | None = None,
    lora_request=None,
    label: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Sample, score and summarise one model (``model`` a transformers model, or a ``vllm.LLM`` when
    ``settings.engine == "vllm"``): :func:`pass_at_k_stats` plus ``"num_generated"``, the prompts sampled in
    this call (the others came from ``cache``).
    """
    keys = [prompt_key(p) for p in prompts]
    cached = cache.samples if cache is not None else {}

    def store(indices: list[int], samples: list[list[str]], greedy: list[str | None]) -> None:
        if cache is not None:
            cache.add_samples([keys[i] for i in indices], samples, greedy)

    def have(i: int) -> bool:
        return keys[i] in cached and (not settings.greedy or cached[keys[i]][1] is not None)

    if all(map(have, range(len(prompts)))):
        new = {}  # everything cached: ``model`` may be None
    else:
        new = sample_completions(
            model,
            tokenizer,
            prompts,
            settings,
            skip=have,
            on_chunk=store,
            progress=progress,
            lora_request=lora_request,
        )
    everything = {i: new[i] if i in new else cached[keys[i]] for i in range(len(prompts))}

    names = list(reward_names or [getattr(f, "__name__", str(f)) for f in reward_funcs])
    columns = {"answer": list(answers), **(columns or {})}
    per_func, per_func_greedy = [], []
    for name, func in zip(names, reward_funcs, strict=True):
        stored = cache.scores if cache is not None else {}
        todo = [i for i in range(len(prompts)) if (name, keys[i], str(answers[i])) not in stored]
        scored: dict[int, tuple[list[float], float | None]] = {}
        if todo:
            groups = [everything[i][0] + ([everything[i][1]] if settings.greedy else []) for i in todo]
            rewards = score_completions(
                func, [prompts[i] for i in todo], groups, {c: [v[i] for i in todo] for c, v in columns.items()},
                what=label or "the model",
            )  # fmt: skip
            n = settings.num_samples
            scored = {i: (r[:n], r[n] if settings.greedy else None) for i, r in zip(todo, rewards, strict=True)}
            if cache is not None:
                cache.add_scores(name, [(keys[i], str(answers[i]), *scored[i]) for i in todo])
        rows = [scored[i] if i in scored else stored[name, keys[i], str(answers[i])] for i in range(len(prompts))]
        per_func.append([row[0] for row in rows])
        per_func_greedy.append([math.nan if row[1] is None else row[1] for row in rows])
    weights = list(reward_weights) if reward_weights is not None else [1.0] * len(names)
    weights = torch.tensor(weights, dtype=torch.float64)
    rewards = combine_rewards(torch.tensor(per_func, dtype=torch.float64).movedim(0, -1), weights)
    greedy = None
    if settings.greedy:
        greedy = combine_rewards(torch.tensor(per_func_greedy, dtype=torch.float64).movedim(0, -1), weights)
    stats = pass_at_k_stats(rewards, ks, threshold, greedy)
    stats["num_generated"] = len(new)
    return stats
