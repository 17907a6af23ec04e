"""Process-wide performance settings for training runs (opt-in; the CLI applies them).

Every training step frees and re-allocates the gradient of the gene layer (a
genes x 100 float32 matrix, ~6 MB). With glibc's default, adaptive malloc
thresholds that memory goes back to the kernel and is faulted in again page by
page at the next step, which costs ~15% of a sparse step. Fixed thresholds
keep it in the heap for reuse. A library should not change its host process's
allocator behind its back, so Python users call :func:`reuse_freed_memory`
(or set ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``)
themselves; ``deepchem-actinn train`` and the distributed trainer call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def reuse_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed blocks under ``mmap_threshold`` bytes in the heap (glibc only).

    Blocks larger than ``mmap_threshold`` are still mapped and unmapped on
    their own; up to ``trim_threshold`` bytes of free heap are kept instead of
    being returned to the kernel. Returns whether the settings were applied
    (``False`` off glibc, e.g. macOS or musl).

    >>> isinstance(reuse_freed_memory(), bool)
    True
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Setting both matters: either alone leaves glibc's adaptive behaviour in charge.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    return _applied
