"""What one training step costs Lightning and genrun's callbacks when the model itself costs nothing.

A one-parameter model on 128 x 784 in-memory batches (SGD, lr 0): every microsecond measured is loop
machinery. The variants add genrun's pieces one at a time, all but the first on genrun's module base
(LeanLightningModule). Each variant runs ROUNDS times; medians.
Run: .venv/bin/python bench/lightning_step_overhead.py [THREADS] [ROUNDS]
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from common import ManualOptimisation, machine, write_result
from genrun.callbacks.lean import LeanModelCheckpoint, LeanRichProgressBar, NoProfiler
from genrun.callbacks.preemption import Preemption
from genrun.callbacks.run_state import RNGState, RunInfo
from genrun.callbacks.throughput import Throughput
from genrun.data.loaders import TensorBatchLoader
from genrun.models.lean_module import LeanLightningModule
from genrun.models.train_scalars import TrainScalars
from genrun.pipeline import Pipeline
from loop_timing import plain_epoch_seconds


class StepTimer(L.Callback):
    def __init__(self):
        self.seconds, self.steps = 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch:  # the first epoch pays one-off costs
            self.seconds += time.perf_counter() - self.start
            self.steps += trainer.num_training_batches


class Nothing(L.LightningModule):
    def __init__(self, scalars: bool):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.scalars = TrainScalars(prog_bar=["train/loss"]) if scalars else None

    def training_step(self, batch, batch_idx):
        loss = self.p.sum() * 1.0
        if self.scalars is not None:
            self.scalars.update(self, {"train/loss": loss, "train/recon": loss, "train/kl": loss,
                                       "train/neg_elbo": loss}, len(batch[0]))
        return loss

    def on_train_epoch_end(self):
        if self.scalars is not None:
            self.scalars.log_epoch(self)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def pipeline(self) -> Pipeline:
        """What genrun's RunInfo stores in each checkpoint: here a pipeline with no components."""
        return Pipeline({})


class LeanNothing(LeanLightningModule, Nothing):
    """The same, on genrun's module base (plain attributes set without nn.Module's checks)."""


class ManualNothing(ManualOptimisation, LeanNothing):
    """The same with Lightning's manual optimisation: no closure, fewer hooks; but also no gradient clipping,
    accumulation or scheduler stepping by the Trainer, which genrun's single-optimiser models rely on."""


def plain_step_microseconds(x: torch.Tensor, epochs: int = 6) -> float:
    """The same model, optimiser and loader in a bare Python loop: the floor under any framework."""
    model = Nothing(False)
    loader = TensorBatchLoader((x,), 128, True, torch.Generator().manual_seed(0))
    seconds = plain_epoch_seconds(model, model.configure_optimizers(), loader, epochs)
    return sum(seconds[1:]) / ((epochs - 1) * len(loader)) * 1e6


def step_microseconds(callbacks: list, logger, scalars: bool, x: torch.Tensor, lean: bool | str = True,
                      no_profiler: bool = False) -> float:
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", max_epochs=6, logger=logger, num_sanity_val_steps=0,
                        profiler=NoProfiler() if no_profiler else None,
                        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                        enable_progress_bar=any(isinstance(c, RichProgressBar) for c in callbacks),
                        enable_model_summary=any(isinstance(c, ModelSummary) for c in callbacks),
                        callbacks=[timer, *callbacks], log_every_n_steps=10)
    loader = TensorBatchLoader((x,), 128, True, torch.Generator().manual_seed(0))
    module = {"manual": ManualNothing, True: LeanNothing, False: Nothing}[lean]
    trainer.fit(module(scalars), train_dataloaders=loader)
    return timer.seconds / timer.steps * 1e6


def main(threads: int = 1, rounds: int = 3) -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    x = torch.rand(5000, 1, 28, 28)
    scratch = tempfile.mkdtemp()

    def small():
        return [LearningRateMonitor("epoch"), Throughput(), RNGState(), RunInfo({})]


    def everything():
        return [LeanModelCheckpoint(dirpath=scratch, save_last=True, monitor=None), LeanRichProgressBar(refresh_rate=4),
                *small(), Preemption(Path(scratch) / "preempt.ckpt"), ModelSummary(max_depth=1)]

    variants = {
        "bare Lightning loop (L.LightningModule)": lambda: ([], False, False, False),
        "bare Lightning loop, genrun's LeanLightningModule": lambda: ([], False, False),
        "bare Lightning loop, LeanLightningModule, manual optimisation": lambda: ([], False, False, "manual"),
        "bare Lightning loop, LeanLightningModule, genrun's NoProfiler": lambda: ([], False, False, True, True),
        "+ TrainScalars (4 scalars)": lambda: ([], False, True),
        "+ Lightning ModelCheckpoint": lambda: ([ModelCheckpoint(dirpath=scratch, save_last=True, monitor=None)],
                                                 False, False),
        "+ LeanModelCheckpoint": lambda: ([LeanModelCheckpoint(dirpath=scratch, save_last=True, monitor=None)],
                                           False, False),
        "+ Lightning RichProgressBar": lambda: ([RichProgressBar(refresh_rate=4)], False, False),
        "+ LeanRichProgressBar": lambda: ([LeanRichProgressBar(refresh_rate=4)], False, False),
        "+ TensorBoard, LR monitor, throughput, RNG state, run info": lambda: (small(), True, False),
        "everything genrun adds, with Lightning's pass-through profiler": lambda: (everything(), True, True),
        "everything genrun adds, with genrun's NoProfiler (what genrun runs)":
            lambda: (everything(), True, True, True, True),
        "everything genrun adds, NoProfiler, manual optimisation": lambda: (everything(), True, True, "manual", True),
    }
    results = {name: [] for name in variants}
    for _ in range(rounds):
        for name, make in variants.items():
            callbacks, with_logger, scalars, *options = make()
            logger = TensorBoardLogger(scratch) if with_logger else False
            results[name].append(step_microseconds(callbacks, logger, scalars, x, *options))
    plain = [plain_step_microseconds(x) for _ in range(rounds)]
    results = {"plain Python loop, same model, optimiser and loader (no Lightning)": plain, **results}
    rows = "".join(f"| {name} | {statistics.median(v):.0f} | {', '.join(f'{t:.0f}' for t in v)} |\n"
                   for name, v in results.items())
    write_result(f"lightning_step_overhead_{threads}thread", f"""# Per-step cost of the training loop itself

Command: `.venv/bin/python bench/lightning_step_overhead.py {threads} {rounds}` (a one-parameter model, batches
of 128 x 784 from memory, 40 steps an epoch, 5 timed epochs per run)
Machine: `{json.dumps(machine())}`

| variant | µs per step (median) | rounds |
|---|---|---|
{rows}""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
