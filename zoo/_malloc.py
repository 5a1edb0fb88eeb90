"""Keep large CPU buffers in the heap between training steps (Linux with glibc only).

A training step on CPU allocates and frees the same few large tensors every step (a word-level LM's
``[batch * bptt, vocab]`` logits, their log-softmax and gradients: 28 MB each at PTB size). glibc serves
blocks above its mmap threshold with a fresh ``mmap`` and returns them with ``munmap`` on free, so every
step page-faults those buffers in again. Raising the threshold to glibc's maximum (32 MB on 64-bit) and
not trimming the heap lets the next step reuse the memory (docs/benchmarks.md, PTB throughput). The cost:
freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_applied = False


def tune_malloc_for_training() -> bool:
    """Apply the settings above once per process; ``ZOO_MALLOC_TUNING=0`` opts out.

    Returns whether they were applied: only on Linux with glibc, and not where the user set glibc's own
    ``MALLOC_*`` variables.
    """
    global _applied
    if _applied or not sys.platform.startswith("linux") or os.environ.get("ZOO_MALLOC_TUNING", "1") == "0":
        return False
    if any(key.startswith("MALLOC_") for key in os.environ):
        return False  # the user tuned glibc already
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)) and ok
    ok = bool(mallopt(_M_TOP_PAD, 64 * 1024 * 1024)) and ok
    _applied = True
    return ok
