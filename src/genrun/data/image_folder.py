"""Any folder of PNG/JPEG images, decoded once into a tensor; class sub-folders become labels."""

from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
import torch

from genrun.data.base import InMemoryDataModule, split_off
from genrun.errors import GenrunError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Modes that carry alpha; "P" (palette) and others may carry it too, in info["transparency"].
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# Integer greyscale as Pillow opens a 16-bit PNG ("I;16"; "I" in older Pillow): samples 0..65535.
INTEGER_GREY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
SIXTEEN_BIT_MAX = 65535


def find_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under root and their labels: sub-folder index, or 0 for images at the top level.

    A symlink loop or a broken symlink that could be an image (or, at the top level, a class folder) stops
    the run naming it, in both layouts: skipping it would silently drop images or a whole class.
    """
    if not root.exists():
        raise GenrunError(f"dataset.path={root}: no such directory")
    if not root.is_dir():
        raise GenrunError(f"dataset.path={root}: not a directory")
    entries = {p: _kind(root, p, top_level=True) for p in sorted(root.iterdir())}
    classes = [p.name for p, kind in entries.items() if kind == "dir" and not p.name.startswith(".")]
    top = [p for p, kind in entries.items() if kind == "image"]
    if classes and top:
        raise GenrunError(f"dataset.path={root}: mixes images ({top[0].name}) with class sub-folders; "
                          "put every image inside a class folder or none")
    files, labels = [], []
    if classes:
        for label, name in enumerate(classes):
            found = sorted(p for p in (root / name).rglob("*") if _kind(root, p, top_level=False) == "image")
            files += found
            labels += [label] * len(found)
    else:
        files, labels = top, [0] * len(top)
    if not files:
        raise GenrunError(f"dataset.path={root}: no PNG or JPEG images found")
    return files, labels, classes


def _kind(root: Path, path: Path, top_level: bool) -> str | None:
    """'dir', 'image' (a regular file with an image suffix) or None (not ours) for one folder entry."""
    is_image_name = path.suffix.lower() in IMAGE_SUFFIXES
    try:
        mode = path.stat().st_mode  # follows symlinks: a loop or a missing target fails here
    except OSError as err:
        if is_image_name or (top_level and not path.name.startswith(".")):
            raise GenrunError(f"dataset.path={root}: {path} {_unfollowable(path, err)}") from None
        return None
    if stat.S_ISDIR(mode):
        return "dir"
    if not is_image_name:
        return None
    if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
        raise GenrunError(f"dataset.path={root}: {path} is not a regular file")
    return "image"


def _unfollowable(path: Path, err: OSError) -> str:
    """Why `path` cannot be opened, in words: a symlink loop, a broken symlink, or the OS's reason."""
    if err.errno == errno.ELOOP:
        return "is a symlink loop; remove it or fix its target"
    if path.is_symlink() and err.errno == errno.ENOENT:
        return f"is a broken symlink (its target {os.readlink(path)} does not exist)"
    return f"cannot be read ({err.strerror})"


def decode(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """One image as float C×S×S in [0, 1]: shorter side resized to S, then centre-cropped.

    Every mode is scaled from its own range, never clipped: 8-bit modes (1, L, P, RGB, CMYK, ...) by 255,
    16-bit greyscale (I;16, I;16B, I) by 65535; float images (F) must already lie in [0, 1]. Transparency
    (an alpha channel, a palette's transparent entries, a PNG tRNS colour) is composited over white, as a
    page shows it, so hidden colours under transparent pixels never leak in. An image over PIL's
    Image.MAX_IMAGE_PIXELS is refused before its pixels are decoded.
    """
    from PIL import ImageOps, UnidentifiedImageError
    from torchvision.transforms import functional as F

    try:
        with _open(path) as image:
            image = _grey_or_rgb(ImageOps.exif_transpose(image), channels, path)  # phone photos stand upright
            image = F.center_crop(F.resize(image, image_size, antialias=True), image_size)
            if image.mode != "F":  # the common 8-bit case: PIL's integer resize, one division
                return F.pil_to_tensor(image).float().div(255.0)
            grey = torch.from_numpy(np.array(image, dtype=np.float32)).clamp_(0.0, 1.0)[None]
            return grey.expand(channels, -1, -1).clone()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise GenrunError(f"cannot read image {path}: {err}") from None


def _open(path: Path):
    """PIL's Image.open, refusing a decompression bomb in one line before any pixel is decoded.

    PIL only warns between MAX_IMAGE_PIXELS and twice that, then decodes the whole image; here both are refused.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(claimed[1]):,} pixels" if claimed else "its size"
        raise GenrunError(f"cannot read image {path}: its header claims {size}, over PIL's limit "
                          f"Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS:,} (a decompression bomb?); "
                          "shrink the image or remove it") from None


def _grey_or_rgb(image, channels: int, path: Path):
    """`image` as mode L or RGB (8-bit), or as F (grey floats in [0, 1]) when its samples have more bits."""
    from PIL import Image

    target = "L" if channels == 1 else "RGB"
    if image.mode == "F" or image.mode in INTEGER_GREY_MODES:
        return Image.fromarray(_grey_floats(image, path))
    if _has_transparency(image):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert(target)
    return image.convert(target)


def _has_transparency(image) -> bool:
    """Alpha in any of PIL's forms: a mode with an A band, a tRNS entry in info, or an RGBA palette."""
    palette = getattr(image, "palette", None)
    return (image.mode in ALPHA_MODES or "transparency" in image.info
            or (image.mode == "P" and palette is not None and palette.mode == "RGBA"))


def _grey_floats(image, path: Path) -> np.ndarray:
    """Greyscale samples of more than 8 bits as float32 in [0, 1]; a value outside the mode's range is refused.

    PIL's convert("L") would clip them to 0..255 instead: 16-bit mid-grey (32768) would become white.
    """
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        low, high = 0.0, 1.0
    else:
        low, high = 0.0, float(SIXTEEN_BIT_MAX)
        if "transparency" in image.info:  # a PNG tRNS grey level: that level is transparent
            values[values == float(image.info["transparency"])] = high
    if values.size and not (np.isfinite(values).all() and low <= values.min() and values.max() <= high):
        raise GenrunError(f"cannot read image {path}: mode {image.mode} pixels range from {values.min():g} to "
                          f"{values.max():g}, outside the {low:g}..{high:g} genrun scales from; save it as an "
                          "8- or 16-bit PNG")
    return values / high


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
