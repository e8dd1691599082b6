"""Training throughput in the data's own unit (images, tokens or points per second), timed over training
batches only."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


def unit_and_count(batch) -> tuple[str, int]:
    """What one batch holds: token ids (integer inputs) count every token; images (C×H×W inputs) and
    points (vectors) count one each."""
    inputs = batch[0]
    if not inputs.is_floating_point():
        return "tokens", inputs.numel()
    return ("images" if inputs.dim() >= 3 else "points"), len(inputs)


class Throughput(Callback):
    """Logs `perf/train_<unit>_per_sec` (images, tokens or points): items over seconds of every epoch after
    the first (which pays one-off warm-up costs), or of the first when there is only one. Validation is not
    counted."""

    def __init__(self):
        self._start = None
        self._elapsed = 0.0
        self._items = 0
        self._totals = [0, 0.0]  # items, seconds over the epochs after the first
        self.unit = "items"

    def on_train_epoch_start(self, trainer, pl_module):
        self._elapsed, self._items, self._start = 0.0, 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.unit, count = unit_and_count(batch)
        self._items += count

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
            if trainer.current_epoch > 0:
                self._totals = [self._totals[0] + self._items, self._totals[1] + self._elapsed]
            items, seconds = self._totals if self._totals[1] > 0 else (self._items, self._elapsed)
            pl_module.log(f"perf/train_{self.unit}_per_sec", items / seconds, sync_dist=False)
