"""Random crops of the bundled photos: the offline stand-in for a folder of content images (fast style).

Johnson et al. trained on COCO; genrun's offline default is random crops (random scale and position, random
horizontal flips) of the photos that installed packages ship (genrun.data.photos), said so on the console.
Point `dataset=image_folder dataset.path=DIR` at real photos for a stylizer that generalises.
"""

from __future__ import annotations

import torch

from genrun.data import photos
from genrun.data.base import InMemoryDataModule, split_off
from genrun.errors import GenrunError
from genrun.progress import stage


def random_crops(images: list[torch.Tensor], count: int, size: int, seed: int) -> torch.Tensor:
    """`count` size×size crops, each from a random photo, at a random scale (a side of size ... the photo's
    shorter side), position and horizontal flip."""
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    crops = []
    for _ in range(count):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        h, w = image.shape[-2:]
        side = int(torch.randint(min(size, h, w), min(h, w) + 1, (1,), generator=generator))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = image[:, top : top + side, left : left + side]
        crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False,
                             antialias=side > size)[0]
        if bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops.append(crop.clamp(0, 1))
    return torch.stack(crops)


class PhotoCropsDataModule(InMemoryDataModule):
    def __init__(self, count: int = 512, image_size: int = 64, batch_size: int = 8, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, seed: int = 0, channels: int = 3, num_classes: int | None = None):
        super().__init__(batch_size=batch_size, shuffle_seed=seed)
        if int(count) < 3:
            raise GenrunError(f"dataset.count={count}: need at least 3 crops (train, validation, test)")
        if int(image_size) < 8:
            raise GenrunError(f"dataset.image_size={image_size}: must be at least 8")
        if channels != 3:
            raise GenrunError(f"dataset.channels={channels}: the bundled photos are RGB (3)")
        self.count, self.image_size, self.seed = int(count), int(image_size), int(seed)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)

    def load(self):
        stage(f"dataset=photo_crops: {self.purpose} {self.count} random {self.image_size}x{self.image_size} crops "
              f"of the bundled photos ({', '.join(photos.BUNDLED)}), an offline stand-in for a folder of "
              "content photos (dataset=image_folder dataset.path=DIR)")
        images = [photos.load_photo(name)[0] for name in photos.BUNDLED]
        x = random_crops(images, self.count, self.image_size, self.seed)
        y = torch.zeros(len(x), dtype=torch.long)
        rest, test = split_off(x, y, self.test_fraction, self.seed)
        train, val = split_off(*rest, self.val_fraction / max(1e-9, 1 - self.test_fraction), self.seed + 1)
        self.details = {"source": "photo_crops", "photos": list(photos.BUNDLED), "num_classes": 1, "channels": 3,
                        "image_size": self.image_size, "count": self.count, "seed": self.seed}
        return {"train": train, "val": val, "test": test if len(test[0]) else val}
