"""`pkpo-eval`: pass@k curves of models and adapters on a task, from cached samples.

    pkpo-eval gemma-3-270m-gguf runs/quickstart --num_examples 64 --num_samples 16
    pkpo-eval --models google/gemma-2-2b-it runs/gsm8k --dataset_name openai/gsm8k --use_vllm true
    python -m pkpo_trl.evaluation --config my_eval.yaml

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

One idea a module, data flowing up the list (each imports only modules listed before it):

- :mod:`.errors`: the two errors, both raised before anything is generated.
- :mod:`.options`: the options (:class:`EvalArguments`).
- :mod:`.models`: ``--models`` entries resolved, adapters checked, models loaded.
- :mod:`.sampling`: completions sampled with transformers or vLLM (:class:`SamplingSettings`).
- :mod:`.scoring`: completions scored with the reward functions; pass@k over prompts.
- :mod:`.cache`: the per-model JSONL sample cache (:class:`SampleCache`).
- :mod:`.report`: ``results.json`` and the markdown table.
- :mod:`.plan`: the options resolved and checked before any generation (:func:`prepare` -> :class:`EvalPlan`).
- :mod:`.runner`: each model sampled, scored and summarised (:func:`evaluate_model`); the plan run (:func:`run`).
- :mod:`.cli`: the command line's parser and :func:`main`.
"""

from .cache import SampleCache
from .cli import main
from .errors import CacheError, EvalInputError
from .options import EvalArguments
from .plan import EvalPlan, prepare
from .runner import evaluate_model, run
from .sampling import SamplingSettings, sample_completions
from .scoring import pass_at_k_stats, score_completions

__all__ = [
    "CacheError",
    "EvalArguments",
    "EvalInputError",
    "EvalPlan",
    "SampleCache",
    "SamplingSettings",
    "evaluate_model",
    "main",
    "pass_at_k_stats",
    "prepare",
    "run",
    "sample_completions",
    "score_completions",
]
