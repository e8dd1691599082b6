"""What work between a training step's phases costs beyond its own time: the plain VAE loop of plain_vae.py
with a memory sweep (an in-place add over SIZE bytes, standing in for a framework's Python bookkeeping)
after backward and after the optimiser step, against the same loop without. If the loop slows by more than
the sweeps' own time, the rest is the model's weights, gradients and optimiser state fetched again after
being evicted from the core's caches. Variants alternate in one process; medians of per-round differences.
Run: OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/cache_pollution.py [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from common import machine, write_result
from plain_vae import epoch_milliseconds

SIZES_KIB = (64, 1024, 4096)
HEADER = ("| sweep size | one sweep alone (µs) | the sweeps' own time (ms an epoch) "
          "| the loop's extra time (ms an epoch, paired median) | induced cost (µs a step) |\n|---|---|---|---|---|")


def sweep_seconds(junk: torch.Tensor, n: int = 400) -> float:
    start = time.perf_counter()
    for _ in range(n):
        junk.add_(1)
    return (time.perf_counter() - start) / n


def epoch_ms(x: torch.Tensor, junk: torch.Tensor | None) -> float:
    return epoch_milliseconds(x, between=None if junk is None else lambda: junk.add_(1))


def main(rounds: int = 8) -> None:
    from genrun.data.mnist import bundled_digits

    images, _ = bundled_digits()
    x = images.float().div(255).view(-1, 784)
    steps = -(-len(x) // 128)
    junks = {kib: torch.zeros(kib << 10, dtype=torch.uint8) for kib in SIZES_KIB}
    base, loaded, alone = [], {k: [] for k in SIZES_KIB}, {k: [] for k in SIZES_KIB}
    for _ in range(rounds):
        base.append(epoch_ms(x, None))
        for kib, junk in junks.items():
            loaded[kib].append(epoch_ms(x, junk))
            alone[kib].append(sweep_seconds(junk) * 1e6)
    rows = ""
    for kib in SIZES_KIB:
        extra = statistics.median(b - a for a, b in zip(base, loaded[kib], strict=True))
        own = statistics.median(alone[kib]) * 2 * steps / 1000
        rows += (f"| {kib} KiB | {statistics.median(alone[kib]):.1f} | {own:.1f} | {extra:.1f} | "
                 f"{(extra - own) / steps * 1000:.0f} |\n")
    write_result("cache_pollution", f"""# Work between a step's phases costs more than its own time

Command: `OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/cache_pollution.py {rounds}` (the plain
MLP VAE loop of bench/plain_vae.py, fused Adam, batch 128, {steps} steps an epoch; two sweeps a step, one
after backward and one after the optimiser step; {rounds} alternating rounds)
Machine: `{json.dumps(machine())}`

Plain loop: {statistics.median(base):.0f} ms an epoch (median).

{HEADER}
{rows}""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
