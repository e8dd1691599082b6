"""The learning rate of each optimiser, per optimiser step, under the optimiser's role.

Lightning's LearningRateMonitor names optimisers by class ("lr-Adam", "lr-Adam-1" for a GAN's two) and,
without a scheduler, only reads them once per epoch when asked for epochs. A warm-up of a hundred steps
needs every step, and a GAN's curves need to say which network they steer: "lr/generator",
"lr/discriminator" (a module names its optimisers in `optimizer_names`).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback


class LearningRates(Callback):
    """Logs `lr/<role>` every `trainer.log_every_n_steps` optimiser steps, on the global-step axis."""

    def __init__(self):
        self._due = 1  # the first optimiser step, then every log_every_n_steps (a GAN batch takes two)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step < self._due:
            return
        self._due = step + max(1, int(trainer.log_every_n_steps or 1))
        names = getattr(pl_module, "optimizer_names", None) or ()
        values = {}
        for index, optimizer in enumerate(trainer.optimizers):
            role = names[index] if index < len(names) else f"optimizer_{index}"
            groups = optimizer.param_groups
            for number, group in enumerate(groups):
                key = f"lr/{role}" if len(groups) == 1 else f"lr/{role}/group_{number}"
                values[key] = float(group["lr"])
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
