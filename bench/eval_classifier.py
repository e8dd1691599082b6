"""Benchmark: the domain classifier's recipe trained on the 4,500 bundled training digits (source=mini,
the offline default), tested on the real MNIST test set (10,000 images) and on the validation split.

    .venv/bin/python bench/eval_classifier.py [--epochs 15] [--mnist-test /work/shared/data/mnist_t10k]
"""

from __future__ import annotations

import argparse
import gzip
import platform
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from genrun.data.mnist import MNISTDataModule
from genrun.evaluation.domain_classifier import RECIPE, accuracy, train_recipe


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = Path("/proc/loadavg").read_text().split()[:3]
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return (f"{datetime.now():%Y-%m-%d %H:%M}, nproc {nproc}, {cpu}, torch {torch.__version__}, "
            f"torch threads {torch.get_num_threads()}, load average {' '.join(load)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--mnist-test", default="/work/shared/data/mnist_t10k")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as data_dir:
        data = MNISTDataModule(data_dir=data_dir, source="mini")
        data.setup()
    (x, y), (xv, yv) = data.splits["train"], data.splits["val"]
    root = Path(args.mnist_test)
    xt = torch.from_numpy(read_idx(root / "t10k-images-idx3-ubyte.gz").copy()).float().div(255).unsqueeze(1)
    yt = torch.from_numpy(read_idx(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    info = {"channels": 1, "image_size": 28, "num_classes": 10}
    started = time.perf_counter()
    net = train_recipe(x, y, info, {**RECIPE, "epochs": args.epochs}).net
    seconds = time.perf_counter() - started
    print(f"train {len(x)} images, {args.epochs} epochs: {seconds:.1f} s wall")
    print(f"validation split accuracy ({len(xv)} images): {accuracy(net, xv, yv):.4f}")
    print(f"MNIST test set accuracy ({len(xt)} images): {accuracy(net, xt, yt):.4f}")


if __name__ == "__main__":
    main()
