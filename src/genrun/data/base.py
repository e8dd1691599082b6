"""Datasets small enough to live in memory as tensors, readable without Lightning.

`genrun sample` and `evaluate` read test images through these classes and must start in a couple of
seconds, so nothing here imports Lightning; training hands them to the Trainer through
`genrun.data.lightning.LightningData`.
"""

from __future__ import annotations

import torch

from genrun.data.loaders import TensorBatchLoader

Split = tuple[torch.Tensor, torch.Tensor]


def split_off(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int) -> tuple[Split, Split]:
    """A seeded random split: (kept, held_out) with round(fraction * n) items held out."""
    n_out = int(round(len(x) * fraction))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    kept, out = order[n_out:], order[:n_out]
    return (x[kept], y[kept]), (x[out], y[out])


class InMemoryDataModule:
    """Subclasses implement `load()` returning {'train', 'val', 'test'} -> (inputs, labels) tensors.

    Tensors are loaded once, moved to the training device, and served by TensorBatchLoader.
    `info()` is a plain dict saved with every checkpoint (shape, classes, source, split sizes).
    """

    trainer = None  # the Lightning Trainer while one runs this dataset (set by LightningData)
    purpose = "training on"  # what the data is read for, as notices say it ("reading test images from")

    def __init__(self, batch_size: int = 128, shuffle_seed: int = 0):
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            from genrun.errors import GenrunError

            raise GenrunError(f"dataset.batch_size={batch_size}: must be at least 1")
        self.generator = torch.Generator().manual_seed(int(shuffle_seed))
        # The generator's state as the current training pass began, and (after a resume) the saved one.
        self._pass_start: torch.Tensor | None = None
        self._resumed_pass_start: torch.Tensor | None = None
        self.splits: dict[str, Split] | None = None
        self.details: dict = {}

    def load(self) -> dict[str, Split]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.load()
        device = self._device()
        if self.splits["train"][0].device != device:
            self.splits = {name: tuple(t.to(device) for t in pair) for name, pair in self.splits.items()}

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def info(self) -> dict:
        self.setup()
        sizes = {name: len(pair[0]) for name, pair in self.splits.items()}
        x = self.splits["train"][0]
        return {"shape": list(x.shape[1:]), "split_sizes": sizes, **self.details}

    def _loader(self, split: str, shuffle: bool) -> TensorBatchLoader:
        self.setup()
        x, y = self.splits[split]
        return TensorBatchLoader((x, y), self.batch_size, shuffle=shuffle,
                                 generator=self.generator if shuffle else None)

    def train_dataloader(self):
        loader = self._loader("train", shuffle=True)
        loader.start = self._begin_pass
        return loader

    def _begin_pass(self) -> int:
        """Batches of this pass already trained: non-zero only for a run resumed in the middle of an epoch,
        whose pass then draws the order the interrupted pass drew (from the generator state it began with)."""
        skip = 0
        trainer, saved, self._resumed_pass_start = self.trainer, self._resumed_pass_start, None
        if saved is not None and trainer is not None:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
            if 0 < done < trainer.num_training_batches:
                skip = done
                self.generator.set_state(saved)
        self._pass_start = self.generator.get_state()
        return skip

    def has_validation(self) -> bool:
        self.setup()
        return len(self.splits["val"][0]) > 0

    def val_dataloader(self):
        self.setup()
        if len(self.splits["val"][0]) == 0:
            return []
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if self._pass_start is not None:
            state["pass_start"] = self._pass_start
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._resumed_pass_start = state.get("pass_start")
