"""The sample cache: one append-only JSONL file per model, so that an interrupted evaluation resumes where it
stopped and a re-score with another reward generates nothing.

Its header holds what the samples depend on: the content fingerprint of the model's files
(:mod:`.fingerprint`) and the sampling settings that change samples. A cache is reused exactly when these match;
anything else (the model's path, ``batch_size``, whether greedy completions are wanted) may differ.

One writer per cache: a cache is opened under an exclusive lock on ``<cache>.lock`` (``flock``, released by the
system when the process ends, even by SIGKILL). A second process that opens the same cache is refused at once
with a message naming both files, rather than waiting an unknown time for a run that may take hours."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics import prompt_key
from ..run_dir import config_diff
from .errors import CacheError

__all__ = ["CACHE_VERSION", "SampleCache"]

logger = logging.getLogger(__name__)

# 3: the header holds the model files' sha256 instead of their paths; 2: transformers samples seeded per prompt
# (1: per chunk of prompts).
CACHE_VERSION = 3
_INFO = "info"  # the header's field that is written for the reader but not compared (paths)


def _nan_to_null(values: Any) -> Any:
    # Strict JSON has no NaN: an unscored completion is written as null.
    if isinstance(values, list):
        return [_nan_to_null(v) for v in values]
    return None if isinstance(values, float) and math.isnan(values) else values


def _is_reward(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _record_problem(record: Any, num_samples: int | None) -> str | None:
    """What is wrong with a cache record (not a dict, a missing field, a value of the wrong type, or not
    ``num_samples`` samples), or None: a record of the wrong shape must not be used as samples or scores."""
    if not isinstance(record, dict) or record.get("kind") not in ("samples", "scores"):
        return "not a samples or scores record"
    strings = ("key",) if record["kind"] == "samples" else ("key", "reward", "answer")
    if bad := [name for name in strings if not isinstance(record.get(name), str)]:
        return f"{', '.join(bad)} must be a string"
    samples = record.get("samples")
    if not isinstance(samples, list) or (num_samples is not None and len(samples) != num_samples):
        return f"samples must be a list of {num_samples} entries"
    greedy = record.get("greedy")
    if record["kind"] == "samples":
        if not all(isinstance(text, str) for text in samples) or not (greedy is None or isinstance(greedy, str)):
            return "completions must be strings"
    elif not all(map(_is_reward, samples)) or not _is_reward(greedy):
        return "rewards must be numbers or null"
    return None


def _difference(previous: dict[str, Any], now: dict[str, Any]) -> str:
    """Why a cache written with header ``previous`` cannot serve ``now``, for the error message."""
    if previous.get("version") != now["version"]:
        version = previous.get("version")
        return f"was written by another pkpo-eval version (cache format {version}, now {now['version']})"
    before, after = previous.get("model", {}), now.get("model", {})
    if before != after:
        changed = sorted(
            name
            for part in set(before) | set(after)
            for name in set(before.get(part) or {}) | set(after.get(part) or {})
            if (before.get(part) or {}).get(name) != (after.get(part) or {}).get(name)
        )
        return (f"holds samples of other weights (model files changed since: {', '.join(changed)}; e.g. a model "
                "retrained into the same directory)")  # fmt: skip
    return f"was written with other settings ({'; '.join(config_diff(previous, now))})"


class SampleCache:
    """An append-only JSONL file of one model's samples and scores.

    Line 1 is a header (``header``: what the samples depend on, compared on reuse; ``info``: written, not
    compared); then ``{"kind": "samples", "key", "samples", "greedy"}`` lines (``key`` = :func:`prompt_key`; a later
    line of the same key adds its greedy completion) and ``{"kind": "scores", "reward", "key", "answer", "samples",
    "greedy"}`` lines. A last line cut off mid-write (an interrupted run) is dropped.
    """

    def __init__(
        self, path: str | Path, header: dict[str, Any], overwrite: bool = False, info: dict[str, Any] | None = None
    ):
        self.path = Path(path)
        self.header = {"kind": "header", "version": CACHE_VERSION, **header}
        self.info = info or {}
        self.samples: dict[str, tuple[list[str], str | None]] = {}
        self.scores: dict[tuple[str, str, str], tuple[list[float], float | None]] = {}
        self._lock_fd: int | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            if self.path.exists() and not overwrite:
                self._read()
            else:
                self.path.write_text(json.dumps({**self.header, _INFO: self.info}) + "\n")
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        lock = self.path.with_name(f"{self.path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CacheError(
                f"The sample cache {self.path} is being written by another pkpo-eval ({holder}; lock file {lock}): "
                "wait for it to finish, or use another --output_dir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the cache's lock (also when the object is collected or the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:
        self.close()

    def _read(self) -> None:
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"Cannot read the sample cache {self.path}: {exc}") from exc
        lines = text.split("\n")
        complete, tail = lines[:-1], lines[-1]
        if tail:
            # A line without its newline was cut off by an interruption: drop it, and cut it from the file so
            # that the next append starts on a fresh line.
            logger.warning("Sample cache %s: dropping an incomplete last line (interrupted run).", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(len(text.encode()) - len(tail.encode()))
        records = []
        for number, line in enumerate(complete, 1):
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise CacheError(
                    f"The sample cache {self.path} is corrupt (line {number} is not JSON: {exc}). Delete it or pass "
                    "--overwrite_cache true."
                ) from exc
        if not records or records[0].get("kind") != "header":
            raise CacheError(f"{self.path} is not a pkpo-eval sample cache (no header line).")
        previous = {key: value for key, value in records[0].items() if key != _INFO}
        if previous != self.header:
            raise CacheError(f"The sample cache {self.path} {_difference(previous, self.header)}. Use another "
                             "--output_dir, or pass --overwrite_cache true to discard it.")  # fmt: skip
        n = self.header.get("sampling", {}).get("num_samples")
        for number, record in enumerate(records[1:], 2):
            if problem := _record_problem(record, n):
                raise CacheError(
                    f"The sample cache {self.path} has a malformed record on line {number} ({problem}): "
                    f"{record!r:.200}. Delete the file or pass --overwrite_cache true."
                )
            if record["kind"] == "samples":
                self.samples[record["key"]] = (record["samples"], record.get("greedy"))
            else:
                rewards = [math.nan if r is None else float(r) for r in record["samples"]]
                greedy = record.get("greedy")
                self.scores[record["reward"], record["key"], record["answer"]] = (
                    rewards,
                    math.nan if greedy is None and record.get("has_greedy") else greedy,
                )

    def _append(self, records: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()

    def complete(self, prompts: Sequence[Any], greedy: bool) -> bool:
        """Whether every prompt's samples (and greedy completion, if wanted) are cached."""
        return all(
            key in self.samples and (not greedy or self.samples[key][1] is not None)
            for key in map(prompt_key, prompts)
        )

    def add_samples(self, keys: list[str], samples: list[list[str]], greedy: list[str | None]) -> None:
        """Store the samples of prompts ``keys`` not stored yet, and greedy completions not stored yet."""
        new = [
            (k, self.samples[k][0] if k in self.samples else s, g)
            for k, s, g in zip(keys, samples, greedy, strict=True)
            if k not in self.samples or (g is not None and self.samples[k][1] is None)
        ]
        for k, s, g in new:
            self.samples[k] = (s, g)
        self._append([{"kind": "samples", "key": k, "samples": s, "greedy": g} for k, s, g in new])

    def add_scores(self, reward: str, items: list[tuple[str, str, list[float], float | None]]) -> None:
        """Store the rewards ``(key, answer, sample rewards, greedy reward)`` of reward function ``reward``."""
        for key, answer, rewards, greedy in items:
            self.scores[reward, key, answer] = (rewards, greedy)
        self._append(
            [
                {
                    "kind": "scores",
                    "reward": reward,
                    "key": key,
                    "answer": answer,
                    "samples": _nan_to_null(rewards),
                    "greedy": _nan_to_null(greedy),
                    "has_greedy": greedy is not None,
                }  # fmt: skip
                for key, answer, rewards, greedy in items
            ]
        )
