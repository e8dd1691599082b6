"""Samples drawn batch by batch and streamed to disk, so memory stays flat however many are asked for.

The tensor file is one float32 `.npy` array. Its header (dtype and the final shape, known before the first
batch) is written first and each batch's bytes are appended as it is drawn, so memory holds one batch at a
time, and any reader gets the whole array with `numpy.load(path, mmap_mode='r')` without reading it into RAM.
`torch.save` pickles a tensor that must exist whole in memory, so it cannot stream; shards would make every
reader glue files back together. The file is written under a `.partial` name and renamed once complete, so
an interrupted run never leaves a file that looks whole.

The picture (`<mode>.png`) shows at most PREVIEW_LIMIT samples (chosen up front by index and kept as their
batches pass); the printed output says so when that is fewer than all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from genrun.budget import Budget, timed
from genrun.progress import track

# Samples per batch. Fixed, not tuned to the device: the random stream is drawn batch by batch, so the batch
# size is part of what a seed means.
BATCH = 500
PREVIEW_LIMIT = 256
SUFFIX = ".npy"


class NpyWriter:
    """Writes `count` float32 items of shape `item_shape` to a `.npy` file batch by batch.

    Used as a context manager: on a clean exit the file is checked complete and moved into place; on an error
    the partial file is removed.
    """

    def __init__(self, path: Path, count: int, item_shape: tuple[int, ...]):
        self.path, self.count, self.item_shape = Path(path), int(count), tuple(int(s) for s in item_shape)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.written = 0
        self.file = None

    def __enter__(self) -> NpyWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "wb")  # noqa: SIM115 (closed in __exit__)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (self.count, *self.item_shape)}
        np.lib.format.write_array_header_1_0(self.file, header)
        return self

    def write(self, batch: torch.Tensor) -> None:
        array = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        if array.shape[1:] != self.item_shape or self.written + len(array) > self.count:
            raise ValueError(f"batch of shape {array.shape} does not continue {self.written} of {self.count} "
                             f"items shaped {self.item_shape}")
        self.file.write(array.data)
        self.written += len(array)

    def __exit__(self, kind, error, trace) -> None:
        self.file.close()
        if kind is None and self.written != self.count:
            self.partial.unlink(missing_ok=True)
            raise ValueError(f"{self.path}: {self.written} of {self.count} items written")
        if kind is not None:
            self.partial.unlink(missing_ok=True)
            return
        self.partial.replace(self.path)


def npy_bytes(count: int, item_shape: tuple[int, ...]) -> int:
    """Size of a float32 `.npy` file of `count` items (header included)."""
    return 128 + 4 * count * math.prod(item_shape)


@dataclass
class SamplePlan:
    """A long draw described before it starts.

    `batches` yields the samples in order (lazily: nothing is drawn before the plan runs), `n_batches` how
    many it will yield, `total` the samples in all; `what` is the setting the count comes from (for refusals);
    `shown` the ascending indices of the samples the picture shows, laid out `nrow` to a row.
    """

    batches: Iterator[torch.Tensor]
    total: int
    n_batches: int
    what: str
    shown: torch.Tensor
    nrow: int | None = None
    unit: str = "images"


# Allocations at least this large get their own memory map, returned to the system when freed (see steady_heap).
MMAP_THRESHOLD = 256 * 1024


def steady_heap() -> None:
    """Make freed batches go back to the system, so a long loop's memory stays flat (glibc only; else no-op).

    glibc raises its mmap threshold after the first large free, so later batch-sized tensors come from
    malloc arenas; with a second thread running (the progress bar's), allocations hop between arenas and
    freed batches linger there as fragments, so memory grew with the count in some runs and not in others.
    A fixed threshold stops that adjustment: each batch is mapped and unmapped whole.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except OSError:
        pass


def draw_ahead(batches: Iterator, total: int, size: Callable[[object], int] = len) -> tuple[list, float | None]:
    """The first batch, then the second timed (the first pays one-time costs): (both, items per second of the
    second, or None when one batch holds everything). `size` counts the items of a batch."""
    held = [next(batches)]
    if size(held[0]) >= total:
        return held, None
    second, seconds = timed(lambda: next(batches))
    held.append(second)
    return held, size(second) / seconds


def run_plan(plan: SamplePlan, path: Path, max_minutes: float | None) -> torch.Tensor:
    """Write every sample of `plan` to the `.npy` file `path`; return the samples the picture shows.

    The first two batches are drawn before anything is written: their shape and speed give the disk and time
    estimates, and a plan that would not fit is refused before the file is opened.
    """
    steady_heap()
    budget = Budget(plan.what, max_minutes, plan.unit)
    batches = iter(plan.batches)
    held, rate = draw_ahead(batches, plan.total)
    item_shape = tuple(held[0].shape[1:])
    budget.check_disk(npy_bytes(plan.total, item_shape), path.parent)
    done = sum(len(b) for b in held)
    if rate is not None:
        budget.check_rate(plan.total - done, rate)
    picked, start = [], 0
    rest = track(batches, f"{plan.total:,} {plan.unit}", total=max(0, plan.n_batches - len(held)))
    with NpyWriter(path, plan.total, item_shape) as writer:
        for batch in chain(held, rest):
            picked.append(_pick(batch, start, plan.shown))
            writer.write(batch)
            start += len(batch)
    return torch.cat(picked)


def _pick(batch: torch.Tensor, start: int, shown: torch.Tensor) -> torch.Tensor:
    """The rows of `batch` (global indices start, start+1, ...) that `shown` asks for (a copy, so the batch can go)."""
    lo, hi = torch.searchsorted(shown, torch.tensor([start, start + len(batch)])).tolist()
    return batch[shown[lo:hi] - start]


def leading(total: int, limit: int = PREVIEW_LIMIT) -> torch.Tensor:
    """The first samples, up to `limit`."""
    return torch.arange(min(total, limit))


def corner(total: int, row_len: int, cols: int, rows: int) -> torch.Tensor:
    """Indices of the top-left `rows` x `cols` of a grid laid out `row_len` to a row."""
    cols, rows = max(1, min(cols, row_len)), max(1, min(rows, math.ceil(total / row_len)))
    index = (torch.arange(rows)[:, None] * row_len + torch.arange(cols)[None]).flatten()
    return index[index < total]


def whole_rows(total: int, row_len: int, limit: int = PREVIEW_LIMIT) -> tuple[torch.Tensor, int]:
    """The first rows that fit in `limit` (at least one, cut to `limit` columns): (indices, images per row)."""
    if total <= limit:
        return torch.arange(total), row_len
    cols = min(row_len, limit)
    return corner(total, row_len, cols, limit // cols), cols


def spread(row_len: int, limit: int = PREVIEW_LIMIT) -> torch.Tensor:
    """`limit` indices evenly spaced along one row, both ends included: a long interpolation at a glance."""
    if row_len <= limit:
        return torch.arange(row_len)
    return torch.linspace(0, row_len - 1, limit, dtype=torch.float64).round().long().unique()


def shown_note(picture: Path, shown: int, total: int, tensor: Path, unit: str = "samples") -> str | None:
    """One line for the output when the picture holds fewer samples than were drawn."""
    if shown >= total:
        return None
    return f"{picture.name} shows {shown:,} of the {total:,} {unit}; all are in {tensor.name}"


def write_samples(plan: SamplePlan, context, max_minutes: float | None, mode: str,
                  draw: Callable[[torch.Tensor], object]) -> dict[str, Path]:
    """Run an image plan into `samples.npy`, and picture the samples it shows as `<mode>.png` under
    `context.out_dir` (`draw` turns them into a titled, labelled PIL image). The tensor file keeps one name for
    every mode, so code that reads it need not know the mode; the picture is named by what it shows. A
    picture holding fewer than all samples is noted in `context.notes`."""
    from genrun.figures import save

    tensor = Path(context.out_dir) / f"samples{SUFFIX}"
    shown = run_plan(plan, tensor, max_minutes)
    grid = save(draw(shown), picture_path(context.out_dir, mode))
    note = shown_note(grid, len(shown), plan.total, tensor)
    if note:
        context.notes.append(note)
    return {"grid": grid, "tensor": tensor}


def picture_path(out_dir: Path, mode: str) -> Path:
    """Where a sampling mode's picture goes: named after the mode (prior.png, interpolate.png, ...)."""
    return Path(out_dir) / f"{mode}.png"
