"""Lightning's checkpoint and progress-bar callbacks, minus work they repeat on every training step.

On a small model Lightning's own per-step bookkeeping is a large share of the step (bench/results/
vae_throughput.md). Two callbacks add to it needlessly:
- `ModelCheckpoint.state_key` rebuilds a string from five settings each time it is read, and Lightning reads
  it for every hook of every step (to name a profiler region). The settings never change after
  construction, so genrun computes it once.
- `RichProgressBar` recomputes and converts all progress-bar metrics after every batch, although they only
  change when something is logged. genrun refreshes them every `log_every_n_steps` batches and at epoch ends,
  and shows the training scalars that `TrainScalars` keeps (they bypass Lightning's metric collection).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar


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

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()  # resumed mid-epoch
        self._update(self.train_progress_bar_id, batch_idx + 1)
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
