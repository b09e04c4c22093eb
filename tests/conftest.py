"""Shared fixtures: a tiny Gemma-2 model and a character-level tokenizer, both built in memory.

Nothing is downloaded: the tokenizer is a `tokenizers` WordLevel model over single characters with
a Gemma-like chat template (no system role), the model a 2-layer `Gemma2ForCausalLM`.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

GEMMA_LIKE_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def build_char_tokenizer():
    """A character-level fast tokenizer with Gemma's special tokens and chat template."""
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


def build_tiny_gemma2(vocab_size: int, seed: int = 0):
    """A 2-layer Gemma-2 (eager attention, as Gemma-2 needs for its logit soft-capping)."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        attn_implementation="eager",
    )
    return Gemma2ForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Gemma-2 + tokenizer, loadable with `from_pretrained(path)`."""
    path = tmp_path_factory.mktemp("tiny-gemma2")
    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
