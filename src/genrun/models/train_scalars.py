"""Training-step scalars without paying Lightning's per-call logging cost on every step.

`LightningModule.log` costs a few hundred microseconds a call on CPU (each call moves a torchmetrics state
to the value's device and updates it), and every value in Lightning's metric collection is re-read after
every batch. Four scalars a step made a small VAE's training a third slower than a plain loop.
`TrainScalars` keeps batch-weighted running sums on the device (no host sync), writes the step values
straight to the loggers on the steps Lightning's logger writes (`trainer.log_every_n_steps`), and gives
Lightning the epoch means once, at the end of the epoch (so checkpoint monitors, early stopping and
metrics.json see them). Names: `train/x_step` per step, `train/x` for the epoch mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import lightning as L
import torch


def logger_writes_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning's logger connector writes step metrics after the current training batch."""
    if trainer.fast_dev_run:
        return True
    connector = getattr(trainer, "_logger_connector", None)
    # Private in Lightning 2.x; without it, log every step (correct, only slower).
    return bool(getattr(connector, "should_update_logs", True))


class TrainScalars:
    """Step values every `log_every_n_steps`, exact batch-weighted epoch means at epoch end."""

    def __init__(self, prog_bar: Iterable[str] = ()):
        self.prog_bar = frozenset(prog_bar)
        # One running-sum vector per set of names (a GAN logs g_loss only on generator steps): two tensor
        # ops a step, however many scalars.
        self._sums: dict[tuple[str, ...], torch.Tensor] = {}
        self._counts: dict[tuple[str, ...], int] = {}
        self._latest: dict[str, float] = {}

    def update(self, module: L.LightningModule, values: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Call from `training_step` with detached or attached scalars (they are detached here)."""
        names = tuple(values)
        stacked = torch.stack([value.detach().float() for value in values.values()])
        if names in self._sums:
            self._sums[names].add_(stacked, alpha=batch_size)
        else:
            self._sums[names] = stacked * batch_size
        self._counts[names] = self._counts.get(names, 0) + batch_size
        trainer = module.trainer
        if logger_writes_this_step(trainer):
            # One host sync per logged step; Lightning's loggers write on rank zero only.
            values_now = dict(zip((f"{name}_step" for name in names), stacked.tolist(), strict=True))
            self._latest.update(values_now)
            step = getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "_batches_that_stepped",
                           getattr(trainer, "global_step", 0))
            for logger in getattr(trainer, "loggers", None) or []:
                logger.log_metrics(values_now, step=step)

    def shown(self) -> dict[str, float]:
        """The latest logged step values of the progress-bar scalars."""
        return {name: value for name, value in self._latest.items() if name.removesuffix("_step") in self.prog_bar}

    def epoch_means(self) -> dict[str, torch.Tensor]:
        """Each name's batch-weighted mean over the steps since the last reset."""
        totals: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        for names, sums in self._sums.items():
            for name, total in zip(names, sums, strict=True):
                totals[name] = totals[name] + total if name in totals else total
                counts[name] = counts.get(name, 0) + self._counts[names]
        return {name: totals[name] / counts[name] for name in totals}

    def log_epoch(self, module: L.LightningModule) -> None:
        """Call from `on_train_epoch_end`: logs each mean (averaged over processes under DDP) and resets.

        Not shown in the progress bar: during the next epoch it would be last epoch's mean under a name that
        reads like the current loss; the bar shows the latest step values instead."""
        for name, mean in self.epoch_means().items():
            module.log(name, mean, on_step=False, on_epoch=True, sync_dist=True)
        self._sums, self._counts = {}, {}
