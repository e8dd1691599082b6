"""The reference: pytorch/examples' MLP VAE (784-400-20, Bernoulli, Adam 1e-3) as a plain PyTorch loop.

Written here from the paper's recipe, not copied.
Run: python bench/plain_vae.py EPOCHS [DATA_DIR] [--fused] [--keep-freed-memory]
Prints one JSON line: training images/s (training batches only) and the test negative ELBO. `--fused` uses
torch's fused Adam kernel (what genrun picks on CPU) instead of pytorch/examples' default Adam;
`--keep-freed-memory` makes the malloc setting every genrun command makes (genrun/allocator.py).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F


class PlainVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def loss_sum(logits, x, mu, logvar):
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def main(epochs: int, data_dir: str | None, fused: bool = False) -> dict:
    from genrun.data.mnist import bundled_digits, local_test_files

    torch.manual_seed(1)
    images, _ = bundled_digits()
    x = images.float().div(255).view(-1, 784)
    model = PlainVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if fused else None)
    generator = torch.Generator().manual_seed(0)
    train_time, seen = 0.0, 0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(x), generator=generator).split(128):
            batch = x[idx]
            opt.zero_grad()
            loss = loss_sum_batch(model, batch)
            (loss / len(batch)).backward()
            opt.step()
            seen += len(batch) if epoch > 0 or epochs == 1 else 0
        if epoch > 0 or epochs == 1:  # the first epoch pays warm-up costs; genrun's figure skips it too
            train_time += time.perf_counter() - start
    result = {"images_per_sec": seen / train_time, "epochs": epochs, "train_seconds": train_time}
    test = local_test_files(__import__("pathlib").Path(data_dir), "MNIST") if data_dir else None
    if test is not None:
        xt = test[0].float().div(255).view(-1, 784)
        model.eval()
        with torch.no_grad():
            total = sum(loss_sum_batch(model, xt[i : i + 1000]).item() for i in range(0, len(xt), 1000))
        result["test_neg_elbo"] = total / len(xt)
    return result


def epoch_milliseconds(x: torch.Tensor, epochs: int = 6, between=None) -> float:
    """The median time of an epoch after the first, in ms, of this loop with fused Adam (lr 2e-3, as
    experiment=vae_mnist) over flat images `x`; `between()` runs after backward and after each optimiser step."""
    torch.manual_seed(1)
    model = PlainVAE()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for idx in torch.randperm(len(x), generator=generator).split(128):
            batch = x[idx]
            opt.zero_grad()
            (loss_sum_batch(model, batch) / len(batch)).backward()
            if between is not None:
                between()
            opt.step()
            if between is not None:
                between()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:]) * 1000


def loss_sum_batch(model, batch):
    logits, mu, logvar = model(batch)
    return loss_sum(logits, batch, mu, logvar)


if __name__ == "__main__":
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--keep-freed-memory" in sys.argv:
        from genrun.allocator import keep_freed_memory

        keep_freed_memory()
    print(json.dumps(main(int(positional[0]), positional[1] if len(positional) > 1 else None,
                          fused="--fused" in sys.argv)))
