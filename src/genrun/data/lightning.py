"""Lightning's view of a genrun dataset: the only data module that imports Lightning.

The datasets themselves (`InMemoryDataModule` and its subclasses) are plain classes so that sampling and
evaluation can read test images without paying Lightning's import. Training wraps one in `LightningData`,
which forwards every hook and lets the dataset see the Trainer (its device, its progress through the data).
"""

from __future__ import annotations

import lightning as L

from genrun.data.base import InMemoryDataModule


class LightningData(L.LightningDataModule):
    """Forwards Lightning's data hooks to a genrun dataset (`self.data`)."""

    def __init__(self, data: InMemoryDataModule):
        super().__init__()
        self.data = data

    def setup(self, stage: str | None = None) -> None:
        self.data.trainer = self.trainer
        self.data.setup(stage)

    def train_dataloader(self):
        return self.data.train_dataloader()

    def val_dataloader(self):
        return self.data.val_dataloader()

    def test_dataloader(self):
        return self.data.test_dataloader()

    def state_dict(self) -> dict:
        return self.data.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.data.load_state_dict(state)


def dataset_of(datamodule) -> InMemoryDataModule | None:
    """The genrun dataset behind the Trainer's datamodule (None when it runs on plain dataloaders)."""
    return getattr(datamodule, "data", datamodule)


def rename_data_state(checkpoint: dict) -> None:
    """Checkpoints written before LightningData kept the dataset's state under the dataset class's name;
    Lightning now looks under LightningData's. Renamed in place so that such runs resume exactly."""
    key = LightningData.__qualname__
    config = (checkpoint.get("genrun") or {}).get("config") or {}
    target = str((config.get("dataset") or {}).get("_target_", ""))
    old = target.rpartition(".")[2]
    if old and old != key and old in checkpoint and key not in checkpoint:
        checkpoint[key] = checkpoint.pop(old)
