"""Keep memory that tensors free inside the process, for the next tensor of the same size.

glibc's malloc can hand freed memory at the top of a heap back to the operating system (whether it does
depends on its dynamic thresholds and where the heap lies, so it differs between processes), and every new
activation of a CPU forward pass then pays a page fault per 4 KiB page to get it back: a DDPM sampling step
spent as much time in the kernel as in its convolutions (bench/results/ddpm_sampling.md). A top pad makes
malloc keep that much memory when it trims a heap, so the pages are reused, as jemalloc or tcmalloc (which
PyTorch's CPU tuning guide suggests preloading) would do. The price: a process keeps memory near its peak
use instead of shrinking between steps. Nothing changes on other C libraries or systems, or where the user
tunes malloc already (a MALLOC_* variable or GLIBC_TUNABLES in the environment).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3  # mallopt's parameter numbers, from glibc's malloc.h
TOP_PAD_BYTES = 256 << 20
# Setting any of malloc's knobs fixes all of them, so the threshold under which it serves a request from a heap
# (not a fresh mapping) is set too: glibc's largest, which its dynamic threshold would otherwise grow to.
MMAP_THRESHOLD_BYTES = 32 << 20


def keep_freed_memory(pad_bytes: int = TOP_PAD_BYTES) -> bool:
    """Ask glibc's malloc to keep `pad_bytes` at the top of each heap; True when it took the setting."""
    user_tuned = any(key.startswith("MALLOC_") or key == "GLIBC_TUNABLES" for key in os.environ)
    if user_tuned or not sys.platform.startswith("linux"):
        return False
    try:  # the C library this process already runs on; looking it up by name would start a subprocess
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (present in glibc only: musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TOP_PAD, pad_bytes) == 1
