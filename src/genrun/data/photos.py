"""Photos to optimise: the user's own (`image=FILE`), or the ones installed packages already ship.

DeepDream and style transfer need a photograph and must run offline with no arguments, so the defaults are
matplotlib's sample `grace_hopper.jpg` and scikit-learn's `china.jpg` and `flower.jpg` (both packages come
with genrun's dependencies). A user's file is decoded as image_folder decodes (one line naming the file for
a missing, unreadable or decompression-bomb image; CMYK, palette and 16-bit images converted from their own
range, transparency over white), but kept at its own resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genrun.errors import GenrunError

# name -> (package, how to find it): the bundled photos, readable as `image=grace_hopper` too.
BUNDLED = ("grace_hopper", "china", "flower")


def bundled_path(name: str) -> Path:
    """The file of one bundled photo, in the package that installs it (found without importing the package:
    matplotlib.cbook.get_sample_data and sklearn.datasets.load_sample_images read these same files)."""
    import importlib.util

    where = {"grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
             "china": ("sklearn", "datasets/images/china.jpg"), "flower": ("sklearn", "datasets/images/flower.jpg")}
    if name not in where:
        raise GenrunError(f"no bundled photo {name!r}; the bundled ones are {', '.join(BUNDLED)}")
    package, relative = where[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GenrunError(f"the bundled photo {name} comes with {package}, which is not installed; pass image=FILE")
    return Path(spec.submodule_search_locations[0]) / relative


def resolve(spec: str | None, default: str = "grace_hopper") -> tuple[Path, str]:
    """(file, how to name it in titles) for `image=` / `content=` / `style=`: a path, a bundled name, or None."""
    if spec is None or str(spec) == "":
        path = bundled_path(default)
        return path, f"{default}.jpg (bundled)"
    if str(spec) in BUNDLED:
        return bundled_path(str(spec)), f"{spec}.jpg (bundled)"
    path = Path(str(spec)).expanduser()
    return path, path.name


def load_photo(spec: str | None, key: str = "image", default: str = "grace_hopper",
               size: int | None = None) -> tuple[torch.Tensor, str]:
    """(3×H×W float image in [0, 1], its name) from `key=spec`; `size` rescales its long side."""
    path, name = resolve(spec, default)
    if not path.exists():
        raise GenrunError(f"{key}={spec}: no such file")
    if not path.is_file():
        raise GenrunError(f"{key}={spec}: not a file")
    image = decode_rgb(path, key)
    return (fit_long_side(image, size) if size else image), name


def decode_rgb(path: Path, key: str = "image") -> torch.Tensor:
    """A file as 3×H×W in [0, 1] at its own resolution, upright (EXIF orientation applied)."""
    from PIL import ImageOps, UnidentifiedImageError

    from genrun.data.image_folder import _grey_or_rgb, _open

    try:
        with _open(path) as image:
            image = _grey_or_rgb(ImageOps.exif_transpose(image), 3, path)
            if image.mode == "F":  # more than 8 bits of grey: floats in [0, 1]
                grey = torch.from_numpy(np.array(image, dtype=np.float32)).clamp_(0.0, 1.0)
                return grey[None].expand(3, -1, -1).clone()
            return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
    except GenrunError as err:
        raise GenrunError(f"{key}={path}: {err}".replace(f"cannot read image {path}: ", "")) from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise GenrunError(f"{key}={path}: cannot read it as an image ({err})") from None


def fit_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """`image` (C×H×W or B×C×H×W) resized so its longer side is `size` pixels (antialiased)."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    scale = size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if shape == (h, w):
        return image
    batch = image if image.dim() == 4 else image[None]
    out = F.interpolate(batch, size=shape, mode="bilinear", align_corners=False, antialias=scale < 1)
    return (out if image.dim() == 4 else out[0]).clamp(0, 1)


def check_pixels(h: int, w: int, limit: int, key: str, what: str) -> None:
    """Refuse up front an image whose optimisation would not fit in memory, naming the limit."""
    if h * w > limit:
        raise GenrunError(f"{key}: {w}x{h} = {h * w:,} pixels is over the {what} limit of {limit:,} pixels "
                          f"(about {int(limit ** 0.5)}x{int(limit ** 0.5)}); pass a smaller size= or image")
