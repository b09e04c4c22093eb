"""Sampling ``n`` completions per prompt (and optionally one greedy one): one :class:`Sampler` interface, a
transformers and a vLLM implementation, and :func:`sample_completions` over either.

Both engines seed the same way, per prompt: the samples of prompt ``i`` are drawn from a generator seeded with
``seed + i`` (vLLM's per-request seed; in transformers a logits processor that draws each prompt's tokens from its
own ``torch.Generator``). A prompt's samples therefore do not depend on which other prompts share its batch, on
``batch_size``, or on which prompts a resumed run still had to generate; only the engines' numerics (padding,
kernels) can differ between batchings.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["Sampler", "SamplingSettings", "TransformersSampler", "VLLMSampler", "generate_batch", "make_sampler",
           "sample_completions"]  # fmt: skip


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

    def identity(self) -> dict[str, Any]:
        """The settings a prompt's samples depend on: all but ``batch_size`` (samples are seeded per prompt) and
        ``greedy`` (a greedy completion is stored beside the samples, not instead of them)."""
        return {key: value for key, value in asdict(self).items() if key not in ("batch_size", "greedy")}


def _prompt_text(tokenizer, prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


class Sampler:
    """One engine's sampling: :meth:`generate` draws ``settings.num_samples`` completions of each prompt, those of
    prompt ``j`` seeded with ``seeds[j]``, and one greedy completion each when ``greedy``."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.on_token: Callable[[int], None] | None = None  # progress within a call, where the engine can tell

    def prompts_per_call(self, settings: SamplingSettings) -> int:
        """How many prompts go into one :meth:`generate` call (the cache is written after each)."""
        raise NotImplementedError

    def generate(
        self, prompts: Sequence[Any], seeds: Sequence[int], settings: SamplingSettings
    ) -> tuple[list[list[str]], list[str | None]]:
        """``(samples per prompt, greedy completion per prompt or None)``."""
        raise NotImplementedError

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc) -> None:
        return None


class _PerPromptSampling:
    """A logits processor that samples: each prompt's ``repeats`` rows draw their next token from that prompt's own
    generator, after temperature, top-k and top-p (in transformers' order); the returned scores put all mass on the
    drawn token, so that ``generate`` run greedily keeps it."""

    def __init__(self, seeds: Sequence[int], repeats: int, settings: SamplingSettings, device: torch.device):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]
        self.repeats = repeats
        self.warpers = []
        if settings.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k > 0:
            self.warpers.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(settings.top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = scores.softmax(-1)
        tokens = torch.cat(
            [
                torch.multinomial(rows, 1, generator=generator)
                for rows, generator in zip(probs.split(self.repeats), self.generators, strict=True)
            ]
        )
        return torch.full_like(scores, -torch.inf).scatter_(1, tokens, 0.0)


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


class _TokenCounter:
    """A ``generate`` streamer that calls ``on_token(t)`` after the ``t``-th new token of a call (the first
    ``put`` is the prompt): progress inside a call that may take minutes."""

    def __init__(self, on_token: Callable[[int], None]):
        self.on_token, self.count = on_token, -1

    def put(self, value) -> None:
        self.count += 1
        if self.count:
            self.on_token(self.count)

    def end(self) -> None:
        return None


def generate_batch(
    model,
    tokenizer,
    texts: list[str],
    plain: bool,
    repeats: int,
    settings,
    greedy: bool,
    share_prefix: bool = True,
    seeds: Sequence[int] | None = None,
    on_token: Callable[[int], None] | None = None,
) -> list[str]:
    """``repeats`` completions of each of ``texts`` in one ``generate`` call: greedy, or sampled per prompt from
    ``seeds`` (:class:`_PerPromptSampling`; without ``seeds`` from the global torch generator). ``on_token(t)`` is
    called after each of the call's ``t = 1 .. max_new_tokens`` decoding steps."""
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        # Chat templates already hold BOS; plain prompts get the tokenizer's special tokens (as TRL does).
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=plain).to(device)
    finally:
        tokenizer.padding_side = padding_side
    if greedy:
        sampling = {"do_sample": False, "top_p": None, "top_k": None, "temperature": None}
    elif seeds is None:
        sampling = {
            "do_sample": True,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": settings.top_k,
        }
    else:
        processor = _PerPromptSampling(seeds, repeats, settings, device)
        sampling = {
            "do_sample": False,
            "top_p": None,
            "top_k": None,
            "temperature": None,
            "logits_processor": [processor],
        }
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if repeats > 1 and ids.shape[1] > 1 and share_prefix:
        sampling.update(_shared_prompt_cache(model, ids, mask, repeats))
    out = model.generate(
        input_ids=ids.repeat_interleave(repeats, 0),
        attention_mask=mask.repeat_interleave(repeats, 0),
        max_new_tokens=settings.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        streamer=_TokenCounter(on_token) if on_token is not None else None,
        **sampling,
    )
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


class TransformersSampler(Sampler):
    """Batched transformers ``generate``: ``batch_size // num_samples`` prompts a call, each prompt's KV cache
    computed once for its ``n`` samples."""

    def prompts_per_call(self, settings: SamplingSettings) -> int:
        return max(1, settings.batch_size // settings.num_samples)

    def __enter__(self) -> TransformersSampler:
        self._was_training = self.model.training
        self.model.eval()
        return self

    def __exit__(self, *exc) -> None:
        self.model.train(self._was_training)

    def generate(self, prompts, seeds, settings):
        model, tokenizer = self.model, self.tokenizer
        plain = all(isinstance(p, str) for p in prompts)
        texts = [_prompt_text(tokenizer, p) for p in prompts]
        n = settings.num_samples
        flat = generate_batch(
            model, tokenizer, texts, plain, n, settings, greedy=False, seeds=seeds, on_token=self.on_token
        )
        samples = [flat[j * n : (j + 1) * n] for j in range(len(texts))]
        greedy: list[str | None] = [None] * len(texts)
        if settings.greedy:
            greedy = list(generate_batch(model, tokenizer, texts, plain, 1, settings, greedy=True))
        return samples, greedy


class VLLMSampler(Sampler):
    """A ``vllm.LLM`` (``lora_request``: the adapter to serve): ``batch_size`` prompts a call, each a request with
    its own seed."""

    def __init__(self, llm, tokenizer, lora_request=None):
        super().__init__(llm, tokenizer)
        self.lora_request = lora_request

    def prompts_per_call(self, settings: SamplingSettings) -> int:
        return max(1, settings.batch_size)

    def generate(self, prompts, seeds, settings):
        from vllm import SamplingParams

        texts = [_prompt_text(self.tokenizer, p) for p in prompts]
        params = [
            SamplingParams(
                n=settings.num_samples,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=settings.top_k if settings.top_k > 0 else -1,
                max_tokens=settings.max_new_tokens,
                seed=seed,
            )
            for seed in seeds
        ]
        outputs = self.model.generate(texts, params, lora_request=self.lora_request, use_tqdm=True)
        samples = [[o.text for o in out.outputs] for out in outputs]
        greedy: list[str | None] = [None] * len(texts)
        if settings.greedy:
            greedy_params = SamplingParams(n=1, temperature=0.0, max_tokens=settings.max_new_tokens)
            outputs = self.model.generate(texts, greedy_params, lora_request=self.lora_request)
            greedy = [out.outputs[0].text for out in outputs]
        return samples, greedy


def make_sampler(model, tokenizer, settings: SamplingSettings, lora_request=None) -> Sampler:
    """The :class:`Sampler` of ``settings.engine`` over ``model`` (a transformers model or a ``vllm.LLM``)."""
    if settings.engine == "vllm":
        return VLLMSampler(model, tokenizer, lora_request)
    if lora_request is not None:
        raise ValueError("lora_request is a vLLM option; a transformers model carries its adapter itself.")
    return TransformersSampler(model, tokenizer)


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[Any],
    settings: SamplingSettings,
    skip: Callable[[int], bool] = lambda i: False,
    on_chunk: Callable[[list[int], list[list[str]], list[str | None]], None] | None = None,
    progress: bool = True,
    lora_request=None,
) -> dict[int, tuple[list[str], str | None]]:
    """Sample ``settings.num_samples`` completions (and one greedy one if ``settings.greedy``) of every prompt
    ``i`` not ``skip(i)`` (e.g. already cached), seeded with ``settings.seed + i``, with the engine of
    ``settings.engine`` (``model`` a transformers model or a ``vllm.LLM``; ``lora_request`` the adapter vLLM serves).
    ``model`` may also be a :class:`Sampler`. ``on_chunk(indices, samples, greedy)`` receives each generated chunk
    (to cache it).

    Returns:
        ``{prompt index: (samples, greedy completion or None)}`` for the generated prompts.
    """
    from tqdm.auto import tqdm

    sampler = model if isinstance(model, Sampler) else make_sampler(model, tokenizer, settings, lora_request)
    todo = [i for i in range(len(prompts)) if not skip(i)]
    step = sampler.prompts_per_call(settings)
    results: dict[int, tuple[list[str], str | None]] = {}
    bar = tqdm(total=len(todo), desc="sampling", unit="prompt", disable=not progress)
    last_shown = [0.0]

    def show_token(t: int) -> None:
        # A call of many prompts x long completions takes minutes: its decoding step, at most once a second.
        if time.monotonic() - last_shown[0] >= 1.0 or t == settings.max_new_tokens:
            bar.set_postfix_str(f"token {t}/{settings.max_new_tokens}")
            last_shown[0] = time.monotonic()

    if progress:
        sampler.on_token = show_token
    try:
        with sampler:
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                seeds = [settings.seed + i for i in chunk]
                samples, greedy = sampler.generate([prompts[i] for i in chunk], seeds, settings)
                for j, i in enumerate(chunk):
                    results[i] = (samples[j], greedy[j])
                if on_chunk is not None:
                    on_chunk(chunk, samples, greedy)
                bar.update(len(chunk))
    finally:
        bar.close()
    return results
