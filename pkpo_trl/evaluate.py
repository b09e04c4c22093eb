"""`pkpo-eval`: pass@k curves of models and adapters on a task, from cached samples.

    pkpo-eval gemma-3-270m-gguf runs/quickstart --num_examples 64 --num_samples 16
    pkpo-eval --models google/gemma-2-2b-it runs/gsm8k --dataset_name openai/gsm8k --use_vllm true
    python -m pkpo_trl.evaluate --config my_eval.yaml

Each model is a hub id or local path (with ``--adapters`` a PEFT adapter on top), a ``pkpo-train``
output directory (its ``pkpo_run_config.json`` names base model, data, rewards and sampling settings,
which then become the defaults of this evaluation), or an adapter directory. All models are evaluated
on the same prompts with the same sampling settings and the same seeds (common random numbers, so the
comparison is paired), and reported in one table and one plot.

For each prompt ``n = --num_samples`` completions are sampled; each is scored with the training reward
registry (:mod:`pkpo_trl.rewards`) and the combined reward ``g = sum_f w_f r_f`` counts as a success when
``g >= success_threshold``. With ``c`` successes of ``n`` the unbiased estimate is
``pass@k = 1 - C(n-c, k) / C(n, k)`` (:func:`pkpo_trl.pass_at_k`, paper Eq. 8), averaged over the ``P``
prompts, with standard error ``std_p(pass@k_p) / sqrt(P)``. A completion that a reward function could not
score (it raised, or returned None) counts as failed.

Samples and scores go to one JSONL file per model under ``<output_dir>/samples/``, appended prompt by
prompt: an interrupted evaluation resumes where it stopped, and a re-score with another reward generates
nothing. The library functions (:func:`sample_completions`, :func:`score_completions`,
:func:`pass_at_k_stats`, :func:`evaluate_model`) work on a model in memory as well, without a cache.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .callbacks import combine_rewards, prompt_key
from .data import DataArguments, DatasetError, load_task
from .estimators import maxg_at_k, pass_at_k
from .rewards import get_reward_funcs

__all__ = [
    "CacheError",
    "EvalArguments",
    "EvalInputError",
    "ModelSpec",
    "SampleCache",
    "SamplingSettings",
    "evaluate_model",
    "main",
    "make_parser",
    "parse_and_run",
    "parse_args",
    "markdown_table",
    "pass_at_k_stats",
    "resolve_model",
    "run",
    "sample_completions",
    "score_completions",
]

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "pkpo_run_config.json"  # written by pkpo-train (pkpo_trl.train.RUN_CONFIG_FILE)
ADAPTER_CONFIG_FILE = "adapter_config.json"
CACHE_VERSION = 1


class EvalInputError(ValueError):
    """An evaluation cannot start: a model, adapter, data set or option is wrong (raised before generating)."""


class CacheError(EvalInputError):
    """A sample cache cannot be read, or was written with other settings."""


# ---------------------------------------------------------------------------------------------------------
# Command-line arguments
# ---------------------------------------------------------------------------------------------------------


@dataclass
class EvalArguments:
    """Options of `pkpo-eval`. Options left unset (None), and data options left at their defaults, are taken from
    the first `pkpo-train` run directory among ``--models`` (its ``pkpo_run_config.json``), else from the defaults
    stated."""

    models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Models to compare: hub ids, local model directories, the demo model `gemma-3-270m-gguf`, "
            "PEFT adapter directories, or `pkpo-train` output directories. Also accepted as leading positional "
            "arguments: `pkpo-eval BASE runs/x`."
        },
    )
    adapters: list[str] = field(
        default_factory=list,
        metadata={"help": "PEFT adapters, one per entry of --models (`none` for none), applied on top of that model."},
    )
    labels: list[str] = field(
        default_factory=list,
        metadata={"help": "Names of the models in the table and plot, one per model (default: from the paths)."},
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside each model directory to load (as in pkpo-train)."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Model weights' dtype: `auto` (float32 on CPU, bfloat16 on GPU), `float32`, `bfloat16`."},
    )
    split: str | None = field(
        default=None,
        metadata={"help": "Split to evaluate on (default: the data options' `dataset_test_split`, else `test`)."},
    )
    num_examples: int | None = field(
        default=None,
        metadata={
            "help": "Number of problems, a seeded subset (default: `num_eval_examples`, e.g. a run's; 0: all rows of "
            "a hub split, 200 of a built-in task)."
        },
    )
    num_samples: int = field(default=16, metadata={"help": "Completions sampled per prompt (n)."})
    ks: list[int] | None = field(
        default=None,
        metadata={"help": "The k of pass@k to report, each <= num_samples (default: powers of 2 up to n)."},
    )
    greedy: bool = field(
        default=False, metadata={"help": "Also decode one greedy completion per prompt and report its accuracy."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (default: the run's training temperature, else 1)."}
    )
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling (default: the run's, else 1)."})
    top_k: int | None = field(
        default=None, metadata={"help": "Top-k sampling, 0 for none (default: the run's, else 0)."}
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Completion length limit (default: the run's max_completion_length, else 256)."},
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Reward functions, as in pkpo-train: registered names or import paths 'module:function' or "
            "'pkg.module.function' (default: the run's, else math_verify)."
        },
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of the reward functions (default: the run's, else all 1)."}
    )
    success_threshold: float | None = field(
        default=None,
        metadata={
            "help": "A completion succeeds when its combined reward is >= this (default: the run's "
            "pkpo_success_threshold, else 1)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed (the same for every model: paired comparison)."})
    batch_size: int = field(
        default=64,
        metadata={"help": "Sequences per transformers `generate` call (prompts per call = batch_size // n)."},
    )
    use_vllm: bool = field(
        default=False,
        metadata={"help": "Generate with vLLM (must be installed); adapters are served with vLLM's LoRA support."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.85, metadata={"help": "Fraction of GPU memory vLLM may take."}
    )
    vllm_max_model_len: int | None = field(
        default=None, metadata={"help": "vLLM's max_model_len (prompt + completion); default: the model's."}
    )
    output_dir: str = field(
        default="eval_results",
        metadata={"help": "Where results.json, the plot and the sample caches (samples/<label>.jsonl) go."},
    )
    overwrite_cache: bool = field(
        default=False,
        metadata={"help": "Discard sample caches written with other settings instead of refusing to run."},
    )
    plot: bool = field(default=True, metadata={"help": "Write the pass@k-vs-k plot (pass_at_k.png)."})
    suggest_k: bool = field(
        default=False,
        metadata={
            "help": "k advisor: from each model's per-prompt success counts, print for every k (and the harmonic "
            "mixture) the fraction of prompts whose training groups of --num_generations get a nonzero PKPO "
            "signal, the expected advantage norm, and its share on the hardest quarter of prompts "
            "(docs/choosing-k.md)."
        },
    )
    num_generations: int | None = field(
        default=None, metadata={"help": "Training group size the k advisor assumes (default: --num_samples)."}
    )
    estimator: str = field(
        default="sloo_minus_one", metadata={"help": "PKPO estimator the k advisor assumes (pkpo_estimator)."}
    )

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise EvalInputError(f"--num_samples must be >= 1, got {self.num_samples}.")
        if self.ks is not None:
            if not self.ks or min(self.ks) < 1:
                raise EvalInputError(f"--ks must be positive integers, got {self.ks}.")
            if max(self.ks) > self.num_samples:
                raise EvalInputError(
                    f"--ks asks for pass@{max(self.ks)} but --num_samples is {self.num_samples}: no unbiased "
                    f"estimate of pass@k exists from fewer than k samples. Raise --num_samples or lower --ks."
                )
            self.ks = sorted(set(self.ks))
        if self.batch_size < 1:
            raise EvalInputError(f"--batch_size must be >= 1, got {self.batch_size}.")
        if self.suggest_k:
            from .estimators import ESTIMATORS

            if self.estimator not in ESTIMATORS:
                raise EvalInputError(f"--estimator {self.estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}.")
            size = self.num_samples if self.num_generations is None else self.num_generations
            if not 2 <= size <= self.num_samples:
                raise EvalInputError(
                    f"--num_generations {size} must lie in [2, --num_samples={self.num_samples}]: the k advisor "
                    "draws each training group from a prompt's samples. Raise --num_samples."
                )


def default_ks(n: int) -> list[int]:
    """Powers of 2 up to ``n``, and ``n`` itself."""
    ks = [2**i for i in range(int(math.log2(n)) + 1)]
    return ks if ks[-1] == n else [*ks, n]


def make_parser():
    """The command-line parser: evaluation and data options, YAML via ``--config``."""
    from trl import TrlParser

    return TrlParser((EvalArguments, DataArguments))


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """One model to evaluate: ``base`` (hub id, path or the demo model) with an optional PEFT ``adapter``."""

    label: str
    base: str
    gguf_file: str | None = None
    adapter: str | None = None
    run_config: dict[str, Any] | None = None  # the pkpo-train run config, when given a run directory

    def identity(self) -> dict[str, Any]:
        """What determines the samples (goes into the cache header)."""
        return {"base": self.base, "gguf_file": self.gguf_file, "adapter": self.adapter}


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything else with a separator or a leading ./ ~ is a local path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def resolve_model(entry: str, adapter: str | None = None, label: str | None = None, gguf_file: str | None = None):
    """The :class:`ModelSpec` of a ``--models`` entry (and its ``--adapters`` entry).

    A directory with ``pkpo_run_config.json`` is a pkpo-train run: its base model, with the directory as
    adapter when it holds one (else the directory is the fine-tuned model). A directory with
    ``adapter_config.json`` alone is an adapter on the base model it names.

    Raises:
        EvalInputError: a local path that does not exist, or an adapter directory without an adapter.
    """
    from .models import DEMO_MODEL

    path = Path(entry).expanduser()
    spec_label = label or (path.name if path.name else entry)
    if adapter is not None and str(adapter).lower() in ("none", ""):
        adapter = None
    if path.is_dir() and (path / RUN_CONFIG_FILE).is_file():
        try:
            run_config = json.loads((path / RUN_CONFIG_FILE).read_text())
            base = run_config["model"]["model_name_or_path"]
        except (OSError, ValueError, KeyError) as exc:
            raise EvalInputError(f"{path / RUN_CONFIG_FILE} is not a readable pkpo-train run config: {exc}") from exc
        run_gguf = run_config.get("script", {}).get("gguf_file")
        if (path / ADAPTER_CONFIG_FILE).is_file():
            if adapter is not None:
                raise EvalInputError(f"{entry} is a LoRA run directory already; it takes no --adapters entry.")
            return ModelSpec(spec_label, base, run_gguf or gguf_file, str(path), run_config)
        return ModelSpec(spec_label, str(path), None, adapter, run_config)
    if path.is_dir() and (path / ADAPTER_CONFIG_FILE).is_file() and not (path / "config.json").is_file():
        base = json.loads((path / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path")
        if not base:
            raise EvalInputError(f"The adapter {entry} does not name its base model; pass it with --adapters.")
        return ModelSpec(spec_label, base, gguf_file, str(path))
    if entry != DEMO_MODEL and not path.exists() and _looks_like_path(entry):
        raise EvalInputError(f"Model {entry!r}: no such file or directory.")
    if adapter is not None and not (Path(adapter) / ADAPTER_CONFIG_FILE).is_file():
        raise EvalInputError(f"Adapter {adapter!r}: no {ADAPTER_CONFIG_FILE} there (not a PEFT adapter directory).")
    return ModelSpec(spec_label, entry, gguf_file, str(adapter) if adapter else None)


def _load_config(spec: ModelSpec):
    from transformers import AutoConfig

    from .models import resolve_model_path

    try:
        path, gguf = resolve_model_path(spec.base, spec.gguf_file)
        return AutoConfig.from_pretrained(path, **({"gguf_file": gguf} if gguf else {}))
    except Exception as exc:  # transformers raises OSError/ValueError/EnvironmentError variants
        raise EvalInputError(f"Cannot load the model {spec.base!r} (for {spec.label!r}): {exc}") from exc


def _adapter_state_shapes(adapter: str) -> dict[str, tuple[int, ...]]:
    directory = Path(adapter)
    if (directory / "adapter_model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(directory / "adapter_model.safetensors"), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    if (directory / "adapter_model.bin").is_file():
        state = torch.load(directory / "adapter_model.bin", map_location="meta", weights_only=True)
        return {key: tuple(value.shape) for key, value in state.items()}
    raise EvalInputError(f"Adapter {adapter!r} has no adapter_model.safetensors or adapter_model.bin.")


def check_adapter(spec: ModelSpec, config) -> None:
    """Check that every LoRA matrix of ``spec.adapter`` fits a module of the base model, on an empty (meta)
    model built from ``config``: ``lora_A`` is ``[r, in_features]``, ``lora_B`` is ``[out_features, r]``.

    Raises:
        EvalInputError: a module is missing or has other dimensions (an adapter for another base model).
    """
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    shapes = _adapter_state_shapes(spec.adapter)
    named = json.loads((Path(spec.adapter) / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path")
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    for key, shape in shapes.items():
        for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            name = key.split(part)[0].removeprefix("base_model.model.")
            try:
                module = model.get_submodule(name)
            except AttributeError:
                module = None
            features = getattr(module, "in_features" if dim == 1 else "out_features", None)
            if features != shape[dim]:
                found = "has no such module" if module is None else f"has {features} there"
                raise EvalInputError(
                    f"Adapter {spec.adapter!r} does not fit the base model {spec.base!r}: its {key} has shape "
                    f"{list(shape)}, the base model {found}. The adapter was trained on {named!r}."
                )


def load_model(spec: ModelSpec, dtype: str = "auto", device: str | None = None, adapter: bool = True):
    """``(model, tokenizer)`` of ``spec`` in eval mode, its adapter (unless ``adapter=False``) merged into the
    weights."""
    from .models import load_model_and_tokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    model, tokenizer = load_model_and_tokenizer(spec.base, gguf_file=spec.gguf_file, torch_dtype=dtype)
    if spec.adapter and adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
    return model.to(device).eval(), tokenizer


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------


class _CountFailures(logging.Filter):
    """Swallows the rewards module's per-completion failure warnings, counting them (reported once)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if "raised for completion" in record.msg:
            self.count += 1
            self.first = self.first or record.getMessage()
            return False
        return True


@contextlib.contextmanager
def _failures_counted() -> Iterator[_CountFailures]:
    rewards_logger = logging.getLogger(get_reward_funcs.__module__)  # where the per-completion warnings come from
    counter = _CountFailures()
    rewards_logger.addFilter(counter)
    try:
        yield counter
    finally:
        rewards_logger.removeFilter(counter)


def score_completions(
    reward_func: Callable[..., Any],
    prompts: Sequence[Any],
    completions: Sequence[Sequence[str]],
    columns: dict[str, Sequence[Any]],
    what: str = "",
) -> list[list[float]]:
    """Rewards ``r[p][j]`` of completion ``j`` of prompt ``p`` from one TRL reward function, called as TRL
    calls it (``prompts``, ``completions``, the data set's other columns repeated per completion;
    ``completion_ids`` and ``trainer_state`` are None). Conversational prompts get conversational
    completions. A completion the function cannot score (it raised, or returned None) gets NaN; failures
    are reported in one warning.
    """
    sizes = [len(c) for c in completions]
    flat_prompts = [p for p, size in zip(prompts, sizes, strict=True) for _ in range(size)]
    flat = [
        text if isinstance(p, str) else [{"role": "assistant", "content": text}]
        for p, group in zip(prompts, completions, strict=True)
        for text in group
    ]
    kwargs = {
        key: [v for v, size in zip(values, sizes, strict=True) for _ in range(size)] for key, values in columns.items()
    }
    name = getattr(reward_func, "__name__", type(reward_func).__name__)
    with _failures_counted() as failures:
        rewards = reward_func(
            prompts=flat_prompts, completions=flat, completion_ids=None, trainer_state=None,
            log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None, **kwargs,
        )  # fmt: skip
    if failures.count:
        logger.warning(
            "Reward %r raised on %d of %d completions%s; they are scored as failed. First: %s",
            name, failures.count, len(flat), f" of {what}" if what else "", failures.first,
        )  # fmt: skip
    values = [math.nan if r is None else float(r) for r in rewards]
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------


def _mean_se(values: torch.Tensor) -> dict[str, float]:
    p = values.shape[-1]
    se = values.std(-1).item() / math.sqrt(p) if p > 1 else math.nan
    return {"mean": values.mean(-1).item(), "se": se}


def pass_at_k_stats(
    rewards: torch.Tensor, ks: Sequence[int], threshold: float = 1.0, greedy: torch.Tensor | None = None
) -> dict[str, Any]:
    """pass@k (and max@k) over prompts from combined rewards ``[P, n]`` (NaN = failed).

    With ``c_p`` successes (``reward >= threshold``) among the ``n`` samples of prompt ``p``:
    ``pass@k = mean_p [1 - C(n - c_p, k) / C(n, k)]`` (Eq. 8), standard error ``std_p / sqrt(P)``.
    For non-binary rewards also ``max@k = mean_p maxg@k_p`` (Eq. 19, failed samples scored 0).

    Returns:
        ``{"pass@k": {k: {"mean", "se"}}, "max@k": ... (non-binary only), "solved": prompts with c_p > 0,
        "num_prompts", "num_samples", "num_failed", "mean_reward", "correct": [c_p], "greedy": {...}}``.
    """
    num_prompts, n = rewards.shape
    failed = rewards.isnan()
    scored = rewards.nan_to_num(0.0).double()
    correct = (scored >= threshold).logical_and(~failed).sum(-1)
    stats: dict[str, Any] = {
        "num_prompts": num_prompts,
        "num_samples": n,
        "pass@k": {str(k): _mean_se(pass_at_k(n, correct, k)) for k in ks},
        "solved": int((correct > 0).sum()),
        "num_failed": int(failed.sum()),
        "mean_reward": scored.mean().item(),
        "correct": correct.tolist(),
    }
    binary = bool(((scored == 0) | (scored == 1)).all()) and threshold == 1.0
    if not binary:
        stats["max@k"] = {str(k): _mean_se(maxg_at_k(scored, k)) for k in ks}
    if greedy is not None:
        hit = (greedy.nan_to_num(0.0) >= threshold).logical_and(~greedy.isnan()).double()
        stats["greedy"] = {**_mean_se(hit), "solved": int(hit.sum())}
    return stats


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------


def _is_reward(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _record_problem(record: Any, num_samples: int | None) -> str | None:
    """What is wrong with a cache record (not a dict, a missing field, a value of the wrong type, or not
    ``num_samples`` samples), or None: a record of the wrong shape must not be used as samples or scores."""
    if not isinstance(record, dict) or record.get("kind") not in ("samples", "scores"):
        return "not a samples or scores record"
    strings = ("key",) if record["kind"] == "samples" else ("key", "reward", "answer")
    if bad := [name for name in strings if not isinstance(record.get(name), str)]:
        return f"{', '.join(bad)} must be a string"
    samples = record.get("samples")
    if not isinstance(samples, list) or (num_samples is not None and len(samples) != num_samples):
        return f"samples must be a list of {num_samples} entries"
    greedy = record.get("greedy")
    if record["kind"] == "samples":
        if not all(isinstance(text, str) for text in samples) or not (greedy is None or isinstance(greedy, str)):
            return "completions must be strings"
    elif not all(map(_is_reward, samples)) or not _is_reward(greedy):
        return "rewards must be numbers or null"
    return None


class SampleCache:
    """An append-only JSONL file of one model's samples and scores.

    Line 1 is a header (model identity and :class:`SamplingSettings`); then ``{"kind": "samples", "key",
    "samples", "greedy"}`` lines (``key`` = :func:`prompt_key`) and ``{"kind": "scores", "reward", "key",
    "answer", "samples", "greedy"}`` lines. A last line cut off mid-write (an interrupted run) is dropped.
    """

    def __init__(self, path: str | Path, header: dict[str, Any], overwrite: bool = False):
        self.path = Path(path)
        self.header = {"kind": "header", "version": CACHE_VERSION, **header}
        self.samples: dict[str, tuple[list[str], str | None]] = {}
        self.scores: dict[tuple[str, str, str], tuple[list[float], float | None]] = {}
        if self.path.exists() and not overwrite:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.header) + "\n")

    def _read(self) -> None:
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"Cannot read the sample cache {self.path}: {exc}") from exc
        lines = text.split("\n")
        complete, tail = lines[:-1], lines[-1]
        if tail:
            # A line without its newline was cut off by an interruption: drop it, and cut it from the file so
            # that the next append starts on a fresh line.
            logger.warning("Sample cache %s: dropping an incomplete last line (interrupted run).", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(len(text.encode()) - len(tail.encode()))
        records = []
        for number, line in enumerate(complete, 1):
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise CacheError(
                    f"The sample cache {self.path} is corrupt (line {number} is not JSON: {exc}). Delete it or pass "
                    "--overwrite_cache true."
                ) from exc
        if not records or records[0].get("kind") != "header":
            raise CacheError(f"{self.path} is not a pkpo-eval sample cache (no header line).")
        previous = records[0]
        if previous != self.header:
            diff = sorted(
                f"{key}: {previous.get(key)!r} -> {self.header.get(key)!r}"
                for key in set(previous) | set(self.header)
                if previous.get(key) != self.header.get(key)
            )
            raise CacheError(
                f"The sample cache {self.path} was written with other settings ({'; '.join(diff)}). Use another "
                "--output_dir, or pass --overwrite_cache true to discard it."
            )
        n = self.header.get("sampling", {}).get("num_samples")
        for number, record in enumerate(records[1:], 2):
            if problem := _record_problem(record, n):
                raise CacheError(
                    f"The sample cache {self.path} has a malformed record on line {number} ({problem}): "
                    f"{record!r:.200}. Delete the file or pass --overwrite_cache true."
                )
            if record["kind"] == "samples":
                self.samples[record["key"]] = (record["samples"], record.get("greedy"))
            else:
                rewards = [math.nan if r is None else float(r) for r in record["samples"]]
                greedy = record.get("greedy")
                self.scores[record["reward"], record["key"], record["answer"]] = (
                    rewards,
                    math.nan if greedy is None and record.get("has_greedy") else greedy,
                )

    def _append(self, records: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()

    def complete(self, prompts: Sequence[Any], greedy: bool) -> bool:
        """Whether every prompt's samples (and greedy completion, if wanted) are cached."""
        return all(
            key in self.samples and (not greedy or self.samples[key][1] is not None)
            for key in map(prompt_key, prompts)
        )

    def add_samples(self, keys: list[str], samples: list[list[str]], greedy: list[str | None]) -> None:
        """Store the samples of prompts ``keys`` not stored yet."""
        new = [(k, s, g) for k, s, g in zip(keys, samples, greedy, strict=True) if k not in self.samples]
        for k, s, g in new:
            self.samples[k] = (s, g)
        self._append([{"kind": "samples", "key": k, "samples": s, "greedy": g} for k, s, g in new])

    def add_scores(self, reward: str, items: list[tuple[str, str, list[float], float | None]]) -> None:
        """Store the rewards ``(key, answer, sample rewards, greedy reward)`` of reward function ``reward``."""
        for key, answer, rewards, greedy in items:
            self.scores[reward, key, answer] = (rewards, greedy)
        self._append(
            [
                {
                    "kind": "scores",
                    "reward": reward,
                    "key": key,
                    "answer": answer,
                    "samples": _no_nan(rewards),
                    "greedy": _no_nan(greedy),
                    "has_greedy": greedy is not None,
                }  # fmt: skip
                for key, answer, rewards, greedy in items
            ]
        )


# ---------------------------------------------------------------------------------------------------------
# One model
# ---------------------------------------------------------------------------------------------------------


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
    elif settings.engine == "vllm":
        new = sample_completions_vllm(model, tokenizer, prompts, settings, lora_request, skip=have, on_chunk=store)
    else:
        new = sample_completions(model, tokenizer, prompts, settings, skip=have, on_chunk=store, progress=progress)
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


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------

_TRAIN_ONLY_DATA_FIELDS = ("dataset_train_split", "num_train_examples")


def _apply_run_config(args: EvalArguments, data_args: DataArguments, specs: list[ModelSpec]) -> None:
    """Fill unset options from the first run directory's config (data fields left at their defaults, too)."""
    runs = [s for s in specs if s.run_config is not None]
    if not runs:
        return
    run = runs[0].run_config
    for other in runs[1:]:
        mine = {k: v for k, v in run.get("data", {}).items() if k not in _TRAIN_ONLY_DATA_FIELDS}
        theirs = {k: v for k, v in other.run_config.get("data", {}).items() if k not in _TRAIN_ONLY_DATA_FIELDS}
        if mine != theirs:
            logger.warning(
                "%s and %s were trained on different data settings; evaluating both on %s's.",
                runs[0].label, other.label, runs[0].label,
            )  # fmt: skip
    defaults = DataArguments()
    for f in fields(DataArguments):
        if f.name in run.get("data", {}) and getattr(data_args, f.name) == getattr(defaults, f.name):
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


def _labels(args: EvalArguments, specs: list[ModelSpec]) -> None:
    seen: dict[str, int] = {}
    for spec in specs:
        base = spec.label
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            spec.label = f"{base}-{seen[base]}"


def prepare(args: EvalArguments, data_args: DataArguments):
    """Resolve and check everything that can be wrong before any generation: models, adapters, data, rewards,
    caches. Returns ``(specs, dataset, reward_funcs, reward_names, weights, settings, ks, caches)``."""
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
    _labels(args, specs)
    _apply_run_config(args, data_args, specs)
    # A GGUF config takes seconds to read: once per base.
    configs = {base: _load_config(group[0]) for base, group in _by_base(specs).items()}
    for spec in specs:
        if spec.adapter:
            check_adapter(spec, configs[spec.base, spec.gguf_file])
    reward_names = list(args.reward_funcs or ["math_verify"])
    reward_funcs = get_reward_funcs(reward_names, answer_column="answer")
    weights = args.reward_weights or [1.0] * len(reward_names)
    if len(weights) != len(reward_names):
        raise EvalInputError(f"{len(weights)} reward weights for {len(reward_names)} reward functions.")
    split = args.split or data_args.dataset_test_split or "test"
    num_examples = args.num_examples if args.num_examples is not None else data_args.num_eval_examples
    num_examples = num_examples or None  # 0: all
    model_type = next(iter(configs.values())).model_type  # the first model's
    dataset = load_task(data_args, split, num_examples=num_examples, model_type=model_type)
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
    caches = {
        spec.label: SampleCache(
            Path(args.output_dir) / "samples" / f"{spec.label}.jsonl",
            {"model": spec.identity(), "sampling": asdict(settings)},
            overwrite=args.overwrite_cache,
        )
        for spec in specs
    }
    return specs, dataset, reward_funcs, reward_names, weights, settings, ks, caches


def _by_base(specs: list[ModelSpec]) -> dict[tuple[str, str | None], list[ModelSpec]]:
    groups: dict[tuple[str, str | None], list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.base, spec.gguf_file), []).append(spec)
    return groups


def _vllm_engine(spec: ModelSpec, settings: SamplingSettings, args: EvalArguments, max_lora_rank: int):
    from vllm import LLM

    from .models import resolve_model_path

    path, gguf = resolve_model_path(spec.base, spec.gguf_file)
    model = str(Path(path) / gguf) if gguf else path
    return LLM(
        model=model,
        tokenizer=path if not gguf else None,
        seed=settings.seed,
        enable_lora=max_lora_rank > 0,
        max_lora_rank=max(8, 1 << (max_lora_rank - 1).bit_length()),  # vLLM takes 8, 16, 32, ... only
        max_model_len=args.vllm_max_model_len,
        gpu_memory_utilization=args.vllm_gpu_memory_utilization,
    )


def run(args: EvalArguments, data_args: DataArguments) -> dict[str, Any]:
    """Evaluate every model of ``args``; write results.json and the plot; print the table. Returns the results."""
    specs, dataset, reward_funcs, reward_names, weights, settings, ks, caches = prepare(args, data_args)
    prompts, answers = list(dataset["prompt"]), [str(a) for a in dataset["answer"]]
    extra = {c: list(dataset[c]) for c in dataset.column_names if c not in ("prompt", "answer")}
    threshold = 1.0 if args.success_threshold is None else args.success_threshold
    results: dict[str, Any] = {
        "settings": {
            "sampling": asdict(settings),
            "ks": ks,
            "rewards": reward_names,
            "reward_weights": weights,
            "success_threshold": threshold,
            "data": {**asdict(data_args), "split": args.split or data_args.dataset_test_split or "test"},
            "num_prompts": len(prompts),
        },
        "models": {},
    }
    common = dict(reward_names=reward_names, reward_weights=weights, threshold=threshold, columns=extra, progress=True)
    if args.use_vllm:
        # One engine per base model; its adapters are served by vLLM's LoRA support (no merged copies on disk).
        from vllm.lora.request import LoRARequest

        for group in _by_base(specs).values():
            ranks = [json.loads((Path(s.adapter) / ADAPTER_CONFIG_FILE).read_text())["r"] for s in group if s.adapter]
            llm, tokenizer = None, None
            if any(not caches[s.label].complete(prompts, settings.greedy) for s in group):
                llm = _vllm_engine(group[0], settings, args, max(ranks, default=0))
                tokenizer = llm.get_tokenizer()
            for number, spec in enumerate(group, 1):
                lora = LoRARequest(spec.label, number, spec.adapter) if spec.adapter else None
                print(f"[pkpo-eval] {spec.label}: {len(prompts)} prompts x {settings.num_samples} samples (vLLM)")
                results["models"][spec.label] = {
                    "model": spec.identity(),
                    **evaluate_model(
                        llm, tokenizer, prompts, answers, reward_funcs, settings, ks,
                        cache=caches[spec.label], lora_request=lora, label=spec.label, **common,
                    ),
                }  # fmt: skip
            del llm
            gc.collect()
    else:
        # One load per base model (a GGUF base takes minutes to de-quantize on a CPU); each adapter is put on top
        # of it for its turn and taken off again (PEFT's unload), the base itself is evaluated first.
        for group in _by_base(specs).values():
            pending = [s for s in group if not caches[s.label].complete(prompts, settings.greedy)]
            base = load_model(pending[0], args.dtype, adapter=False) if pending else None
            for spec in sorted(group, key=lambda s: s.adapter is not None):
                print(f"[pkpo-eval] {spec.label}: {len(prompts)} prompts x {settings.num_samples} samples", flush=True)
                model, tokenizer = (None, None) if base is None else base
                if model is not None and spec.adapter:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, spec.adapter).eval()
                results["models"][spec.label] = {
                    "model": spec.identity(),
                    **evaluate_model(
                        model, tokenizer, prompts, answers, reward_funcs, settings, ks,
                        cache=caches[spec.label], label=spec.label, **common,
                    ),
                }  # fmt: skip
                if model is not None and spec.adapter:
                    base = (model.unload(), tokenizer)
            del base
            gc.collect()
        results["models"] = {spec.label: results["models"][spec.label] for spec in specs}  # the order asked for
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_no_nan(results), indent=2, allow_nan=False))
    print(markdown_table(results))
    if args.suggest_k:
        _print_k_advice(args, results)
        (out / "results.json").write_text(json.dumps(_no_nan(results), indent=2, allow_nan=False))
    print(f"\nresults: {out / 'results.json'}")
    if args.plot:
        from .plotting import plot_pass_at_k_curves

        path = plot_pass_at_k_curves(results, out / "pass_at_k.png")
        results["plot"] = str(path)
        print(f"plot: {path}")
    return results


def _print_k_advice(args: EvalArguments, results: dict[str, Any]) -> None:
    """The k advisor's table per model (``--suggest_k``), also stored under each model's ``"k_advice"``."""
    from dataclasses import asdict as as_dict

    from .k_advisor import advice_table, suggest_k

    size = args.num_samples if args.num_generations is None else args.num_generations
    for label, stats in results["models"].items():
        advice = suggest_k(stats["correct"], stats["num_samples"], size, args.estimator)
        stats["k_advice"] = {"num_generations": size, "estimator": args.estimator,
                             "candidates": [as_dict(a) for a in advice]}  # fmt: skip
        print(f"\nk advisor, {label}: training groups of {size}, estimator {args.estimator}\n")
        print(advice_table(advice))


def _no_nan(obj: Any) -> Any:
    # Strict JSON has no NaN (a standard error over one prompt): write null.
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {key: _no_nan(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_no_nan(value) for value in obj]
    return obj


def _nan_free(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per model: pass@k ± standard error for every k, prompts solved at least once, greedy accuracy."""
    ks = results["settings"]["ks"]
    models = results["models"]
    has_greedy = any("greedy" in m for m in models.values())
    header = ["model", *[f"pass@{k}" for k in ks], "solved", *(["greedy"] if has_greedy else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, m in models.items():
        cells = [label]
        cells += [f"{_nan_free(m['pass@k'][str(k)]['mean'])} ± {_nan_free(m['pass@k'][str(k)]['se'])}" for k in ks]
        cells.append(f"{m['solved']}/{m['num_prompts']}")
        if has_greedy:
            cells.append(_nan_free(m["greedy"]["mean"]) if "greedy" in m else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _split_positional(argv: list[str]) -> list[str]:
    # `pkpo-eval A B --opt x` means `--models A B --opt x`: HfArgumentParser has no positional arguments.
    positional = []
    while argv and not argv[0].startswith("-"):
        positional.append(argv.pop(0))
    return ["--models", *positional, *argv] if positional else argv


def parse_args(argv: Sequence[str]) -> tuple[EvalArguments, DataArguments]:
    """``(EvalArguments, DataArguments)`` of a command line whose model paths may come first, last or between
    options (``pkpo-eval --num_samples 4 runs/x``): what no option takes is a model; an unknown option is an error.

    Raises:
        EvalInputError: an option's value is refused (the message names it).
    """
    parser = make_parser()
    try:
        *parsed, remaining = parser.parse_args_and_config(
            args=_split_positional(list(argv)), return_remaining_strings=True
        )
    except EvalInputError:
        raise
    except ValueError as exc:  # a DataArguments value (prompt_format, num_eval_examples, ...)
        raise EvalInputError(str(exc)) from exc
    args, data_args = parsed
    if unknown := [item for item in remaining if item.startswith("-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.models = [*args.models, *remaining]
    return args, data_args


def parse_and_run(argv: Sequence[str]) -> dict[str, Any]:
    """Parse command-line arguments (:func:`parse_args`) and :func:`run` them."""
    return run(*parse_args(argv))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (`pkpo-eval`, `python -m pkpo_trl.evaluate`): bad input ends with a one-line message."""
    try:
        parse_and_run(sys.argv[1:] if argv is None else argv)
    except (EvalInputError, DatasetError) as exc:
        raise SystemExit(f"pkpo-eval: error: {exc}") from exc


if __name__ == "__main__":
    main()
