"""Awkward inputs read honestly: every PIL image mode, decompression bombs, symlink loops, non-UTF-8 text.

Images are real files written by PIL (or, for a bomb, a real PNG header) and decoded by the real datamodule.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genrun.data.image_folder import ImageFolderDataModule, decode
from genrun.data.text import TextDataModule
from genrun.errors import GenrunError

SIZE = 8  # files are 8×8 and decoded at 8: no resampling, so each half keeps its exact value
WHITE, BLACK = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)


def _halves(mode: str, left, right, palette: list[int] | None = None) -> Image.Image:
    """An 8×8 image of `mode`: columns 0-3 hold `left`, columns 4-7 hold `right`."""
    image = Image.new(mode, (SIZE, SIZE), left)
    if palette is not None:
        image.putpalette(palette)
    image.paste(right, (SIZE // 2, 0, SIZE, SIZE))
    return image


def _sixteen_bit(mode: str, left: int, right: int) -> Image.Image:
    """16-bit greyscale built from raw big- or little-endian samples (PIL cannot paste into I;16B)."""
    values = np.full((SIZE, SIZE), left)
    values[:, SIZE // 2 :] = right
    return Image.frombytes(mode, (SIZE, SIZE), values.astype(">u2" if mode.endswith("B") else "<u2").tobytes())


def _array_halves(dtype, left, right) -> Image.Image:
    values = np.full((SIZE, SIZE), left, dtype=dtype)
    values[:, SIZE // 2 :] = right
    return Image.fromarray(values)


RED_GREEN = [0, 0, 0, 255, 0, 0, 0, 255, 0]  # palette entries 0 black, 1 red, 2 green
# name -> (image, how to save it, expected RGB of the left half, of the right half, tolerance).
# 1, L, P, RGB and CMYK were decoded right before: they guard the fast 8-bit path; the rest were wrong.
MODES = {
    "1": (lambda: _halves("1", 0, 1), {}, BLACK, WHITE, 1e-6),
    "L": (lambda: _halves("L", 0, 128), {}, BLACK, (128 / 255,) * 3, 1e-6),
    "LA half and fully transparent": (lambda: _halves("LA", (0, 128), (100, 0)), {}, (127 / 255,) * 3, WHITE,
                                      1.5 / 255),
    "P": (lambda: _halves("P", 1, 2, RED_GREEN), {}, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), 1e-6),
    "P with a transparent entry": (lambda: _halves("P", 1, 2, RED_GREEN), {"transparency": 2},
                                   (1.0, 0.0, 0.0), WHITE, 1e-6),
    "RGB": (lambda: _halves("RGB", (200, 10, 10), (0, 0, 255)), {}, (200 / 255, 10 / 255, 10 / 255),
            (0.0, 0.0, 1.0), 1e-6),
    "RGB with a tRNS colour": (lambda: _halves("RGB", (200, 10, 10), (0, 0, 255)), {"transparency": (0, 0, 255)},
                               (200 / 255, 10 / 255, 10 / 255), WHITE, 1e-6),
    "RGBA": (lambda: _halves("RGBA", (0, 0, 255, 255), (255, 0, 0, 0)), {}, (0.0, 0.0, 1.0), WHITE, 1e-6),
    "CMYK JPEG, pure cyan": (lambda: Image.new("CMYK", (SIZE, SIZE), (255, 0, 0, 0)),
                             {"format": "JPEG", "quality": 95}, (0.0, 1.0, 1.0), (0.0, 1.0, 1.0), 6 / 255),
    "I;16": (lambda: _sixteen_bit("I;16", 32768, 65535), {}, (32768 / 65535,) * 3, WHITE, 1e-6),
    "I;16B": (lambda: _sixteen_bit("I;16B", 32768, 65535), {}, (32768 / 65535,) * 3, WHITE, 1e-6),
    "I;16 with a tRNS grey": (lambda: _sixteen_bit("I;16", 1000, 16384), {"transparency": 1000},
                              WHITE, (16384 / 65535,) * 3, 1e-6),
    # Pillow writes modes I and F only as TIFF; PIL reads a file by its content, whatever its suffix.
    "I (32-bit int)": (lambda: _array_halves(np.int32, 32768, 0), {"format": "TIFF"}, (32768 / 65535,) * 3,
                       BLACK, 1e-6),
    "F (32-bit float)": (lambda: _array_halves(np.float32, 0.25, 1.0), {"format": "TIFF"}, (0.25,) * 3, WHITE, 1e-6),
}


def _luma(rgb) -> float:
    """ITU-R 601-2 luma, the grey PIL's convert('L') makes of a colour."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_decodes_to_its_true_values(tmp_path, name, channels):
    make, save_args, left, right, tolerance = MODES[name]
    path = tmp_path / ("image.jpg" if save_args.get("format") == "JPEG" else "image.png")
    make().save(path, **save_args)
    x = decode(path, SIZE, channels)
    assert x.shape == (channels, SIZE, SIZE) and x.dtype == torch.float32
    for column, rgb in ((0, left), (SIZE - 1, right)):
        expected = torch.tensor(rgb if channels == 3 else [_luma(rgb)])
        slack = 0.6 / 255 if channels == 1 and len(set(rgb)) > 1 else 0.0  # PIL rounds a colour's grey to 8 bits
        assert torch.allclose(x[:, 0, column], expected, atol=tolerance + slack), (name, column, x[:, 0, column])


def test_a_sixteen_bit_image_keeps_its_levels_through_resizing(tmp_path):
    path = tmp_path / "ramp.png"
    _sixteen_bit("I;16", 16384, 49152).save(path)
    x = decode(path, 4, 1)
    assert float(x.min()) > 0.24 and float(x.max()) < 0.76 and float(x.mean()) == pytest.approx(0.5, abs=0.01)


def test_a_photo_tagged_as_rotated_is_decoded_upright(tmp_path):
    pixels = np.zeros((4, 8), dtype=np.uint8)
    pixels[:, :4] = 255  # a wide image, left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # EXIF orientation: shown turned 90 degrees clockwise, as phones write it
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright = decode(tmp_path / "phone.jpg", 4, 1)[0]
    assert upright[:2].min() > 0.9 and upright[2:].max() < 0.1  # now tall: the white half on top


@pytest.mark.parametrize(("values", "found"), [(np.int32([70000, 0]), "70000"), (np.float32([2.5, 0]), "2.5"),
                                               (np.float32([np.nan, 0.5]), "nan")])
def test_integer_and_float_pixels_outside_the_scaled_range_are_refused(tmp_path, values, found):
    path = tmp_path / "odd.png"
    _array_halves(values.dtype, *values).save(path, format="TIFF")
    with pytest.raises(GenrunError) as err:
        decode(path, SIZE, 1)
    message = str(err.value)
    assert str(path) in message and found in message and "outside" in message and "\n" not in message


def _png_claiming(path, width: int, height: int) -> None:
    """A real PNG whose header claims width×height 1-bit pixels, with an empty IDAT: a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


# 30000² is past twice the limit (PIL raises); 10000² is past the limit only (PIL just warns, then decodes).
@pytest.mark.parametrize("side", [30000, 10000])
def test_a_decompression_bomb_is_one_line_naming_the_file_and_the_limit(tmp_path, side):
    for i in range(3):
        _halves("RGB", (1, 2, 3), (4, 5, 6)).save(tmp_path / f"ok{i}.png")
    bomb = tmp_path / "bomb.png"
    _png_claiming(bomb, side, side)
    module = ImageFolderDataModule(path=str(tmp_path), image_size=SIZE)
    with pytest.raises(GenrunError) as err:
        module.setup()
    message = str(err.value)
    assert str(bomb) in message and f"{side * side:,} pixels" in message and "\n" not in message
    assert f"Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS:,}" in message


def _dataset(root, classes: bool):
    folder = root / "cats" if classes else root
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        _halves("RGB", (1, 2, 3), (4, 5, 6)).save(folder / f"ok{i}.png")
    if classes:
        (root / "dogs").mkdir()
        _halves("RGB", (1, 2, 3), (4, 5, 6)).save(root / "dogs" / "ok.png")
    return folder


@pytest.mark.parametrize("classes", [False, True], ids=["flat", "class folders"])
@pytest.mark.parametrize(("target", "expected"), [("loop.png", "is a symlink loop"),
                                                  ("missing.png", "is a broken symlink (its target missing.png")])
def test_a_symlink_that_leads_nowhere_is_named_in_both_layouts(tmp_path, classes, target, expected):
    link = _dataset(tmp_path, classes) / "loop.png"
    os.symlink(target, link)
    with pytest.raises(GenrunError) as err:
        ImageFolderDataModule(path=str(tmp_path), image_size=SIZE).setup()
    message = str(err.value)
    assert f"{link} {expected}" in message and "\n" not in message


def test_a_class_folder_behind_a_symlink_loop_is_named_not_dropped(tmp_path):
    _dataset(tmp_path, classes=True)
    os.symlink("birds", tmp_path / "birds")  # the 'birds' class would silently vanish
    with pytest.raises(GenrunError, match="birds is a symlink loop"):
        ImageFolderDataModule(path=str(tmp_path), image_size=SIZE)


LATIN_1 = "Voilà une phrase écrite en Latin-1, très ordinaire. ".encode("latin-1") * 40 + bytes(range(256))


def test_the_byte_tokenizer_trains_on_the_raw_bytes_of_a_latin1_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(LATIN_1)
    module = TextDataModule(path=str(path), tokenizer="byte", block_size=8, batch_size=4)
    module.setup()
    tokens = torch.cat([module.streams["train"], module.streams["val"]])
    assert bytes(tokens.tolist()) == LATIN_1
    assert module.info()["characters"] == len(LATIN_1) and module.info()["vocab_size"] == 256


def test_the_char_tokenizer_refuses_a_latin1_file_in_one_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(LATIN_1)
    with pytest.raises(GenrunError) as err:
        TextDataModule(path=str(path), tokenizer="char", block_size=8).setup()
    message = str(err.value)
    assert str(path) in message and "invalid byte 0xe0 at offset 4" in message and "tokenizer=byte" in message
    assert "\n" not in message


@pytest.fixture
def in_process(tmp_path, monkeypatch):
    """`genrun` run in this process from tmp_path; Hydra's logging set-up is undone afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENRUN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GENRUN_OUTPUT_DIR", raising=False)
    root = logging.getLogger()
    handlers, level, threads = list(root.handlers), root.level, torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: a second thread only spins
    yield tmp_path
    torch.set_num_threads(threads)
    for handler in set(root.handlers) - set(handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_genrun_train_with_tokenizer_byte_takes_a_latin1_file(in_process, capsys):
    from genrun.cli import main

    (in_process / "latin1.txt").write_bytes(LATIN_1)
    code = main(["train", "model=gpt", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
                 "model.sample_length=8", "dataset=text", "dataset.path=latin1.txt", "tokenizer=byte",
                 "dataset.batch_size=4", "dataset.eval_batch_size=4", "debug=fast_dev_run", "num_samples=1"])
    assert code == 0, capsys.readouterr().err[-3000:]
    [metrics] = (in_process / "outputs" / "train").glob("*/*/metrics.json")
    data = json.loads(metrics.read_text())["data"]
    assert data["tokenizer"] == "byte" and data["tokens"]["train"] + data["tokens"]["val"] == len(LATIN_1)
    samples = metrics.parent / "samples" / "samples.txt"
    samples.read_bytes().decode("utf-8")  # undecodable sampled bytes are shown as U+FFFD, never a crash
