"""The plan of an evaluation (:class:`EvalPlan`): the options resolved (a run directory's settings filled in) and
everything that can be wrong checked (models, adapters, data, rewards, caches) before anything is generated."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..data import DataArguments, load_task
from ..metrics import default_ks
from ..rewards import get_reward_funcs
from ..tasks import TaskSizeError
from .cache import SampleCache
from .errors import EvalInputError
from .fingerprint import FileHashes, model_fingerprint
from .models import (
    ModelSpec,
    by_base,
    check_adapter,
    check_tokenizer,
    default_device,
    load_config,
    resolve_dtype,
    resolve_model,
)
from .options import TRAIN_ONLY_DATA_FIELDS, EvalArguments
from .sampling import SamplingSettings

__all__ = ["EvalPlan", "prepare"]

logger = logging.getLogger(__name__)


@dataclass
class EvalPlan:
    """What :func:`prepare` resolved and checked: everything an evaluation needs, before any generation."""

    args: EvalArguments  # the options, a run directory's settings filled in
    data_args: DataArguments
    specs: list[ModelSpec]  # the models, in the order asked for (labels made unique)
    dataset: Any  # the prompts (a `datasets.Dataset` with "prompt", "answer" and the task's other columns)
    split: str
    reward_funcs: list[Callable[..., Any]]
    reward_names: list[str]
    reward_weights: list[float]
    success_threshold: float
    settings: SamplingSettings
    ks: list[int]
    caches: dict[str, SampleCache]  # label -> that model's sample cache


def _apply_run_config(args: EvalArguments, data_args: DataArguments, specs: list[ModelSpec]) -> None:
    """Fill the options the user did not give (``args.typed``) from the first run directory's config: those left
    unset (None), and data options at their defaults."""
    runs = [s for s in specs if s.run_config is not None]
    if not runs:
        return
    run = runs[0].run_config
    for other in runs[1:]:
        mine = {k: v for k, v in run.get("data", {}).items() if k not in TRAIN_ONLY_DATA_FIELDS}
        theirs = {k: v for k, v in other.run_config.get("data", {}).items() if k not in TRAIN_ONLY_DATA_FIELDS}
        if mine != theirs:
            logger.warning(
                "%s and %s were trained on different data settings; evaluating both on %s's.",
                runs[0].label, other.label, runs[0].label,
            )  # fmt: skip
    defaults = DataArguments()
    for f in fields(DataArguments):
        given = f.name in args.typed or getattr(data_args, f.name) != getattr(defaults, f.name)
        if f.name in run.get("data", {}) and not given:
            setattr(data_args, f.name, run["data"][f.name])
    data_args.__post_init__()
    training, script = run.get("training", {}), run.get("script", {})
    for name in ("temperature", "top_p", "top_k"):
        if getattr(args, name) is None and training.get(name) is not None:
            setattr(args, name, training[name])
    if args.max_new_tokens is None:
        args.max_new_tokens = training.get("max_completion_length")
    if args.reward_funcs is None:
        args.reward_funcs = script.get("reward_funcs")
    if args.reward_weights is None:
        args.reward_weights = training.get("reward_weights")
    if args.success_threshold is None:
        args.success_threshold = training.get("pkpo_success_threshold")


def _unique_labels(specs: list[ModelSpec]) -> None:
    seen: dict[str, int] = {}
    for spec in specs:
        base = spec.label
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            spec.label = f"{base}-{seen[base]}"


def _open_caches(specs: list[ModelSpec], settings: SamplingSettings, args: EvalArguments) -> dict[str, SampleCache]:
    """Each model's :class:`SampleCache`, its header the content fingerprint of base model and adapter and the
    settings that change samples (the dtype among them)."""
    samples = Path(args.output_dir) / "samples"
    hashes = FileHashes(samples / "file_hashes.json")
    from ..models import resolve_model_path

    fingerprints: dict[tuple[str, str | None], dict[str, Any]] = {}
    for base, gguf_file in by_base(specs):
        fingerprints[base, gguf_file] = model_fingerprint(*resolve_model_path(base, gguf_file), hashes)
    dtype = resolve_dtype(args.dtype, default_device()) if settings.engine == "transformers" else args.dtype
    caches: dict[str, SampleCache] = {}
    try:
        for spec in specs:
            model = {
                "base": fingerprints[spec.base, spec.gguf_file],
                "adapter": model_fingerprint(spec.adapter, None, hashes) if spec.adapter else None,
            }
            header = {"model": model, "sampling": {**settings.identity(), "dtype": dtype}}
            info = {"model": spec.identity()}  # paths, for the reader: not compared
            caches[spec.label] = SampleCache(
                samples / f"{spec.label}.jsonl", header, overwrite=args.overwrite_cache, info=info
            )
    except BaseException:  # release the locks already taken: the error ends this evaluation
        for cache in caches.values():
            cache.close()
        raise
    return caches


def prepare(args: EvalArguments, data_args: DataArguments) -> EvalPlan:
    """Resolve and check everything that can be wrong before any generation: models, adapters, data, rewards,
    caches."""
    if not args.models:
        raise EvalInputError("No model to evaluate: pass model paths/ids (`pkpo-eval MODEL [MODEL ...]`).")
    for option in ("adapters", "labels"):
        given = getattr(args, option)
        if given and len(given) != len(args.models):
            raise EvalInputError(f"--{option} needs one entry per model ({len(args.models)}), got {len(given)}.")
    specs = [
        resolve_model(
            entry,
            args.adapters[i] if args.adapters else None,
            args.labels[i] if args.labels else None,
            args.gguf_file,
        )
        for i, entry in enumerate(args.models)
    ]
    _unique_labels(specs)
    _apply_run_config(args, data_args, specs)
    for group in by_base(specs).values():
        check_tokenizer(group[0])
    # A GGUF config takes seconds to read: once per base.
    configs = {base: load_config(group[0]) for base, group in by_base(specs).items()}
    for spec in specs:
        if spec.adapter:
            check_adapter(spec, configs[spec.base, spec.gguf_file])
    reward_names = list(args.reward_funcs or ["math_verify"])
    try:
        reward_funcs = get_reward_funcs(reward_names, answer_column="answer")
    except ValueError as exc:  # an unknown name or an import path that does not resolve: the user's to fix
        raise EvalInputError(f"--reward_funcs: {exc}") from exc
    weights = args.reward_weights or [1.0] * len(reward_names)
    if len(weights) != len(reward_names):
        raise EvalInputError(f"{len(weights)} reward weights for {len(reward_names)} reward functions.")
    split = args.split or data_args.dataset_test_split or "test"
    num_examples = args.num_examples if args.num_examples is not None else data_args.num_eval_examples
    num_examples = num_examples or None  # 0: all
    model_type = next(iter(configs.values())).model_type  # the first model's
    try:
        dataset = load_task(data_args, split, num_examples=num_examples, model_type=model_type)
    except TaskSizeError as exc:  # name this command's options (tasks.py speaks of "examples" and "digits")
        default = "num_eval_examples" if data_args.num_eval_examples else "200 for a built-in task"
        raise EvalInputError(
            f"{exc.summary} Pass --num_examples {exc.limit} or fewer (default: {default}), or raise --task_digits or "
            "--task_operands."
        ) from exc
    ks = list(args.ks or default_ks(args.num_samples))
    settings = SamplingSettings(
        num_samples=args.num_samples,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_p=1.0 if args.top_p is None else args.top_p,
        top_k=0 if args.top_k is None else args.top_k,
        max_new_tokens=args.max_new_tokens or 256,
        seed=args.seed,
        batch_size=args.batch_size,
        greedy=args.greedy,
        engine="vllm" if args.use_vllm else "transformers",
    )
    if args.use_vllm:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise EvalInputError("--use_vllm needs vLLM: pip install 'pkpo-trl[vllm]'.") from exc
    caches = _open_caches(specs, settings, args)
    threshold = 1.0 if args.success_threshold is None else args.success_threshold
    return EvalPlan(
        args, data_args, specs, dataset, split, reward_funcs, reward_names, weights, threshold, settings, ks, caches
    )
