"""Process-level settings that make CPU training faster without changing any result.

glibc's ``malloc`` serves large blocks (above a threshold that adapts up to 32 MB) with ``mmap``
and hands them back to the kernel on ``free``; the next allocation of the same size then takes
a page fault per 4 KB page, and the kernel zeroes every page again. A search step allocates and
frees its activations (some above 10 MB) every iteration, so on CPU a large share of its time
went to page faults: the NB201 DARTS step of ``bench/vs_nni.py`` took about 40,000 minor faults
per step. ``keep_freed_memory`` raises the mmap threshold to its maximum and stops the heap
from being trimmed, so freed activations are reused by the next step; peak memory is unchanged
(the same blocks are live at the peak), but memory is not returned to the kernel between steps.

It is called by ``archgrad.search``/``train`` and the CLI on CPU; ``ARCHGRAD_MALLOC=default``
in the environment leaves the allocator alone. PyTorch's CPU performance guide gives the same
advice in the form of jemalloc or tcmalloc, which need a preload; this needs nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit Linux
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the process for reuse (glibc only). Returns whether the
    setting is in effect; idempotent; a no-op elsewhere or with ``ARCHGRAD_MALLOC=default``."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("ARCHGRAD_MALLOC", "").lower() == "default" or \
            not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    return _done
