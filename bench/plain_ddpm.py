"""The reference for DDPM training throughput: a plain PyTorch loop around the same U-Net genrun trains
(`genrun.families.diffusion.UNet` with configs/model/ddpm.yaml's sizes), Ho et al.'s simple loss on the
linear 1000-step schedule, Adam 2e-4 and an EMA of the weights after every step, as DDPM is trained.

Run: python bench/plain_ddpm.py EPOCHS [--fused] [--keep-freed-memory]. Prints one JSON line: training images/s
over the epochs after the first (which pays warm-up costs; genrun's figure skips it too).
"""

from __future__ import annotations

import copy
import json
import sys
import time

import torch
import torch.nn.functional as F


def main(epochs: int, fused: bool = False) -> dict:
    from genrun.data.mnist import bundled_digits
    from genrun.families.diffusion import UNet

    torch.manual_seed(1)
    images, _ = bundled_digits()
    x = images.float().div(255).unsqueeze(1) * 2 - 1
    net = UNet(1, 28, base_width=32, channel_mults=[1, 2, 2], blocks_per_level=1, attention_levels=[2],
               dropout=0.1)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, fused=True if fused else None)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()
    generator = torch.Generator().manual_seed(0)
    train_time, seen = 0.0, 0
    for epoch in range(epochs):
        start = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(x), generator=generator).split(128):
            x0 = x[idx]
            t = torch.randint(1000, (len(x0),))
            noise = torch.randn_like(x0)
            a = alpha_bar[t].view(-1, 1, 1, 1)
            loss = F.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 0.001)
            seen += len(x0) if epoch > 0 or epochs == 1 else 0
        if epoch > 0 or epochs == 1:
            train_time += time.perf_counter() - start
    return {"images_per_sec": seen / train_time, "epochs": epochs, "train_seconds": train_time}


if __name__ == "__main__":
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--keep-freed-memory" in sys.argv:  # the malloc setting the genrun command makes (genrun/allocator.py)
        from genrun.allocator import keep_freed_memory

        keep_freed_memory()
    print(json.dumps(main(int(positional[0]), fused="--fused" in sys.argv)))
