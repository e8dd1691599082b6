"""Preemption: on SIGUSR1 / SIGTERM (and submitit's time-limit signal) write the last checkpoint and stop,
at a point from which the resumed run is exactly the run that was stopped.

A signal handler only notes the signal; the work happens at the end of a training batch, where every rank
agrees to stop (one rank's signal is enough) and the checkpoint is collective. Not every batch end will do:
the last batch of an epoch and a batch after which validation runs are skipped (a resume would not rerun
that validation, nor draw the random numbers it draws), and so is a batch inside gradient accumulation
(the accumulated gradients are not in the checkpoint). The stop then happens one batch later.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from pathlib import Path

from lightning.pytorch.callbacks import Callback

log = logging.getLogger("genrun")


class Preempted(Exception):
    """Raised out of `Trainer.fit` once the preemption checkpoint is written."""

    def __init__(self, signum: int, step: int, epoch: int):
        super().__init__(f"{signal.Signals(signum).name} at epoch {epoch}, step {step}")
        self.signum, self.step, self.epoch = signum, step, epoch


def handled_signals() -> list[int]:
    signals = [signal.SIGUSR1, signal.SIGTERM]
    try:  # a submitit job's time-limit signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)
        import os

        if os.environ.get("SUBMITIT_EXECUTOR"):
            import submitit

            signals.append(submitit.JobEnvironment._usr_sig())
    except (ImportError, RuntimeError):
        pass
    return list(dict.fromkeys(signals))


class Preemption(Callback):
    """Checkpoint to `checkpoint` and raise Preempted at the first exactly-resumable batch end after a signal."""

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = Path(checkpoint)
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def _note(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self.previous:
            return
        for signum in handled_signals():
            self.previous[signum] = signal.signal(signum, self._note)
        names = ", ".join(signal.Signals(s).name for s in self.previous)
        log.info(f"preemption: {names} write {self.checkpoint} and stop", extra={"console": False})

    def restore(self) -> None:
        """Give the signals back to their earlier handlers (the end of training)."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def setup(self, trainer, pl_module, stage) -> None:
        self.install()

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning installs its own SIGTERM handler as fitting starts (it stops without a checkpoint, at a
        # batch end that may not resume exactly): take SIGTERM back, and the others if anything took them.
        if threading.current_thread() is threading.main_thread():
            for signum in self.previous:
                signal.signal(signum, self._note)

    def _resumable_after(self, trainer, batch_idx: int) -> bool:
        done = batch_idx + 1
        if done >= trainer.num_training_batches:
            return False  # epoch end follows: validation and epoch-end hooks a resume would skip
        every = trainer.val_check_batch
        if every is not None and math.isfinite(every) and every > 0 and done % int(every) == 0:
            return False
        if done % max(1, trainer.accumulate_grad_batches) != 0:
            return False
        return not (trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop or not self._resumable_after(trainer, batch_idx):
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)
        raise Preempted(self.received or signal.SIGTERM, trainer.global_step, trainer.current_epoch)
