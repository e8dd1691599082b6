"""Lightning's checkpoint and progress-bar callbacks and its do-nothing profiler, minus work they repeat on
every training step.

On a small model Lightning's own per-step bookkeeping is a large share of the step (bench/results/
vae_throughput.md). Three of its pieces add to it needlessly:
- With no profiler chosen, Lightning still opens a `PassThroughProfiler.profile(name)` region around every
  hook it calls, module and callback hooks alike: some seventy a step with genrun's callbacks, each a
  generator-based context manager built and torn down for nothing. genrun's `NoProfiler` hands back one
  shared do-nothing context instead.
- `ModelCheckpoint.state_key` rebuilds a string from five settings each time it is read, and Lightning reads
  it for every hook of every step (to name a profiler region). The settings never change after
  construction, so genrun computes it once.
- `RichProgressBar` recomputes and converts all progress-bar metrics after every batch, although they only
  change when something is logged. genrun refreshes them every `log_every_n_steps` batches and at epoch ends,
  and shows the training scalars that `TrainScalars` keeps (they bypass Lightning's metric collection).

The bar also counts the way the run is bounded: epochs from 1 ("Epoch 1/2" for max_epochs=2), or, when
`max_steps` ends the run before `max_epochs` would, one bar of optimiser steps across epochs ("Step 57/200").
"""

from __future__ import annotations

from contextlib import nullcontext

from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's no-op profiler with a no-op region that costs nothing to open: the profiler genrun's runs
    use unless `trainer.profiler` (debug=profiler) asks for a real one."""

    def profile(self, action_name: str):
        return _NOTHING


class LeanModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` with its state key computed once. The key names the callback's entry in checkpoints,
    so it keeps Lightning's class name: checkpoints written with either class restore the other's state."""

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_cached_state_key")
        if key is None:
            key = super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
            self.__dict__["_cached_state_key"] = key
        return key


class LeanRichProgressBar(RichProgressBar):
    """`RichProgressBar` whose metrics are gathered when they can have changed, not after every batch.

    `refresh_rate` is, for Rich, the most redraws per second (the drawing runs on a thread that takes the
    GIL from the training loop while it renders).
    """

    def steps_bound(self) -> bool:
        """Whether max_steps, not max_epochs, ends this run (Lightning's estimate takes the smaller)."""
        trainer = self.trainer
        max_steps = trainer.max_steps or -1
        return max_steps > 0 and trainer.estimated_stepping_batches == max_steps

    def _get_train_description(self, current_epoch: int) -> str:
        if self.steps_bound():
            return "Step"
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs not in (None, -1):
            description += f"/{self.trainer.max_epochs}"
        return f"{description:{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if not self.steps_bound():
            return super().on_train_epoch_start(trainer, pl_module)
        if self.is_disabled or self.progress is None:
            return None
        if self.train_progress_bar_id is None:  # one bar for the whole run, kept across epochs
            self.train_progress_bar_id = self._add_task(trainer.max_steps, self._get_train_description(0))
            self._update(self.train_progress_bar_id, trainer.global_step)
        return None

    def _initialize_train_progress_bar_id(self) -> None:
        if self.steps_bound():
            self.on_train_epoch_start(self.trainer, None)
        else:
            super()._initialize_train_progress_bar_id()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()  # resumed mid-epoch
        done = trainer.global_step if self.steps_bound() else batch_idx + 1
        self._update(self.train_progress_bar_id, done)
        every = max(1, int(trainer.log_every_n_steps or 1))
        if (batch_idx + 1) % every == 0 or batch_idx + 1 == self.total_train_batches:
            self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        scalars = getattr(pl_module, "train_scalars", None)
        if scalars is not None:
            items.update(scalars.shown())
        return items
