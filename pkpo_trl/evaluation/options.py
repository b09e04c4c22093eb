"""The options of `pkpo-eval` (:class:`EvalArguments`): one dataclass whose help strings are the command line's
``--help``, read by :func:`~pkpo_trl.evaluation.plan.prepare`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import EvalInputError

__all__ = ["EvalArguments"]


@dataclass
class EvalArguments:
    """Options of `pkpo-eval`. Options the user did not give (on the command line or in the --config file) are taken
    from the first `pkpo-train` run directory among ``--models`` (its ``pkpo_run_config.json``), else from the
    defaults stated. (In Python, where what was given cannot be told from a default, ``typed`` names them; a data
    option at its default is taken from the run.)"""

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
        metadata={"help": "The k of pass@k to report, each <= num_samples (default: powers of 2 up to n, and n)."},
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

    # The options the user gave (command line or --config file), which a run directory's values never replace; set
    # by the command line's parser. Not an option itself (init=False: HfArgumentParser skips it).
    typed: set[str] = field(default_factory=set, init=False, repr=False)

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
            from ..estimators import ESTIMATORS

            if self.estimator not in ESTIMATORS:
                raise EvalInputError(f"--estimator {self.estimator!r} is unknown; choose one of {sorted(ESTIMATORS)}.")
            size = self.num_samples if self.num_generations is None else self.num_generations
            if not 2 <= size <= self.num_samples:
                raise EvalInputError(
                    f"--num_generations {size} must lie in [2, --num_samples={self.num_samples}]: the k advisor "
                    "draws each training group from a prompt's samples. Raise --num_samples."
                )


# Data options only pkpo-train reads: a run's values of these do not become the evaluation's.
TRAIN_ONLY_DATA_FIELDS = ("dataset_train_split", "num_train_examples")
# Not listed by --help but accepted (a run's config may carry them): what only pkpo-train reads, and what
# DataArguments refuses anyway.
HIDDEN_OPTIONS = (*TRAIN_ONLY_DATA_FIELDS, "dataset_streaming", "ignore_bias_buffers")
