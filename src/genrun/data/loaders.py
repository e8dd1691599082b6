"""Mini-batches served by slicing tensors already in memory (or on the GPU).

A DataLoader over a TensorDataset collates every batch item by item; for datasets that fit in memory
indexing the whole tensor at once is several times faster and keeps the accelerator fed.
"""

from __future__ import annotations

import torch


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TensorBatchLoader:
    """Iterates over aligned tensors in batches; shuffles with its own generator; shards across DDP ranks.

    The generator's state is part of the datamodule's checkpoint state, so a resumed run draws the same
    batches as an uninterrupted one. `start`, if given, is called as each pass begins (before the order is
    drawn) and returns how many batches of this pass to skip: a run resumed in the middle of an epoch.
    """

    def __init__(self, tensors, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                 drop_last: bool = False, start=None):
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last
        self.start = start

    def _indices(self) -> torch.Tensor:
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        rank, world = _rank_and_world()
        if world > 1:
            # Every rank must see the same number of batches, or DDP's all-reduce waits forever.
            order = order[: n - n % world][rank::world]
        return order

    def __len__(self) -> int:
        _rank, world = _rank_and_world()
        n = len(self.tensors[0]) // world if world > 1 else len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        skip = self.start() if self.start is not None else 0
        order = self._indices()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        device = self.tensors[0].device
        for start in range(skip * self.batch_size, stop, self.batch_size):
            index = order[start : start + self.batch_size].to(device)
            yield tuple(t.index_select(0, index) for t in self.tensors)
