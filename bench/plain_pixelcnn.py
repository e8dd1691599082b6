"""The reference for PixelCNN training throughput: a plain PyTorch loop around the same gated PixelCNN genrun
trains (`genrun.nets.pixelcnn.GatedPixelCNN` with configs/model/pixelcnn.yaml's sizes), 256 grey levels,
the mean cross-entropy, Adam 1e-3, batch 64 over the 5,000 bundled digits.

Run: python bench/plain_pixelcnn.py EPOCHS BATCHES [--fused]. Each epoch is BATCHES batches of a fresh
shuffle. Prints one JSON line: training images/s over the epochs after the first (which pays warm-up costs;
genrun's figure skips it too).
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

BATCH = 64


def main(epochs: int, batches: int, fused: bool = False) -> dict:
    from genrun.configs import config_dir
    from genrun.data.mnist import bundled_digits
    from genrun.nets.pixelcnn import GatedPixelCNN

    cfg = OmegaConf.load(config_dir() / "model" / "pixelcnn.yaml")
    torch.manual_seed(1)
    images, _ = bundled_digits()
    x = images.long().unsqueeze(1)  # the 8-bit grey levels themselves
    net = GatedPixelCNN(1, 256, width=int(cfg.width), layers=int(cfg.layers), kernel=int(cfg.kernel),
                        embed_dim=int(cfg.embed_dim))
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg.lr), fused=True if fused else None)
    generator = torch.Generator().manual_seed(0)
    train_time, seen = 0.0, 0
    for epoch in range(epochs):
        start = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(x), generator=generator).split(BATCH)[:batches]:
            grid = x[idx]
            loss = F.cross_entropy(net(grid), grid)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(grid) if epoch > 0 or epochs == 1 else 0
        if epoch > 0 or epochs == 1:
            train_time += time.perf_counter() - start
    return {"images_per_sec": seen / train_time, "epochs": epochs, "train_seconds": train_time}


if __name__ == "__main__":
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(json.dumps(main(int(positional[0]), int(positional[1]), fused="--fused" in sys.argv)))
