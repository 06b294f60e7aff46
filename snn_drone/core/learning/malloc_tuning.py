"""Keep freed memory in the process so large tensors are not page-faulted in again every step.

glibc hands blocks above its mmap threshold (at most 32 MiB) back to the kernel when they are freed
and trims the heap top beyond twice that. A BPTT step over [100, 256, 256] activations allocates and
frees ~26 MB tensors every step, so each step pays for the same pages again: measured here ~7.6k
minor page faults per actor update (T=100, B=256), ~800 with the settings below (bench/snn_bptt.py).

``retain_freed_memory()`` sets glibc's M_MMAP_THRESHOLD to 1 GiB and M_TRIM_THRESHOLD to 2 GiB for
the whole process. It changes no numbers, only where freed blocks go; peak memory is unchanged, but
the process keeps its peak. Call it once at the start of a training process (not done on import).
Equivalent to starting Python with MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483648.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(mmap_threshold_bytes: int = 1 << 30, trim_threshold_bytes: int = 1 << 31) -> bool:
    """Apply the glibc settings above; returns False (and changes nothing) where glibc is absent."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold_bytes, 2**31 - 1))
    ok_trim = mallopt(_M_TRIM_THRESHOLD, min(trim_threshold_bytes, 2**31 - 1))
    return bool(ok_mmap and ok_trim)
