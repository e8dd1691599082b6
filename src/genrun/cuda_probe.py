"""Keeps torch's per-step "is CUDA here?" question cheap on machines with no GPU.

Lightning sets `PYTORCH_NVML_BASED_CUDA_CHECK=1` when it is imported, so that asking whether CUDA is available
reads NVML instead of initialising the CUDA driver, which would break a later fork (`strategy=ddp_fork`).
torch's Adam, AdamW and most other optimisers ask that question on every `step()`
(`Optimizer._accelerator_graph_capture_health_check`), and until CUDA is initialised torch does not cache
the answer. On a CUDA build of torch on a machine without a GPU, every step therefore tries to load
`libnvidia-ml.so.1`, fails, and falls back to the driver query it was meant to avoid: pure cost, a large
share of a small model's step on CPU (bench/results/cuda_probe_cost_1thread.md).

With no GPU visible there is nothing a fork could break, so while such a run trains genrun lifts the
variable, and puts it back afterwards. With a GPU visible, or CUDA already initialised (training on it
caches the answer), nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def probe_is_wasted() -> bool:
    """Whether the NVML-based check is on and can only fail: a CUDA build, CUDA not initialised, no GPU."""
    return (os.environ.get(NVML_CHECK) == "1" and torch.backends.cuda.is_built()
            and not torch.cuda.is_initialized() and torch.cuda.device_count() == 0)


@contextmanager
def cheap_cuda_probe() -> Iterator[None]:
    """Run the block with the NVML-based CUDA check lifted when it can only fail; restore it after."""
    if not probe_is_wasted():
        yield
        return
    saved = os.environ.pop(NVML_CHECK)
    try:
        yield
    finally:
        os.environ[NVML_CHECK] = saved
