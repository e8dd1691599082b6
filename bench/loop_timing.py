"""Timing shared by the benchmarks that set Lightning's loop beside a plain Python loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import lightning as L


class EpochTimer(L.Callback):
    """Seconds of each training epoch on `clock` (wall time by default; `time.thread_time` for main-thread
    CPU time, which other tenants' time slices do not inflate)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = self.clock()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(self.clock() - self.start)


def plain_epoch_seconds(model, optimizer, batches: Iterable, epochs: int,
                        clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each epoch of the plain loop (zero_grad, the module's own training_step, backward, step)
    over `batches`: the floor under any framework."""
    seconds = []
    for _ in range(epochs):
        start = clock()
        for batch_idx, batch in enumerate(batches):
            optimizer.zero_grad()
            model.training_step(batch, batch_idx).backward()
            optimizer.step()
        seconds.append(clock() - start)
    return seconds
