"""Tiny, offline stand-ins for a real model: a character-level tokenizer and a small Gemma-2.

Used by the tests, the notebooks' quick mode and the benchmarks, so that PKPO runs end to end on a
CPU without downloading anything. Random weights: they learn, they don't know anything.
"""

from __future__ import annotations

import string
from pathlib import Path

__all__ = [
    "GEMMA_LIKE_CHAT_TEMPLATE",
    "VLLM_TINY_GEMMA2",
    "build_char_tokenizer",
    "build_tiny_gemma2",
    "save_tiny_gemma2",
]

# Gemma's chat format, including its refusal of a system role.
GEMMA_LIKE_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# A tiny Gemma-2 that vLLM can also serve: vLLM 0.31's CPU attention takes head_dim 32, 64, 80, ..., 256, 512
# (vllm/v1/attention/backends/cpu_attn.py), not the default's 16 (hidden 32 / 2 heads): hidden 64, 2 heads -> 32.
VLLM_TINY_GEMMA2 = {"hidden_size": 64, "num_heads": 2}


def build_char_tokenizer():
    """A fast tokenizer with one token per character, Gemma's special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    chars = list(string.digits + string.ascii_letters + " +-*=.,:?!\n#()")
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("<start_of_turn>|<end_of_turn>|."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    tokenizer.chat_template = GEMMA_LIKE_CHAT_TEMPLATE
    return tokenizer


def build_tiny_gemma2(
    vocab_size: int,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    mlp_ratio: int = 2,
    **config_overrides,
):
    """A small ``Gemma2ForCausalLM`` with eager attention (Gemma-2 soft-caps its attention logits).

    ``config_overrides`` go to ``Gemma2Config`` (e.g. ``attn_logit_softcapping=None``).
    """
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    config = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=mlp_ratio * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=512,
        sliding_window=128,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        attn_implementation="eager",
    )
    config.update(config_overrides)
    return Gemma2ForCausalLM(Gemma2Config(**config))


def save_tiny_gemma2(path: str | Path, **model_kwargs) -> Path:
    """Save the character tokenizer and a tiny Gemma-2 (``build_tiny_gemma2(**model_kwargs)``) to ``path``.

    The directory loads with ``from_pretrained(path)``, and with ``vllm.LLM(path)`` when built with
    :data:`VLLM_TINY_GEMMA2`. Returns ``path``.
    """
    path = Path(path)
    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer), **model_kwargs)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
