"""Shared fixtures: a tiny Gemma-2 model and a character-level tokenizer, both built in memory
(`pkpo_trl.tiny`): nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Gemma-2 + tokenizer, loadable with `from_pretrained(path)`."""
    path = tmp_path_factory.mktemp("tiny-gemma2")
    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
