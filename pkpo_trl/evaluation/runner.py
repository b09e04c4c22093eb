"""Models evaluated: each sampled (or taken from its cache), scored with every reward function and summarised
(:func:`evaluate_model`); every model of a plan in turn, each base model loaded once (:func:`evaluate_models`);
the whole evaluation with its report, table, k advice and plot (:func:`run`)."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..metrics import combine_rewards, prompt_key
from .cache import SampleCache
from .models import ModelSpec, adapter_rank, by_base, load_model, load_vllm_engine
from .plan import EvalPlan
from .report import markdown_table, write_results
from .sampling import SamplingSettings, sample_completions
from .scoring import pass_at_k_stats, score_completions

__all__ = ["evaluate_model", "evaluate_models", "run"]


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


def _turns(
    group: list[ModelSpec], pending: bool, settings: SamplingSettings, dtype: str, vllm_options: dict[str, Any]
) -> Iterator[tuple[ModelSpec, Any, Any, Any]]:
    """``(spec, model, tokenizer, lora_request)`` for each model of one base-model ``group``, the base loaded once
    (not at all when nothing is ``pending``: everything cached, model and tokenizer None).

    vLLM: one engine, each adapter served by its LoRA support (no merged copies on disk). transformers: each
    adapter is put on top of the base for its turn and taken off again (PEFT's unload), the base evaluated first
    (a GGUF base takes minutes to de-quantize on a CPU).
    """
    if settings.engine == "vllm":
        from vllm.lora.request import LoRARequest

        if pending:
            print(f"[pkpo-eval] starting vLLM on {group[0].base}", flush=True)
        llm = (
            load_vllm_engine(group[0], settings.seed, max(map(adapter_rank, group)), **vllm_options)
            if pending
            else None
        )
        tokenizer = llm.get_tokenizer() if llm is not None else None
        for number, spec in enumerate(group, 1):
            yield spec, llm, tokenizer, LoRARequest(spec.label, number, spec.adapter) if spec.adapter else None
        return
    if pending:  # a GGUF base takes minutes to de-quantize on a CPU
        print(
            f"[pkpo-eval] loading {group[0].base}{f' ({group[0].gguf_file})' if group[0].gguf_file else ''}",
            flush=True,
        )
    base = load_model(group[0], dtype, adapter=False) if pending else None
    for spec in sorted(group, key=lambda s: s.adapter is not None):
        model, tokenizer = (None, None) if base is None else base
        if model is not None and spec.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, spec.adapter).eval()
        yield spec, model, tokenizer, None
        if model is not None and spec.adapter:
            base = (model.unload(), tokenizer)


def evaluate_models(plan: EvalPlan) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_model` of every model of ``plan`` on its prompts, ``{label: {"model": identity, **stats}}``
    in the order asked for; one load (or vLLM engine) per base model, none when all its models are cached."""
    dataset, settings, args = plan.dataset, plan.settings, plan.args
    prompts, answers = list(dataset["prompt"]), [str(a) for a in dataset["answer"]]
    columns = {c: list(dataset[c]) for c in dataset.column_names if c not in ("prompt", "answer")}
    vllm_options = dict(max_model_len=args.vllm_max_model_len, gpu_memory_utilization=args.vllm_gpu_memory_utilization)
    dtype = args.dtype
    engine = " (vLLM)" if settings.engine == "vllm" else ""
    results: dict[str, dict[str, Any]] = {}
    for group in by_base(plan.specs).values():
        pending = any(not plan.caches[s.label].complete(prompts, settings.greedy) for s in group)
        for spec, model, tokenizer, lora in _turns(group, pending, settings, dtype, vllm_options):
            print(
                f"[pkpo-eval] {spec.label}: {len(prompts)} prompts x {settings.num_samples} samples{engine}",
                flush=True,
            )
            stats = evaluate_model(
                model, tokenizer, prompts, answers, plan.reward_funcs, settings, plan.ks,
                reward_names=plan.reward_names, reward_weights=plan.reward_weights, threshold=plan.success_threshold,
                columns=columns, cache=plan.caches[spec.label], lora_request=lora, label=spec.label,
            )  # fmt: skip
            results[spec.label] = {"model": spec.identity(), **stats}
        gc.collect()  # the group's model or engine is gone with its turns
    return {spec.label: results[spec.label] for spec in plan.specs}


def _k_advice(plan: EvalPlan, results: dict[str, Any]) -> None:
    """The k advisor's table per model (``--suggest_k``), printed and stored under each model's ``"k_advice"``."""
    from ..k_advisor import advice_table, suggest_k

    args = plan.args
    size = args.num_samples if args.num_generations is None else args.num_generations
    for label, stats in results["models"].items():
        advice = suggest_k(stats["correct"], stats["num_samples"], size, args.estimator)
        stats["k_advice"] = {"num_generations": size, "estimator": args.estimator,
                             "candidates": [asdict(a) for a in advice]}  # fmt: skip
        print(f"\nk advisor, {label}: training groups of {size}, estimator {args.estimator}\n")
        print(advice_table(advice))


def run(plan: EvalPlan) -> dict[str, Any]:
    """Evaluate every model of ``plan``; write results.json and the plot; print the table; release the caches'
    locks. Returns the results."""
    try:
        return _run(plan)
    finally:
        for cache in plan.caches.values():
            cache.close()


def _run(plan: EvalPlan) -> dict[str, Any]:
    args = plan.args
    results: dict[str, Any] = {
        "settings": {
            "sampling": asdict(plan.settings),
            "ks": plan.ks,
            "rewards": plan.reward_names,
            "reward_weights": plan.reward_weights,
            "success_threshold": plan.success_threshold,
            "data": {**asdict(plan.data_args), "split": plan.split},
            "num_prompts": len(plan.dataset),
        },
        "models": evaluate_models(plan),
    }
    out = Path(args.output_dir)
    write_results(results, out)
    print(markdown_table(results))
    if args.suggest_k:
        _k_advice(plan, results)
        write_results(results, out)
    print(f"\nresults: {out / 'results.json'}")
    if args.plot:
        from ..plotting import plot_pass_at_k_curves

        path = plot_pass_at_k_curves(results, out / "pass_at_k.png")
        results["plot"] = str(path)
        print(f"plot: {path}")
    return results
