"""What a model's samples depend on, by content: the sha256 of the files ``from_pretrained`` reads (weights, config,
tokenizer), so that a sample cache knows the weights that wrote it, wherever they lie and whatever their path.

Hashing a large checkpoint takes seconds; each file's hash is remembered in a small JSON file beside the caches,
keyed by ``(path, size, mtime_ns)``, so it is computed again only when the file was rewritten (a retraining into
the same directory rewrites every file)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["FileHashes", "model_fingerprint"]

# The files transformers and PEFT read to build a model and its tokenizer: what decides its samples. Other files of
# a run directory (training_args.bin, the model card, logs, plots) do not.
_WEIGHT_SUFFIXES = (".safetensors", ".gguf")
_WEIGHT_BINS = ("pytorch_model", "adapter_model", "model")  # *.bin weight files (not training_args.bin)
_MODEL_FILES = (
    "config.json", "generation_config.json", "adapter_config.json", "model.safetensors.index.json",
    "pytorch_model.bin.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
    "chat_template.json",
)  # fmt: skip


def _is_model_file(path: Path) -> bool:
    name = path.name
    if name.endswith(_WEIGHT_SUFFIXES) or name in _MODEL_FILES:
        return True
    return name.endswith(".bin") and name.split(".")[0].split("-")[0] in _WEIGHT_BINS


class FileHashes:
    """sha256 of files, remembered per ``(resolved path, size, mtime_ns)`` in the JSON file ``memo``."""

    def __init__(self, memo: str | Path | None = None):
        self.memo = Path(memo) if memo is not None else None
        self.known: dict[str, str] = {}
        if self.memo is not None and self.memo.is_file():
            try:
                self.known = json.loads(self.memo.read_text())
            except ValueError:  # a memo cut off mid-write: only a speed-up, computed again
                self.known = {}

    def __call__(self, path: Path) -> str:
        path = path.resolve()
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self.known:
            if stat.st_size > 1 << 30:  # seconds per GB: say why nothing happens
                print(f"[pkpo-eval] hashing {path.name} ({stat.st_size / 1e9:.1f} GB, once)", flush=True)
            with open(path, "rb") as f:
                self.known[key] = hashlib.file_digest(f, "sha256").hexdigest()
            self._save()
        return self.known[key]

    def _save(self) -> None:
        if self.memo is None:
            return
        self.memo.parent.mkdir(parents=True, exist_ok=True)
        partial = self.memo.with_name(f"{self.memo.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(self.known, indent=0))
        partial.replace(self.memo)  # atomic: a reader sees the old memo or the new one


def _hub_revision(repo_id: str) -> str | None:
    """The commit of ``repo_id`` in the local hub cache (its config.json's snapshot), or None if not cached."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def model_fingerprint(name: str, gguf_file: str | None, hashes: FileHashes) -> dict[str, Any]:
    """``{file name: sha256}`` of the model files of the local directory (or GGUF file) ``name``; for a hub id, its
    commit in the local hub cache (``{"hub": id, "revision": commit}``): hub commits never change."""
    path = Path(name).expanduser()
    if gguf_file is not None and path.is_dir():
        path = path / gguf_file
    if path.is_file():
        return {path.name: hashes(path)}
    if path.is_dir():
        return {p.name: hashes(p) for p in sorted(path.iterdir()) if p.is_file() and _is_model_file(p)}
    return {"hub": name, "revision": _hub_revision(name)}
