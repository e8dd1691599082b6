"""Progress on every wait, through one mechanism: a line that says what a stage does, and bars with an estimate.

Bars are drawn (rich, on stderr) only when stderr is a terminal, so logs and CI get no redraws: there a
stage is its one line, and a loop that turns out long adds one line with its estimate. Bars opened while
another shows join its display (rich allows one live display at a time). Lightning's own progress bar draws
genrun train; `fit_progress` brings other Trainer fits (the domain classifier's) onto these bars.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from genrun.budget import human_duration

T = TypeVar("T")
# Without a terminal, a loop's estimate is stated once, when it has run long enough to be worth trusting and
# when enough is left to be worth waiting for.
ESTIMATE_AFTER_S = 5.0
ESTIMATE_WORTH_S = 10.0


def interactive() -> bool:
    """Whether bars are drawn: stderr is a terminal that can redraw (FORCE_COLOR and the like do not count)."""
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


class _Display:
    """The one rich display the open bars share."""

    progress = None
    users = 0

    @classmethod
    def join(cls):
        if cls.progress is None:
            from rich import progress as rp
            from rich.console import Console

            columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                       rp.TimeElapsedColumn(), rp.TextColumn("eta"), rp.TimeRemainingColumn())
            cls.progress = rp.Progress(*columns, console=Console(stderr=True), transient=True)
            cls.progress.start()
        cls.users += 1
        return cls.progress

    @classmethod
    def leave(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.progress is not None:
            cls.progress.stop()
            cls.progress = None


def _write(line: str) -> None:
    if _Display.progress is not None:
        _Display.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    with suppress(AttributeError, ValueError, OSError):  # stderr closed (a closed pipe): not worth a failure
        print(line, file=sys.stderr, flush=True)


def stage(message: str) -> None:
    """Say in one line what the next wait is for, terminal or not."""
    _write(message)


class Bar:
    """A bar for `total` steps (None: unknown); `advance` moves it and may rename it."""

    def __init__(self, description: str, total: int | None = None):
        self.description, self.total, self.done = description, total, 0
        self.started = time.perf_counter()
        self._estimated = False
        self._progress = _Display.join() if interactive() else None
        self._task = None if self._progress is None else self._progress.add_task(description, total=total)

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        self.done += steps
        if description is not None:
            self.description = description
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, description=self.description)
        elif not self._estimated:
            self._state_estimate()

    def _state_estimate(self) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed < ESTIMATE_AFTER_S or not self.total or not self.done:
            return
        self._estimated = True
        left = elapsed * (self.total - self.done) / self.done
        if left >= ESTIMATE_WORTH_S:
            _write(f"  {self.description}: {self.done:,} of {self.total:,} in {human_duration(elapsed)}, "
                   f"about {human_duration(left)} left")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.remove_task(self._task)
            self._progress = None
            _Display.leave()


@contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Bar]:
    """A Bar that vanishes when the block ends, however it ends."""
    shown = Bar(description, total)
    try:
        yield shown
    finally:
        shown.close()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield from `items`, advancing a bar after each."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if total == 0:  # nothing left to wait for (the first batch was the estimate's): no empty 0/0 bar
        yield from items
        return
    with bar(description, total) as shown:
        for item in items:
            yield item
            shown.advance()


def fit_progress(description: str):
    """A Lightning callback that shows a Trainer's fit on these bars: one step per batch, the epoch in the name
    (for fits that run with Lightning's own bar off)."""
    import lightning as L

    class FitProgress(L.Callback):
        def __init__(self):
            self.shown: Bar | None = None

        def _name(self, trainer) -> str:
            return f"{description}, epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

        def on_train_start(self, trainer, pl_module):
            per_epoch, epochs = trainer.num_training_batches, trainer.max_epochs
            finite = isinstance(per_epoch, int) and epochs is not None and epochs > 0
            self.shown = Bar(self._name(trainer), per_epoch * epochs if finite else None)

        def on_train_epoch_start(self, trainer, pl_module):
            if self.shown is not None:
                self.shown.advance(0, self._name(trainer))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.shown is not None:
                self.shown.advance()

        def on_train_end(self, trainer, pl_module):
            self._close()

        def on_exception(self, trainer, pl_module, exception):
            self._close()

        def _close(self):
            if self.shown is not None:
                self.shown.close()
                self.shown = None

    return FitProgress()
