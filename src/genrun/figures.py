"""Pictures that explain themselves: a title band, labelled rows and columns, captions, upscaled tiles.

Every picture genrun writes goes through `sheet`, so a reader who has only the PNG can tell which model and
run drew it, in which mode, with which knobs, and what each row, column and tile is. Small images are
enlarged by whole-pixel (nearest-neighbour) upscaling, which keeps the pixels honest: no smoothing invents
detail. Drawn with PIL's own font, so `genrun sample` stays free of matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

# Tiles are enlarged by a whole factor towards this many pixels on their longer side (never shrunk).
TARGET_TILE = 96
MAX_SCALE = 4
# ...but only while the table stays this wide: a long row of tiles is enlarged less, or not at all.
MAX_WIDTH = 4096
PAD, MARGIN = 2, 6
BACKGROUND, INK, MUTED, WRONG = (255, 255, 255), (0, 0, 0), (90, 90, 90), (200, 0, 0)
TITLE_SIZE, TEXT_SIZE = 16, 12


def scale_for(height: int, width: int) -> int:
    """The whole upscaling factor for tiles of this size: 28 px → 3, 64 px → 2, 96 px and more → 1."""
    return max(1, min(MAX_SCALE, round(TARGET_TILE / max(height, width, 1))))


def upscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """B×C×H×W (or C×H×W) repeated `factor` times along both axes: nearest-neighbour, no new values."""
    return images.repeat_interleave(factor, -1).repeat_interleave(factor, -2) if factor > 1 else images


@lru_cache(maxsize=8)
def font(size: int = TEXT_SIZE):
    """PIL's own scalable font (loaded once per size): no font file to ship, no matplotlib."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1024)
def text_size(text: str, size: int = TEXT_SIZE) -> tuple[int, int]:
    """(width, height) of `text` drawn at `size`, lines included (cached: captions repeat)."""
    if not text:
        return 0, 0
    from PIL import Image, ImageDraw

    _left, _top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox(
        (0, 0), text, font=font(size), spacing=2)
    return right, bottom


def to_pil(image: torch.Tensor, factor: int = 1):
    """A C×H×W tensor in [0, 1] (C = 1 or 3) as an RGB PIL image, `factor` times larger (whole pixels)."""
    import numpy as np
    from PIL import Image

    pixels = np.rint(image.detach().float().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8)
    pixels = np.repeat(pixels, 3, 0) if pixels.shape[0] == 1 else pixels[:3]
    picture = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    return picture


@dataclass
class Caption:
    """Text under one tile (lines separated by newlines), in ink or, for a mistake, in red."""

    text: str
    wrong: bool = False


def sheet(images: torch.Tensor | Sequence[torch.Tensor | None], ncol: int, title: str, subtitle: str = "",
          row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
          captions: Sequence[Caption | str | None] | None = None, split_cols: Sequence[int] = (),
          split_rows: Sequence[int] = (), scale: int | None = None):
    """A titled table of tiles, `ncol` to a row, as a PIL image.

    `images`: B×C×H×W in [0, 1], or a list whose None entries leave a cell blank (so ragged rows still
    line up as a table). The title band holds `title` and `subtitle`; `row_labels` go in a band on the
    left, `col_labels` in a band above the tiles, `captions` under each tile. `split_cols` / `split_rows`: the
    columns and rows that get a wider gap before them, to set apart tiles that belong together (a real image
    beside decoded ones, a sample beside its neighbour). `scale`: the upscaling factor
    (default: `scale_for` the tile size, less where the table would grow wider than MAX_WIDTH).
    """
    from PIL import Image, ImageDraw

    cells = list(images)
    shape = next((c.shape for c in cells if c is not None), None)
    if shape is None:
        raise ValueError("a sheet needs at least one image")
    ncol = max(1, min(ncol, len(cells)))
    factor = scale or max(1, min(scale_for(shape[-2], shape[-1]), MAX_WIDTH // (ncol * (shape[-1] + PAD))))
    th, tw = shape[-2] * factor, shape[-1] * factor
    nrow = math.ceil(len(cells) / ncol)
    texts = [c if isinstance(c, Caption) else Caption(c or "") for c in (captions or [None] * len(cells))]
    caption_h = max((text_size(c.text)[1] for c in texts), default=0)
    caption_h = caption_h + 3 if caption_h else 0
    label_w = max((text_size(label)[0] for label in row_labels or []), default=0)
    label_w = label_w + 2 * MARGIN if label_w else 0
    col_h = max((text_size(label)[1] for label in col_labels or []), default=0)
    col_h = col_h + 4 if col_h else 0
    gaps = [PAD + (3 * PAD if c in split_cols else 0) for c in range(ncol)]
    lefts = [label_w + sum(gaps[: c + 1]) + c * tw for c in range(ncol)]
    grid_w = lefts[-1] + tw + MARGIN
    title_w = max(text_size(title, TITLE_SIZE)[0], text_size(subtitle)[0]) + 2 * MARGIN
    width = max(grid_w, title_w)
    title_h = MARGIN + text_size(title, TITLE_SIZE)[1] + (text_size(subtitle)[1] + 4 if subtitle else 0) + MARGIN
    row_h = th + caption_h + PAD
    tops = [title_h + col_h + PAD + r * row_h + sum(3 * PAD for k in split_rows if 0 < k <= r) for r in range(nrow)]
    height = tops[-1] + row_h
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), title, fill=INK, font=font(TITLE_SIZE))
    if subtitle:
        draw.text((MARGIN, MARGIN + text_size(title, TITLE_SIZE)[1] + 4), subtitle, fill=MUTED, font=font(), spacing=2)
    for c, label in enumerate((col_labels or [])[:ncol]):
        w = text_size(label)[0]
        draw.text((lefts[c] + (tw - w) // 2, title_h), label, fill=INK, font=font())
    for r, label in enumerate((row_labels or [])[:nrow]):
        h = text_size(label)[1]
        draw.text((MARGIN, tops[r] + (th - h) // 2), label, fill=INK, font=font())
    for i, cell in enumerate(cells):
        r, c = divmod(i, ncol)
        left, top = lefts[c], tops[r]
        if cell is not None:
            canvas.paste(to_pil(cell, factor), (left, top))
        if texts[i].text:
            w = text_size(texts[i].text)[0]
            draw.multiline_text((left + max(0, (tw - w) // 2), top + th + 2), texts[i].text,
                                fill=WRONG if texts[i].wrong else INK, font=font(), spacing=2, align="center")
    return canvas


def save(image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def run_name(out_dir: Path) -> tuple[str, str]:
    """(`<model>_<dataset>`, run id) of the run a picture belongs to, from its directory (a training run's
    end-of-run samples sit in its `samples/` folder)."""
    import json

    from genrun.runs import RUN_FILE

    out_dir = Path(out_dir)
    run = out_dir.parent if out_dir.name == "samples" else out_dir
    try:  # what the run recorded, so a run placed anywhere (hydra.run.dir=...) is still named by its model
        recorded = json.loads((run / RUN_FILE).read_text())
        if recorded.get("model"):
            return "_".join(str(recorded[k]) for k in ("model", "dataset") if recorded.get(k)), run.name
    except (OSError, ValueError, AttributeError):
        pass
    return run.parent.name or "run", run.name


def settings_line(**settings) -> str:
    """`key=value` pairs joined, skipping unset ones: the knobs that shaped a picture."""
    def shown(value):
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{key}={shown(value)}" for key, value in settings.items() if value is not None)


def headline(out_dir: Path, mode: str | None, what: str, **settings) -> tuple[str, str]:
    """(title, subtitle) of a picture: model and dataset, mode and what it shows; then the run it belongs
    to and the knobs behind it."""
    group, run = run_name(out_dir)
    knobs = settings_line(**settings)
    title = f"{group} · mode={mode}: {what}" if mode else f"{group}: {what}"
    return title, f"run {run}" + (f" · {knobs}" if knobs else "")


def columns(n: int, nrow: int | None) -> int:
    """Tiles per row: `nrow` when given, else a square-ish table."""
    return nrow or max(1, math.ceil(math.sqrt(n)))


def fraction_labels(indices: torch.Tensor, steps: int) -> list[str]:
    """Column labels of an interpolation path: each point's fraction of the way, 0 to 1."""
    return [f"t={int(i) % steps / (steps - 1):.2g}" for i in indices]


def class_names(data_info: dict, count: int) -> list[str]:
    """The dataset's class names where it has them (image folders), else the class numbers."""
    names = data_info.get("classes") if isinstance(data_info, dict) else None
    return [str(n) for n in names] if names and len(names) >= count else [str(k) for k in range(count)]
