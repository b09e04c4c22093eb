"""Sampling ``n`` completions per prompt (and optionally one greedy one), with transformers ``generate`` or a
``vllm.LLM``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["SamplingSettings", "sample_completions", "sample_completions_vllm"]


@dataclass
class SamplingSettings:
    """Everything that determines the sampled completions (besides model and prompt)."""

    num_samples: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 64
    greedy: bool = False
    engine: str = "transformers"


def _prompt_text(tokenizer, prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def _chunks(num_prompts: int, settings: SamplingSettings) -> list[range]:
    # Fixed chunk boundaries and one seed per chunk: a prompt's samples depend only on its chunk, so a resumed
    # evaluation regenerates a missing chunk exactly as an uninterrupted one would have.
    per_chunk = max(1, settings.batch_size // settings.num_samples)
    return [range(s, min(s + per_chunk, num_prompts)) for s in range(0, num_prompts, per_chunk)]


@torch.no_grad()
def _shared_prompt_cache(model, ids: torch.Tensor, mask: torch.Tensor, repeats: int):
    """The KV cache of every prompt but its last token, computed once per prompt and repeated for its samples.

    Few-shot prompts are long and completions short: computing each prompt once instead of ``n`` times is most of
    the cost saved. ``generate`` then feeds the last prompt token itself. Positions follow the left padding, as
    ``generate`` computes them (``cumsum(mask) - 1``).
    """
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True)
    cache = out.get("cache", None) or out.get("past_key_values", None)
    cache.batch_repeat_interleave(repeats)
    return {_cache_argument(model): cache}


def _cache_argument(model) -> str:
    # transformers 5.2x calls it `cache` (and warns about `past_key_values`); earlier versions `past_key_values`.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _generate(
    model, tokenizer, texts: list[str], plain: bool, repeats: int, settings, greedy: bool, share_prefix: bool = True
) -> list[str]:
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        # Chat templates already hold BOS; plain prompts get the tokenizer's special tokens (as TRL does).
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=plain).to(device)
    finally:
        tokenizer.padding_side = padding_side
    sampling = (
        {"do_sample": False, "top_p": None, "top_k": None, "temperature": None}
        if greedy
        else {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if repeats > 1 and ids.shape[1] > 1 and share_prefix:
        sampling.update(_shared_prompt_cache(model, ids, mask, repeats))
    out = model.generate(
        input_ids=ids.repeat_interleave(repeats, 0),
        attention_mask=mask.repeat_interleave(repeats, 0),
        max_new_tokens=settings.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[Any],
    settings: SamplingSettings,
    skip: Callable[[int], bool] = lambda i: False,
    on_chunk: Callable[[list[int], list[list[str]], list[str | None]], None] | None = None,
    progress: bool = True,
) -> dict[int, tuple[list[str], str | None]]:
    """Sample ``settings.num_samples`` completions (and one greedy one if ``settings.greedy``) per prompt with
    batched transformers ``generate``.

    Prompts go in fixed chunks of ``batch_size // num_samples``; chunk ``c`` is sampled after
    ``torch.manual_seed(seed + c)``. A chunk whose prompts all satisfy ``skip(i)`` (e.g. already cached) is
    not generated; ``on_chunk(indices, samples, greedy)`` receives each generated chunk (to cache it).

    Returns:
        ``{prompt index: (samples, greedy completion or None)}`` for the generated prompts.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    plain = all(isinstance(p, str) for p in prompts)
    results: dict[int, tuple[list[str], str | None]] = {}
    chunks = [(c, chunk) for c, chunk in enumerate(_chunks(len(prompts), settings)) if not all(map(skip, chunk))]
    bar = tqdm(total=sum(len(chunk) for _, chunk in chunks), desc="sampling", unit="prompt", disable=not progress)
    try:
        for c, chunk in chunks:
            texts = [_prompt_text(tokenizer, prompts[i]) for i in chunk]
            torch.manual_seed(settings.seed + c)
            flat = _generate(model, tokenizer, texts, plain, settings.num_samples, settings, greedy=False)
            samples = [flat[j * settings.num_samples : (j + 1) * settings.num_samples] for j in range(len(chunk))]
            greedy: list[str | None] = (
                list(_generate(model, tokenizer, texts, plain, 1, settings, greedy=True))
                if settings.greedy
                else [None] * len(chunk)
            )
            for j, i in enumerate(chunk):
                results[i] = (samples[j], greedy[j])
            if on_chunk is not None:
                on_chunk(list(chunk), samples, greedy)
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return results


def sample_completions_vllm(
    llm,
    tokenizer,
    prompts: Sequence[Any],
    settings: SamplingSettings,
    lora_request=None,
    skip: Callable[[int], bool] = lambda i: False,
    on_chunk: Callable[[list[int], list[list[str]], list[str | None]], None] | None = None,
) -> dict[int, tuple[list[str], str | None]]:
    """:func:`sample_completions` with a ``vllm.LLM``; prompt ``i`` is sampled with seed ``seed + i`` (vLLM's
    per-request seed), so that resumed and uninterrupted runs agree."""
    from vllm import SamplingParams

    todo = [i for i in range(len(prompts)) if not skip(i)]
    results: dict[int, tuple[list[str], str | None]] = {}
    step = max(1, settings.batch_size)  # prompts per vLLM call: the cache is written after each
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        texts = [_prompt_text(tokenizer, prompts[i]) for i in chunk]
        params = [
            SamplingParams(
                n=settings.num_samples,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=settings.top_k if settings.top_k > 0 else -1,
                max_tokens=settings.max_new_tokens,
                seed=settings.seed + i,
            )
            for i in chunk
        ]
        outputs = llm.generate(texts, params, lora_request=lora_request, use_tqdm=True)
        samples = [[o.text for o in out.outputs] for out in outputs]
        greedy: list[str | None] = [None] * len(chunk)
        if settings.greedy:
            greedy_params = SamplingParams(n=1, temperature=0.0, max_tokens=settings.max_new_tokens)
            greedy = [o.outputs[0].text for o in llm.generate(texts, greedy_params, lora_request=lora_request)]
        for j, i in enumerate(chunk):
            results[i] = (samples[j], greedy[j])
        if on_chunk is not None:
            on_chunk(chunk, samples, greedy)
    return results
