"""Training throughput (items per second), timed over training batches only."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class Throughput(Callback):
    """Logs `perf/train_items_per_sec` each epoch; validation inside the epoch is not counted."""

    def __init__(self):
        self._start = None
        self._elapsed = 0.0
        self._items = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self._elapsed, self._items, self._start = 0.0, 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._items += len(batch[0])

    def on_validation_start(self, trainer, pl_module):
        if self._start is not None and not trainer.sanity_checking:
            self._elapsed += time.perf_counter() - self._start
            self._start = None

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.training:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if self._start is not None:
            self._elapsed += time.perf_counter() - self._start
            self._start = None
        if self._elapsed > 0 and self._items:
            pl_module.log("perf/train_items_per_sec", self._items / self._elapsed, sync_dist=False)
