"""Gated PixelCNN: causality without a blind spot, exact likelihood, the raster sampler, the CLI, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import MINI, genrun_in_process, run_dirs
from genrun.errors import GenrunError
from genrun.families.base import SampleContext, SampleRequest
from genrun.families.pixelcnn import PixelCNNKnobs, PixelCNNPipeline, to_levels
from genrun.models.pixelcnn import PixelCNNModule
from genrun.nets.pixelcnn import GatedPixelCNN
from genrun.sampling.raster import sample

TINY = ["model.width=8", "model.layers=2", "model.kernel=3", "model.embed_dim=4"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets: a second CPU thread only spins (and on a busy machine costs many times the work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dependence(net: GatedPixelCNN, shape, output) -> torch.Tensor:
    """C×H×W: which input positions and channels `output(net, grid)` (a scalar) depends on, by gradient through
    the input embedding, summed over a batch of random grids (a single one can hide a path behind a dead ReLU)."""
    captured = {}

    def keep(_module, _inputs, out):
        out.retain_grad()
        captured["embedded"] = out  # N×C×H×W×E

    handle = net.embedding.register_forward_hook(keep)
    try:
        grid = torch.randint(net.levels, (16, *shape), generator=torch.Generator().manual_seed(0))
        output(net, grid).backward()
    finally:
        handle.remove()
    return captured["embedded"].grad.abs().sum((0, 4)) > 0


def _before(shape, c: int, i: int, j: int, vertical_only: bool = False) -> torch.Tensor:
    """What position (c, i, j) may see: all channels of earlier rows and columns, earlier channels of itself."""
    allowed = torch.zeros(shape, dtype=torch.bool)
    allowed[:, :i] = True
    if not vertical_only:
        allowed[:, i, :j] = True
        allowed[:c, i, j] = True
    return allowed


def test_each_output_sees_exactly_the_positions_before_it_over_both_stacks_and_all_channels():
    torch.manual_seed(0)
    # Five 3x3 layers reach five rows up and five columns either side: the whole 5x6 grid, so every earlier
    # position must be seen (no blind spot) and no later one (causality).
    net = GatedPixelCNN(channels=3, levels=4, width=12, layers=5, kernel=3, embed_dim=3)
    shape = (3, 5, 6)
    for c, i, j in [(0, 2, 2), (1, 3, 0), (2, 4, 5), (0, 0, 0), (2, 1, 3)]:
        seen = _dependence(net, shape, lambda n, g, c=c, i=i, j=j: n(g)[:, :, c, i, j].sum())
        expected = _before(shape, c, i, j)
        assert not (seen & ~expected).any(), f"({c},{i},{j}) depends on {(seen & ~expected).nonzero().tolist()}"
        assert not (expected & ~seen).any(), f"({c},{i},{j}) misses {(expected & ~seen).nonzero().tolist()}"
    # The classic blind spot of a masked 3x3 stack: up and to the right of the pixel, beyond the first ring.
    seen = _dependence(net, shape, lambda n, g: n(g)[:, :, 0, 3, 1].sum())
    assert seen[:, 1, 4].all() and seen[:, 2, 5].all() and seen[:, 0, 5].all()


def test_the_vertical_stack_sees_only_rows_above():
    torch.manual_seed(0)
    net = GatedPixelCNN(channels=3, levels=4, width=12, layers=4, kernel=3, embed_dim=3)
    shape, found = (3, 5, 6), {}
    hook = net.layers[-1].v_conv.register_forward_hook(lambda _m, _i, out: found.update(v=out))
    try:
        seen = _dependence(net, shape, lambda n, g: (n(g), found["v"][:, :, 3, 2].sum())[1])
    finally:
        hook.remove()
    expected = _before(shape, 0, 3, 2, vertical_only=True)
    assert torch.equal(seen, expected), seen.int()


def test_the_incremental_state_gives_the_full_pass_logits():
    torch.manual_seed(0)
    net = GatedPixelCNN(channels=3, levels=5, width=9, layers=3, kernel=5, embed_dim=2, num_classes=3).eval()
    grid, labels = torch.randint(5, (2, 3, 4, 6)), torch.tensor([2, 0])
    full = net(grid, labels)
    state = net.raster_state(grid, labels)
    for i in range(4):
        state.begin_row(i)
        for j in range(6):
            assert torch.allclose(state.logits_at(i, j), full[:, :, :, i, j], atol=1e-5), (i, j)


def test_a_uniform_model_costs_8_bits_per_dim():
    net = GatedPixelCNN(channels=1, levels=256, width=8, layers=2, kernel=3)
    with torch.no_grad():  # every logit 0: each of the 256 grey levels has probability 1/256
        net.head2.weight.zero_()
        net.head2.bias.zero_()
    pipeline = PixelCNNPipeline({"net": net}, {"image_size": 6})
    images = torch.rand(5, 1, 6, 6)
    metrics = pipeline.likelihood((images, torch.zeros(5)), batch_size=2)
    assert metrics["test/bits_per_dim"] == pytest.approx(8.0, abs=1e-6)
    assert metrics["test/nll"] == pytest.approx(36 * math.log(256), rel=1e-6)


def test_cached_and_naive_sampling_draw_the_same_and_temperature_zero_takes_the_arg_max():
    torch.manual_seed(0)
    net = GatedPixelCNN(channels=3, levels=4, width=9, layers=3, kernel=3, embed_dim=2, num_classes=2).eval()
    shape, labels = (5, 3, 4, 5), torch.tensor([0, 1, 1, 0, 1])
    fast = sample(net, shape, 1.0, torch.Generator().manual_seed(7), labels, batch_size=2)
    naive = sample(net, shape, 1.0, torch.Generator().manual_seed(7), labels, batch_size=2, method="naive")
    assert torch.equal(fast, naive)
    assert not torch.equal(fast, sample(net, shape, 1.0, torch.Generator().manual_seed(8), labels, batch_size=2))
    greedy = [sample(net, shape, 0.0, torch.Generator().manual_seed(s), labels) for s in (1, 2)]
    assert torch.equal(greedy[0], greedy[1])
    # Each value is the arg max of the net's logits at its position given the finished grid (causal: later
    # values do not change them).
    with torch.no_grad():
        assert torch.equal(net(greedy[0], labels).argmax(1), greedy[0])
    # Completion: the given rows are kept, and both samplers agree there too.
    start, known = torch.randint(4, shape), torch.zeros(1, 1, 4, 5, dtype=torch.bool)
    known[..., :2, :] = True
    completed = [sample(net, shape, 1.0, torch.Generator().manual_seed(3), labels, known, start, method=m)
                 for m in ("cached", "naive")]
    assert torch.equal(completed[0], completed[1]) and torch.equal(completed[0][:, :, :2], start[:, :, :2])


def test_binarizing_draws_afresh_in_training_and_the_same_for_evaluation():
    module = PixelCNNModule(lambda levels: GatedPixelCNN(1, levels, width=4, layers=1, kernel=3),
                            optimizer=torch.optim.Adam, image_size=8, binarize=True)
    assert module.net.levels == 2
    images = torch.full((4, 1, 8, 8), 0.5)
    first, second = module._grid(images), module._grid(images)
    assert set(first.unique().tolist()) == {0, 1} and not torch.equal(first, second)
    pipeline = module.pipeline()
    assert torch.equal(pipeline.test_grids(images), pipeline.test_grids(images))
    assert torch.equal(to_levels(torch.tensor([0.0, 0.5, 1.0]), 256, False), torch.tensor([0, 128, 255]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 8-bit PixelCNN trained a few steps on the bundled digits through the real CLI."""
    root = tmp_path_factory.mktemp("pixelcnn")
    (root / "data").mkdir()
    monkeypatch = pytest.MonkeyPatch()
    capsys = _Capture()
    code, _out, err = genrun_in_process(
        ["train", "model=pixelcnn", MINI, "threads=1", *TINY, "model.lr=1e-2", "model.num_log_images=2",
         "dataset.batch_size=32", "trainer.max_steps=25", "trainer.limit_val_batches=2", "trainer.limit_test_batches=1",
         "trainer.val_check_interval=25", "num_samples=2"], root, monkeypatch, capsys)
    monkeypatch.undo()
    assert code == 0, err
    (run,) = run_dirs(root)
    return root, run


class _Capture:
    """capsys for a module-scoped fixture: the CLI prints to the real streams, which pytest captures anyway."""

    def readouterr(self):
        return "", ""


def test_training_through_the_cli_lowers_the_likelihood_below_uniform(trained):
    _root, run = trained
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    # A uniform model costs 8 bits/dim; a few steps learn the mostly black digits.
    assert metrics["val/bits_per_dim"] < 6.0, metrics
    assert metrics["val/nll"] == pytest.approx(metrics["val/bits_per_dim"] * 784 * math.log(2), rel=1e-4)


def test_sample_and_evaluate_from_the_checkpoint(trained, monkeypatch, capsys):
    root, run = trained
    code, _out, err = genrun_in_process(["sample", f"ckpt={run}", "num_samples=3", "temperature=0.9"], root,
                                        monkeypatch, capsys)
    assert code == 0, err
    code, _out, err = genrun_in_process(["sample", f"ckpt={run}", "mode=complete", "num_samples=4", "nrow=2"], root,
                                        monkeypatch, capsys)
    assert code == 0, err
    prior, complete = (next((root / "outputs" / "sample").glob(f"*/{mode}_*/samples.npy")) for mode in
                       ("prior", "complete"))
    drawn = np.load(prior)
    assert drawn.shape == (3, 1, 28, 28) and np.allclose(drawn * 255, np.round(drawn * 255), atol=1e-4)
    completions = torch.from_numpy(np.load(complete))
    assert completions.shape == (4, 1, 28, 28)
    # Two test images, two completions of each: the given top halves are the test images' own.
    from genrun.data.mnist import MNISTDataModule

    data = MNISTDataModule(str(root / "data"), source="mini")
    data.setup()
    test = to_levels(data.splits["test"][0], 256, False)
    tops = to_levels(completions, 256, False)[:, :, :14]
    for k in range(4):
        assert (test[:, :, :14] == tops[k]).flatten(1).all(1).any(), k
    assert torch.equal(tops[0], tops[2]) and torch.equal(tops[1], tops[3])
    code, _out, err = genrun_in_process(["evaluate", f"ckpt={run}", "image_metrics=false"], root, monkeypatch, capsys)
    assert code == 0, err
    [evaluation] = run_dirs(root, "evaluate")
    metrics = json.loads((evaluation / "metrics.json").read_text())["metrics"]
    nll = metrics.get("test/nll", metrics.get("val/nll"))  # the bundled digits: test is the validation split
    bits = metrics.get("test/bits_per_dim", metrics.get("val/bits_per_dim"))
    assert 0 < bits < 6.0 and nll == pytest.approx(bits * 784 * math.log(2), rel=1e-6)


def test_label_on_an_unconditional_model_is_one_line(trained, monkeypatch, capsys):
    root, run = trained
    code, _out, err = genrun_in_process(["sample", f"ckpt={run}", "label=3"], root, monkeypatch, capsys)
    assert code != 0
    assert "label=3: this model is not class-conditional" in err and "Traceback" not in err


def _rgb_folder(path):
    from PIL import Image

    path.mkdir()
    for k in range(6):
        Image.new("RGB", (8, 8), (40 * k, 10, 200)).save(path / f"{k}.png")
    return path


def test_an_rgb_folder_for_a_grey_model_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    folder = _rgb_folder(tmp_path / "rgb")
    code, _out, err = genrun_in_process(
        ["train", "model=pixelcnn", "dataset=image_folder", f"dataset.path={folder}", "dataset.image_size=8",
         "model.channels=1", *TINY, "trainer.max_steps=2"], tmp_path, monkeypatch, capsys)
    assert code != 0 and "Traceback" not in err
    assert "dataset.channels=3: the training data holds RGB images and this PixelCNN models grey ones " \
           "(model.channels=1)" in err
    # The same at sampling time: completing RGB test images with a grey model.
    from genrun.data.image_folder import ImageFolderDataModule

    data = ImageFolderDataModule(str(folder), image_size=8, channels=3)
    data.setup()
    pipeline = PixelCNNPipeline({"net": GatedPixelCNN(1, 256, width=4, layers=1, kernel=3)}, {"image_size": 8})
    context = SampleContext(out_dir=tmp_path / "out", device=torch.device("cpu"), data_info={},
                            load_split=data.splits.__getitem__)
    with pytest.raises(GenrunError, match=r"^dataset.channels=3: the test split holds RGB images"):
        pipeline.sample(SampleRequest.of(PixelCNNKnobs, mode="complete", num_samples=2), context)
