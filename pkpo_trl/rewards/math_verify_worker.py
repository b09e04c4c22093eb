"""math-verify in a worker process, with a hard per-completion timeout.

math-verify's own timeouts use signal.alarm: main thread only, and unable to interrupt C code (sympy evaluating
9^(9^(9^9))). So the check runs in a subprocess running this file as a script (never re-importing the user's
``__main__``, never forking a multi-threaded process; as a script it imports nothing from the package), one
JSON line per request over pipes; the parent waits at most ``timeout`` seconds and kills it otherwise.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

MATH_VERIFY_TIMEOUT = 5.0  # seconds per completion, parsing and comparison together

_WORKER_FLAG = "--math-verify-worker"
_WORKER_START_TIMEOUT = 120.0  # importing sympy on a busy machine can be slow


@functools.cache
def _prediction_extraction() -> dict[str, Any]:
    """How math-verify reads a completion's answer: TRL's ``accuracy_reward`` settings (LaTeX, ``\\boxed{}``
    first, nothing without an anchor, so a stray number in the reasoning is never taken for the answer), plus
    anchored plain expressions for ``Answer: 1,000``, which the LaTeX extractor does not read."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    latex = LatexExtractionConfig(
        normalization_config=NormalizationConfig(units=True), boxed_match_priority=0, try_extract_without_anchor=False
    )
    return {
        "extraction_config": [latex, ExprExtractionConfig(try_extract_without_anchor=False)],
        "extraction_mode": "first_match",
    }


def _math_verify_in_process(gold: str, prediction: str, timeout: int | None) -> bool | None:
    """math-verify's parse + verify of a gold *answer* (already reduced from a full solution); None if it cannot
    be parsed. ``timeout`` is passed to math-verify's own (signal-based, main-thread only) timeouts."""
    from math_verify import parse, verify

    gold = str(gold).strip()
    # A bare gold answer ("72", "\frac{1}{2}") is wrapped in $...$ so the LaTeX extractor sees it.
    delimited = "$" in gold or "\\boxed" in gold or "\\(" in gold or "\\[" in gold
    gold_parsed = parse(gold if delimited else f"${gold}$", parsing_timeout=timeout)
    if not gold_parsed and not delimited:
        gold_parsed = parse(gold, parsing_timeout=timeout)
    if not gold_parsed:
        return None
    prediction_parsed = parse(prediction, parsing_timeout=timeout, **_prediction_extraction())
    return bool(verify(gold_parsed, prediction_parsed, timeout_seconds=timeout))


def _worker_main() -> None:
    """The worker's loop: one JSON request ``{"gold", "prediction", "timeout"}`` per stdin line, one JSON
    reply ``{"result": bool | None}`` or ``{"error": str}`` per stdout line. Exits at end of input."""
    logging.basicConfig(level=logging.ERROR)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    import math_verify  # noqa: F401  (import before announcing readiness)

    protocol.write('{"ready": true}\n')
    protocol.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = {"result": _math_verify_in_process(request["gold"], request["prediction"], request["timeout"])}
        except BaseException as exc:  # math-verify's TimeoutException is a BaseException
            reply = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


class _MathVerifyWorker:
    """The parent's handle on the worker process; thread-safe (one request at a time)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        atexit.register(self.close)

    def _start(self) -> None:
        # -P: do not put this file's directory (pkpo_trl/) on sys.path, where data.py etc. could shadow modules.
        command = [sys.executable, "-P", os.path.abspath(__file__), _WORKER_FLAG]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._buffer = b""
        ready = self._read_line(time.monotonic() + _WORKER_START_TIMEOUT)
        if ready is None or not json.loads(ready).get("ready"):
            self.close()
            raise RuntimeError(
                f"The math-verify worker process did not start within {_WORKER_START_TIMEOUT:.0f} s; is "
                "`math-verify` installed (pip install math-verify)?"
            )

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None if none came before ``deadline`` or the worker died."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # worker exited
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def check(self, gold: str, prediction: str, timeout: float) -> bool | None:
        """math-verify's verdict, killing the worker (and answering False) after ``timeout`` seconds."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            assert self._process is not None and self._process.stdin is not None
            inner_timeout = max(1, int(timeout / 2))  # math-verify's own soft timeout, per parse/compare
            request = {"gold": gold, "prediction": prediction, "timeout": inner_timeout}
            try:
                self._process.stdin.write((json.dumps(request) + "\n").encode())
                self._process.stdin.flush()
            except BrokenPipeError:
                self.close()
                raise RuntimeError("The math-verify worker process died.") from None
            line = self._read_line(time.monotonic() + timeout)
            if line is None:
                self.close()
                logger.warning(
                    "math_verify: no verdict within %.1f s, reward 0.0 (answer: %.200r)", timeout, prediction
                )
                return False
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"math-verify failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        """Kill the worker, if any."""
        if self._process is not None:
            self._process.kill()  # a no-op if it has exited
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None


_WORKER = _MathVerifyWorker()


def math_verify_equivalent(gold: str, prediction: str, timeout: float = MATH_VERIFY_TIMEOUT) -> float | None:
    """1.0 if ``prediction`` (a completion) is equivalent to ``gold`` per math-verify, else 0.0; None if the
    gold answer cannot be parsed. At most ``timeout`` seconds (plus a one-off worker start): a check that
    takes longer scores 0.0. Safe to call from any thread."""
    # Imported here, not at the top: the worker runs this file as a bare script, outside the package.
    from .matchers import gold_answer

    gold = gold_answer(gold)
    if os.name != "posix":  # no select() on pipes: math-verify's own (multiprocessing-based) timeout
        result = _math_verify_in_process(gold, prediction, max(1, math.ceil(timeout)))
    else:
        result = _WORKER.check(gold, prediction, timeout)
    return None if result is None else float(result)


def math_verify_reward(completion: str, gold: str) -> float | None:
    """1.0 if ``math-verify`` finds the completion's answer (read as TRL's ``accuracy_reward`` reads it: anchored
    only, so a bare ``72`` or ``#### 72`` scores 0) equivalent to the gold answer; 0.0 if not or if the check runs
    past ``MATH_VERIFY_TIMEOUT`` seconds; None if the gold answer cannot be parsed."""
    return math_verify_equivalent(gold, completion, timeout=MATH_VERIFY_TIMEOUT)


if __name__ == "__main__" and sys.argv[1:] == [_WORKER_FLAG]:
    _worker_main()
