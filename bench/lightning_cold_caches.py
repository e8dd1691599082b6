"""Why Lightning's loop costs more over a real model than over one that costs nothing.

A model whose step does no math but one in-place pass over MIB of memory (0, 1, 4, 16 MiB; the VAE's
step touches some 15 MiB of weights, gradients, optimiser state and activations), trained with SGD at lr 0
by a bare Lightning `Trainer` (genrun's module base and NoProfiler) and by a plain Python loop, alternating.
The loops' own Python (hooks, closures, progress counters) is the same at every size; what changes is
whether its code and objects are still in the core's caches when it runs. The figure is main-thread CPU
time (`time.thread_time`), which other tenants' time slices on this shared machine do not inflate.
Run: OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/lightning_cold_caches.py [ROUNDS]
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
import warnings

import lightning as L
import torch

from common import machine, write_result
from genrun.callbacks.lean import NoProfiler
from genrun.data.loaders import TensorBatchLoader
from genrun.models.lean_module import LeanLightningModule
from loop_timing import EpochTimer, plain_epoch_seconds

SIZES_MIB = (0, 1, 4, 16)
EPOCHS = 8
STEPS = 40


class Sweeping(LeanLightningModule):
    """One parameter that never changes; the step's only work is one pass over `mib` MiB."""

    def __init__(self, mib: int):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.buffer = torch.zeros(mib * 2**20 // 4) if mib else None

    def training_step(self, batch, batch_idx):
        if self.buffer is not None:
            self.buffer.add_(1.0)
        return self.p.sum() * 1.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def loader(x: torch.Tensor) -> TensorBatchLoader:
    return TensorBatchLoader((x,), 128, True, torch.Generator().manual_seed(0))


def lightning_us(mib: int, x: torch.Tensor) -> float:
    timer = EpochTimer(time.thread_time)
    trainer = L.Trainer(accelerator="cpu", max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, profiler=NoProfiler(),
                        callbacks=[timer], num_sanity_val_steps=0)
    trainer.fit(Sweeping(mib), train_dataloaders=loader(x))
    return statistics.median(timer.seconds[1:]) / STEPS * 1e6


def plain_us(mib: int, x: torch.Tensor) -> float:
    model = Sweeping(mib)
    seconds = plain_epoch_seconds(model, model.configure_optimizers(), loader(x), EPOCHS, time.thread_time)
    return statistics.median(seconds[1:]) / STEPS * 1e6


def main(rounds: int = 8) -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    x = torch.rand(STEPS * 128, 1, 28, 28)
    plain = {mib: [] for mib in SIZES_MIB}
    lightning = {mib: [] for mib in SIZES_MIB}
    for _ in range(rounds):
        for mib in SIZES_MIB:
            plain[mib].append(plain_us(mib, x))
            lightning[mib].append(lightning_us(mib, x))

    def extra(mib: int) -> float:
        return statistics.median(a - b for a, b in zip(lightning[mib], plain[mib], strict=True))

    rows = "".join(f"| {mib} | {statistics.median(plain[mib]):.0f} | {statistics.median(lightning[mib]):.0f} | "
                   f"{extra(mib):+.0f} |\n" for mib in SIZES_MIB)
    write_result("lightning_cold_caches", f"""# Lightning's per-step cost when the step's work evicts the caches

Command: `OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/lightning_cold_caches.py {rounds}` (a model
whose step is one in-place pass over the given memory; SGD at lr 0; {EPOCHS} epochs of {STEPS} batches of 128
a side, the first not timed; sides alternate, {rounds} rounds; main-thread CPU time)
Machine: `{json.dumps(machine())}`

| memory the step passes over (MiB) | plain loop (µs a step) | bare Lightning loop | Lightning's extra (paired median) |
|---|---|---|---|
{rows}""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
