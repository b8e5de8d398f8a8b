"""glibc's malloc, tuned for training: tensors of a few MB are allocated and freed every step.

By default glibc serves such blocks with mmap and returns them to the OS on free, so every step
pays for fresh pages (measured: ~10-25% of a small CNN's CPU step time). Serving blocks up to
32 MB from the heap and keeping freed memory is what jemalloc/tcmalloc, which PyTorch's CPU
performance guide recommends, achieve. Skipped where the user chose an allocator
(LD_PRELOAD) or set glibc's MALLOC_* variables, and off glibc."""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024

_state: str | None = None


def tune_malloc() -> str:
    """Apply the settings once per process; returns what the process runs with (for summary.json)."""
    global _state
    if _state is None:
        _state = _apply()
    return _state


def _apply() -> str:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system default"
    if "LD_PRELOAD" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return "user's choice"
    libc = ctypes.CDLL("libc.so.6")
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return "glibc tuned" if ok else "system default"
