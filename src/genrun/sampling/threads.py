"""One CPU thread for the small steps of autoregressive sampling (a token, a pixel, a column)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_cpu_thread(device: torch.device):
    """A token's or a pixel's work is too small to share among CPU threads; on a busy machine extra threads
    only spin. Elsewhere (CUDA) nothing changes."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
