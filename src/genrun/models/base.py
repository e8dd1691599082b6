"""What every genrun LightningModule shares: an exponential moving average of any component, optimiser and
scheduler set-up, pictures on every tracker at the scalars' step, and the pipeline that generates from it.

A model's module defines its objective (`training_step`, `validation_step`) and `pipeline()`, the same
pipeline `genrun sample` rebuilds from the checkpoint; everything else comes from here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from genrun.errors import GenrunError
from genrun.models.lean_module import LeanLightningModule
from genrun.models.optim import build_optimizer
from genrun.models.train_scalars import TrainScalars


class GenrunModule(LeanLightningModule):
    """Base of genrun's LightningModules; `ema_of` names the component whose weights are averaged."""

    ema_of: str | None = None
    # The method that computes a step's loss from a batch, without logging: what model.compile=true compiles.
    compiled_step: str | None = None
    # What each optimiser steers, in configure_optimizers' order: learning rates are logged as lr/<name>.
    optimizer_names: tuple[str, ...] = ("model",)

    def __init__(self, optimizer: Callable | None = None, scheduler: Callable | None = None,
                 scheduler_interval: str = "step", ema: bool = False, ema_decay: float = 0.999,
                 prog_bar: Iterable[str] = ("train/loss",)):
        super().__init__()
        if not 0.0 <= float(ema_decay) < 1.0:
            raise GenrunError(f"model.ema_decay={ema_decay}: must be in [0, 1)")
        if scheduler_interval not in ("step", "epoch"):
            raise GenrunError(f"scheduler_interval={scheduler_interval!r}: choose step or epoch")
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.use_ema, self.ema_decay = bool(ema), float(ema_decay)
        self.train_scalars = TrainScalars(prog_bar=prog_bar)
        # Steps the average has taken, a buffer so that a resumed run continues the same warm-up.
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self._ema_seen_step = -1

    # --- exponential moving average ----------------------------------------------------------------------------

    def setup_ema(self) -> None:
        """Call at the end of a subclass's __init__: keeps `ema_<component>`, a frozen copy being averaged."""
        if self.use_ema and self.ema_of is not None:
            live = getattr(self, self.ema_of)
            setattr(self, f"ema_{self.ema_of}", copy.deepcopy(live).requires_grad_(False))

    def averaged(self, name: str) -> nn.Module:
        """The component that sampling and evaluation use: its average when one is kept, else itself."""
        average = getattr(self, f"ema_{name}", None)
        return average if average is not None else getattr(self, name)

    @torch.no_grad()
    def update_ema(self) -> None:
        """One averaging step after an optimiser step; the warm-up (1+n)/(10+n) forgets the random start fast."""
        if not self.use_ema or self.ema_of is None:
            return
        live, average = getattr(self, self.ema_of), getattr(self, f"ema_{self.ema_of}")
        self.ema_steps += 1
        steps = float(self.ema_steps)
        decay = min(self.ema_decay, (1 + steps) / (10 + steps))
        torch._foreach_lerp_(list(average.parameters()), list(live.parameters()), 1 - decay)
        for mean, value in zip(average.buffers(), live.buffers(), strict=True):
            mean.copy_(value)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A run saved before the shared EMA had no `ema_steps`: a GAN's averaged generator stepped with g_steps."""
        state = checkpoint.get("state_dict", {})
        if "ema_steps" not in state:
            state["ema_steps"] = state.get("g_steps", torch.zeros((), dtype=torch.long)).clone()

    def on_train_start(self) -> None:
        self._ema_seen_step = self.trainer.global_step  # a resumed run starts from its restored step

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # Once per optimiser step (not per batch under gradient accumulation); models that step by hand call
        # update_ema themselves.
        if self.automatic_optimization and self.trainer.global_step != self._ema_seen_step:
            self._ema_seen_step = self.trainer.global_step
            self.update_ema()

    # --- torch.compile -------------------------------------------------------------------------------------------

    def compile_training(self, **options) -> None:
        """model.compile=true: the loss computation of every step through torch.compile (`options` are its
        keyword arguments). Only that method is replaced, on this instance: the components, their checkpoints
        and the sampling pipelines stay eager, so nothing saved depends on it and sampling never recompiles."""
        if self.compiled_step is None:
            raise GenrunError(f"model.compile=true: {type(self).__name__} has no compiled training step; "
                              "leave model.compile=false")
        setattr(self, self.compiled_step, torch.compile(getattr(self, self.compiled_step), **options))

    # --- optimisers --------------------------------------------------------------------------------------------

    def parameter_groups(self):
        """What the optimiser updates; override for weight-decay groups."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        optimizer = build_optimizer(self.optimizer_factory, self.parameter_groups(), self._trainer)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    # --- logging -----------------------------------------------------------------------------------------------

    def on_train_epoch_end(self) -> None:
        self.train_scalars.log_epoch(self)

    def log_stage(self, stage: str, scalars: dict, batch_size: int) -> None:
        """A step's scalars: training ones into the per-step and batch-weighted epoch logs, validation and test
        ones as epoch means (the `.../loss` in the progress bar)."""
        if stage == "train":
            self.train_scalars.update(self, scalars, batch_size)
            return
        for name, value in scalars.items():
            self.log(name, value, on_epoch=True, prog_bar=name.endswith("/loss"), batch_size=batch_size,
                     sync_dist=True)

    def log_images(self, tag: str, images: torch.Tensor, nrow: int | None = None) -> None:
        """An image grid on every tracker that keeps pictures, at the current global step (the axis every
        scalar uses)."""
        if self.draws_pictures():
            from genrun.images import make_grid
            from genrun.trackers import image_array

            self._log_picture(tag, image_array(make_grid(images.float().cpu(), nrow=nrow)))

    def log_figure(self, tag: str, figure) -> None:
        """A matplotlib figure (a 2-D model's scatter plot) like `log_images`; the figure is closed, and only
        rendered when a tracker keeps it."""
        from genrun.trackers import close_figure, figure_array

        if self.draws_pictures():
            self._log_picture(tag, figure_array(figure))
        else:
            close_figure(figure)

    def draws_pictures(self) -> bool:
        """Whether pictures drawn now reach anyone: not in the sanity check, on rank zero, and only when a
        tracker that keeps pictures is there. Models ask before sampling a grid, which can cost more than the
        validation it follows (a DDPM's sampler)."""
        from genrun.trackers import keeps_pictures

        trainer = self._trainer
        return (trainer is not None and not trainer.sanity_checking and trainer.is_global_zero
                and any(keeps_pictures(logger) for logger in trainer.loggers))

    def _log_picture(self, tag: str, picture) -> None:
        from genrun.trackers import log_image

        for logger in self.trainer.loggers:
            log_image(logger, tag, picture, self.global_step)

    # --- generation --------------------------------------------------------------------------------------------

    def pipeline(self, data_info: dict | None = None):
        """The model's pipeline over its live components (averaged where an average is kept); `data_info`
        is the datamodule's description (a text model's tokenizer lives there)."""
        raise NotImplementedError
