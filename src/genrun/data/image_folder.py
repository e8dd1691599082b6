"""Any folder of PNG/JPEG images, decoded once into a tensor; class sub-folders become labels."""

from __future__ import annotations

from pathlib import Path

import torch

from genrun.data.base import InMemoryDataModule, split_off
from genrun.errors import GenrunError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def find_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under root and their labels: sub-folder index, or 0 for images at the top level."""
    if not root.exists():
        raise GenrunError(f"dataset.path={root}: no such directory")
    if not root.is_dir():
        raise GenrunError(f"dataset.path={root}: not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    top = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if classes and top:
        raise GenrunError(f"dataset.path={root}: mixes images ({top[0].name}) with class sub-folders; "
                          "put every image inside a class folder or none")
    if classes:
        for label, name in enumerate(classes):
            found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [label] * len(found)
    else:
        files, labels, classes = top, [0] * len(top), []
    if not files:
        raise GenrunError(f"dataset.path={root}: no PNG or JPEG images found")
    return files, labels, classes


def decode(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """One image as float C×S×S in [0, 1]: shorter side resized to S, then centre-cropped."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as F

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            image = F.center_crop(F.resize(image, image_size, antialias=True), image_size)
            return F.pil_to_tensor(image).float().div(255.0)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise GenrunError(f"cannot read image {path}: {err}") from None


class ImageFolderDataModule(InMemoryDataModule):
    def __init__(self, path: str, image_size: int = 32, channels: int = 3, batch_size: int = 64,
                 val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0,
                 num_classes: int | None = None):
        super().__init__(batch_size=batch_size, shuffle_seed=split_seed)
        if channels not in (1, 3):
            raise GenrunError(f"dataset.channels={channels}: must be 1 (grey) or 3 (RGB)")
        if int(image_size) < 4:
            raise GenrunError(f"dataset.image_size={image_size}: must be at least 4")
        self.path = Path(path).expanduser()
        self.image_size, self.channels = int(image_size), int(channels)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.split_seed = int(split_seed)
        self.files, self.labels, self.classes = find_images(self.path)

    @property
    def num_classes(self) -> int:
        return max(1, len(self.classes))

    def load(self):
        x = torch.stack([decode(f, self.image_size, self.channels) for f in self.files])
        y = torch.tensor(self.labels, dtype=torch.long)
        rest, test = split_off(x, y, self.test_fraction, self.split_seed)
        train, val = split_off(*rest, self.val_fraction / max(1e-9, 1 - self.test_fraction), self.split_seed + 1)
        if len(train[0]) == 0:
            raise GenrunError(f"dataset.path={self.path}: too few images ({len(x)}) to split")
        if len(test[0]) == 0:
            test = val if len(val[0]) else train
        self.details = {"source": str(self.path), "classes": self.classes, "num_classes": self.num_classes,
                        "channels": self.channels, "image_size": self.image_size,
                        "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                        "split_seed": self.split_seed}
        return {"train": train, "val": val, "test": test}
