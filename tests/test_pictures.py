"""Every picture genrun writes explains itself: named after its mode, upscaled, titled, with labelled rows,
columns and tiles. Tiles are found in the PNG by their exact pixels, so the checks do not depend on the
layout's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from conftest import genrun_in_process
from genrun import figures
from genrun.evaluation.memorization import NearestTraining
from genrun.families import autoencoder, classifier, gan
from genrun.families.base import SampleContext, SampleRequest
from genrun.families.diffusion import DiffusionKnobs, DiffusionPipeline, UNet
from genrun.metrics.toy2d import scatter_plot
from genrun.nets.autoencoder import Autoencoder
from genrun.nets.classifier import ConvClassifier
from genrun.nets.gan import MLPGenerator
from genrun.resolvers import _mode_prefix

FORMAT1 = Path(__file__).parent / "data" / "format1"


def _images(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Random images on the 8-bit grid, so a PNG holds them exactly."""
    return torch.randint(0, 256, (n, 1, size, size), generator=torch.Generator().manual_seed(seed)).float() / 255


def _context(out_dir: Path, x: torch.Tensor | None = None, y: torch.Tensor | None = None, **info) -> SampleContext:
    splits = {"test": (x, y if y is not None else torch.zeros(len(x), dtype=torch.long))} if x is not None else {}
    return SampleContext(out_dir=out_dir, device=torch.device("cpu"), data_info=info, load_split=splits.__getitem__)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _tile(image: torch.Tensor, factor: int) -> np.ndarray:
    """What an image looks like in a picture: 8-bit, each pixel a factor x factor block, grey as RGB."""
    grey = (image[0].numpy() * 255).round().astype(np.int16)
    big = grey.repeat(factor, 0).repeat(factor, 1)
    return np.stack([big] * 3, -1)


def _find(picture: np.ndarray, tile: np.ndarray) -> list[tuple[int, int]]:
    """Top-left (y, x) of every exact occurrence of `tile` in `picture`."""
    h, w = tile.shape[:2]
    big_h, big_w = picture.shape[0] - h + 1, picture.shape[1] - w + 1
    if big_h <= 0 or big_w <= 0:
        return []
    candidates = np.ones((big_h, big_w), bool)
    for dy, dx in ((0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1), (h - 1, 0)):
        candidates &= (picture[dy : dy + big_h, dx : dx + big_w] == tile[dy, dx]).all(-1)
    return [(int(y), int(x)) for y, x in zip(*np.nonzero(candidates), strict=True)
            if (picture[y : y + h, x : x + w] == tile).all()]


def _ink(region: np.ndarray) -> int:
    """Pixels of text (black or red, not the white background) in a region."""
    return int((region.min(-1) < 128).sum())


def test_upscaling_repeats_pixels_and_keeps_large_images_sensible():
    image = _images(1)[0]
    big = figures.upscale(image, 3)
    assert big.shape == (1, 84, 84)
    assert torch.equal(big[:, ::3, ::3], image) and torch.equal(big[:, 2::3, 1::3], image)  # whole blocks
    assert figures.scale_for(28, 28) == 3 and figures.scale_for(64, 64) == 2 and figures.scale_for(256, 256) == 1
    long_row = figures.sheet(_images(200), 200, "a 200-step path")  # enlarged only while the table stays narrow
    assert long_row.size[0] <= 200 * (28 + figures.PAD) + 2 * figures.MARGIN


def test_the_sheet_has_a_title_band_and_label_bands(tmp_path):
    images = torch.zeros(6, 1, 28, 28)  # black tiles: any ink outside them is text
    plain = np.asarray(figures.sheet(images, 3, "a title")).astype(np.int16)
    labelled = np.asarray(figures.sheet(images, 3, "a title", "a subtitle", row_labels=["input", "reconstruction"],
                                        col_labels=["one", "two", "three"])).astype(np.int16)
    black = _tile(images[0], 3)
    tiles = _find(labelled, black)
    assert len(tiles) == 6 and len(_find(plain, black)) == 6
    top, left = min(y for y, _ in tiles), min(x for _, x in tiles)
    assert _ink(labelled[: top - 16, :]) > 50  # the title band, above the column labels
    assert _ink(labelled[top - 14 : top, left : left + 84]) > 10  # the column label above the first column
    for y in sorted({y for y, _ in tiles}):
        assert _ink(labelled[y : y + 84, :left]) > 10  # each row's label, left of its tiles
    assert min(x for _, x in _find(plain, black)) < left  # without row labels there is no label band
    assert _ink(labelled[top - 14 : top, : left - 1]) == 0  # nothing above the row-label band


def test_a_64_sample_prior_grid_is_upscaled_and_named_after_its_mode(tmp_path):
    net = Autoencoder(1, 28).eval()
    out = tmp_path / "sample" / "vae_mnist" / "prior_run"
    files = autoencoder.sample(net, SampleRequest.of(autoencoder.AutoencoderKnobs, num_samples=64, temperature=0.5),
                               _context(out))
    assert files["grid"] == out / "prior.png" and files["tensor"] == out / "samples.npy"
    picture = _pixels(files["grid"])
    assert picture.shape[1] >= 600
    samples = torch.from_numpy(np.load(files["tensor"]))
    [(y, x)] = _find(picture, _tile(samples[0], 3))  # 3x larger than native
    assert _ink(picture[:y]) > 100  # a title band above the grid


def test_interpolation_rows_are_framed_by_the_real_start_and_end_images(tmp_path):
    net = Autoencoder(1, 28).eval()
    x = _images(30)
    request = SampleRequest.of(autoencoder.AutoencoderKnobs, mode="interpolate", between="images", num_samples=20,
                               steps=5, seed=2)
    files = autoencoder.sample(net, request, _context(tmp_path / "interpolate_run", x))
    assert files["grid"].name == "interpolate.png"
    picture = _pixels(files["grid"])
    found = {i: _find(picture, _tile(x[i], 3)) for i in range(len(x))}
    ends = sorted(pos for spots in found.values() for pos in spots)
    assert len(ends) == 8  # 4 rows, each with its real start and end image
    path = torch.from_numpy(np.load(files["tensor"]))
    rows = sorted({y for y, _ in ends})
    assert len(rows) == 4
    for r, y in enumerate(rows):
        (start_x, end_x) = sorted(x_ for y_, x_ in ends if y_ == y)
        decoded = [_find(picture, _tile(path[r * 5 + k], 3)) for k in range(5)]
        xs = [spots[0][1] for spots in decoded]
        assert all(spots[0][0] == y for spots in decoded)  # the decoded path on the same row
        assert start_x < xs[0] < xs[-1] < end_x  # between the real start and end
        if r == 0:  # the "start" and "end" column labels above them
            assert _ink(picture[y - 14 : y, start_x : start_x + 84]) > 0 and _ink(picture[y - 14 : y, end_x :]) > 0


def test_reconstruction_rows_are_labelled_inputs_above_reconstructions(tmp_path):
    net = Autoencoder(1, 28).eval()
    x = _images(20)
    files = autoencoder.sample(net, SampleRequest.of(autoencoder.AutoencoderKnobs, mode="reconstruct", num_samples=12),
                               _context(tmp_path / "reconstruct_run", x))
    assert files["grid"].name == "reconstruct.png"
    picture, pairs = _pixels(files["grid"]), torch.from_numpy(np.load(files["tensor"]))
    [(y_in, x_in)] = _find(picture, _tile(pairs[8 * 2], 3))  # second pair of rows: first input
    [(y_out, x_out)] = _find(picture, _tile(pairs[8 * 2 + 4], 3))  # its reconstruction (4 inputs in that row)
    assert x_in == x_out and y_out > y_in
    assert _ink(picture[y_in : y_in + 84, :x_in]) > 10 and _ink(picture[y_out : y_out + 84, :x_out]) > 10


def test_arithmetic_is_a_regular_labelled_table(tmp_path):
    net = MLPGenerator(latent_dim=8, shape=[1, 28, 28], hidden_dims=[16]).eval()
    recipe = {"a": (0, 1), "b": (2, 3, 4), "c": (5,)}
    files = gan.sample(net, SampleRequest.of(gan.GANKnobs, mode="arithmetic", arithmetic=recipe),
                       _context(tmp_path / "arithmetic_run"))
    assert files["grid"].name == "arithmetic.png" and json.loads(files["arithmetic"].read_text())["a"] == [0, 1]
    picture, tiles = _pixels(files["grid"]), torch.from_numpy(np.load(files["tensor"]))
    cols = tiles.shape[0] // 4
    # c has one member, so its mean's image is that member's: the first occurrence is the member, the last the mean
    first = {name: min(_find(picture, _tile(tiles[row * cols], 3))) for row, name in enumerate("abc")}
    means = [max(_find(picture, _tile(tiles[row * cols + len(recipe[name])], 3))) for row, name in enumerate("abc")]
    result = _find(picture, _tile(tiles[3 * cols], 3))[0]
    lefts = {x for _, x in [*first.values(), *means, result]}
    assert len(lefts) == 1  # every row starts in the same column
    ys = [first[n][0] for n in "abc"] + [y for y, _ in means] + [result[0]]
    assert ys == sorted(ys) and len(set(ys)) == 7  # rows a, b, c, mean(a), mean(b), mean(c), result
    left = lefts.pop()
    assert all(_ink(picture[y : y + 84, :left]) > 5 for y in ys)  # each row labelled


def test_nearest_neighbour_sheet_writes_each_distance_under_the_pair(tmp_path):
    train = _images(40, seed=3)
    nearest = NearestTraining(train)
    nearest.update(torch.cat([train[:4], _images(8, seed=4)]))
    path = nearest.grid(tmp_path / "evaluate" / "vae_mnist" / "run" / "nearest_training_images.png")
    picture = _pixels(path)
    for i in range(4):  # copies: the sample and its nearest training image are the same picture, side by side
        spots = sorted(_find(picture, _tile(train[i], 3)))
        assert len(spots) >= 2
        (y, x_sample), (_, x_nearest) = spots[0], spots[1]
        assert x_nearest == x_sample + 84 + figures.PAD
        assert _ink(picture[y + 84 : y + 84 + 14, x_nearest : x_nearest + 84]) > 10  # "L2 0.00" under the pair
        assert _ink(picture[y + 84 : y + 84 + 14, x_sample : x_sample + 84]) == 0


def test_denoise_columns_are_labelled_with_timesteps(tmp_path):
    tiny = {"base_width": 8, "channel_mults": [1, 2], "attention_levels": [], "dropout": 0.0}
    pipeline = DiffusionPipeline({"unet": UNet(1, 8, **tiny).eval()}, {"timesteps": 50})
    request = SampleRequest.of(DiffusionKnobs, mode="denoise", num_samples=2, steps=20)
    files = pipeline.sample(request, _context(tmp_path / "denoise_run"))
    assert files["grid"].name == "denoise.png"
    picture, strip = _pixels(files["grid"]), torch.from_numpy(np.load(files["tensor"]))
    scale = figures.scale_for(8, 8)
    cells = [_find(picture, _tile(strip[k], scale))[0] for k in range(10)]  # the first chain's 10 columns
    assert len({y for y, _ in cells}) == 1
    assert all(_ink(picture[y - 14 : y, x : x + 8 * scale]) > 3 for y, x in cells)


def test_classifier_sheet_captions_predictions_and_marks_mistakes(tmp_path):
    net = ConvClassifier(channels=1, image_size=28, num_classes=10, width=4, feature_dim=8).eval()
    x, y = _images(16), torch.arange(16) % 10
    files = classifier.sample(net, SampleRequest.of(classifier.ClassifierKnobs, num_samples=16),
                              _context(tmp_path / "predict_run", x, y))
    assert files["grid"].name == "predict.png"
    picture = _pixels(files["grid"])
    order = [p["index"] for p in json.loads(files["predictions"].read_text())["predictions"]]
    top, left = _find(picture, _tile(x[order[0]], 3))[0]
    assert _ink(picture[top + 84 : top + 84 + 14, left : left + 84]) > 10  # "pred k 0.xx" under the image
    red = (picture[..., 0] > 150) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    correct = [p["predicted"] == p["label"] for p in json.loads(files["predictions"].read_text())["predictions"]]
    assert red.any() == (not all(correct))  # mistakes in red, with their true class


def test_toy_data_stays_visible_under_many_samples(tmp_path):
    data = torch.tensor([[0.0, 0.0], [2.0, 2.0], [-2.0, 2.0]]).repeat(50, 1)
    samples = data.repeat(50, 1) + 0.01 * torch.randn(7500, 2, generator=torch.Generator().manual_seed(0))
    scatter_plot(samples, data, tmp_path / "prior.png", "title")
    picture = _pixels(tmp_path / "prior.png")
    assert (picture.max(-1) < 60).sum() > 20  # the data's dark dots are drawn over the orange samples


def test_sample_directories_name_the_mode(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / "outputs")
    assert _mode_prefix("sample", "interpolate", None, None, None, root) == "interpolate_"
    assert _mode_prefix("sample", None, str(FORMAT1 / "classifier.ckpt"), None, None, root) == "predict_"
    assert _mode_prefix("sample", None, str(FORMAT1 / "gpt.ckpt"), None, None, root) == "prior_"
    assert _mode_prefix("sample", "../x", None, None, None, root) == "-x_"  # never a path
    assert _mode_prefix("evaluate", None, str(FORMAT1 / "vae.ckpt"), None, None, root) == ""
    assert _mode_prefix("sample", None, str(tmp_path / "missing.ckpt"), None, None, root) == ""
    for extra in ([], ["mode=arithmetic"]):
        code, _out, err = genrun_in_process(["sample", f"ckpt={FORMAT1 / 'dcgan.ckpt'}", "num_samples=9", *extra],
                                            tmp_path, monkeypatch, capsys)
        assert code == 0, err
    runs = {run.name.split("_")[0]: run for run in (tmp_path / "outputs" / "sample").glob("*/*")}
    assert set(runs) == {"prior", "arithmetic"}
    assert (runs["prior"] / "prior.png").is_file() and (runs["arithmetic"] / "arithmetic.png").is_file()
    assert (runs["prior"] / "samples.npy").is_file() and not list(tmp_path.rglob("samples.png"))


def test_a_run_placed_anywhere_is_titled_by_its_recorded_model(tmp_path):
    """Titles name the run's model and dataset from its run.json, not from a folder a user chose with
    hydra.run.dir (a folder named `.runs` once titled a DDPM's class rows)."""
    from genrun.runs import write_run_file

    run = tmp_path / "anywhere" / "my_sampling"
    write_run_file(run, "ddpm", "mnist", "sample")
    title, subtitle = figures.headline(run, "prior", "64 samples", guidance=2.0)
    assert title == "ddpm_mnist · mode=prior: 64 samples"
    assert subtitle == "run my_sampling · guidance=2"
    plain = tmp_path / "outputs" / "sample" / "vae_mnist" / "2026-12-01_10-00-00"
    assert figures.headline(plain, None, "x")[0] == "vae_mnist: x"  # no run.json: the folder's name
