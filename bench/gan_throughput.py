"""DCGAN training throughput: genrun (Lightning, manual optimisation, its default logger and progress bar)
against a plain PyTorch loop doing the same work, side by side in one process.

Same networks (built from the same composed config), same data tensors, batch size, optimisers and
per-batch work: a discriminator step, a generator step, the EMA update. Rounds alternate between the two so
that a load change on a shared machine hits both; each round times one epoch after a warm-up epoch.
Validation and checkpointing are off on both sides: this measures training.

Usage: .venv/bin/python bench/gan_throughput.py [--rounds 3] [--batches 20] [overrides...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.nn import functional as F

from gan_ring8 import machine


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from genrun import resolvers
    from genrun.configs import config_dir

    resolvers.register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def build(cfg):
    from hydra.utils import instantiate

    from genrun.tasks.train import fill_from_data

    data = instantiate(cfg.dataset)
    fill_from_data(cfg, data.info())
    return data, instantiate(cfg.model.module)


class EpochTimer:
    """Lightning callback: wall time and item count of the last training epoch."""

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class _Timer(Callback):
            def on_train_epoch_start(self, trainer, module):
                self.start, self.items = time.perf_counter(), 0

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                self.items += len(batch[0])

            def on_train_epoch_end(self, trainer, module):
                self.seconds = time.perf_counter() - self.start

        return _Timer()


def genrun_epoch(cfg, batches: int, workdir: str) -> float:
    """Images/s of genrun's second epoch (the first warms up)."""
    import lightning as L
    from hydra.utils import instantiate

    from genrun.data.lightning import LightningData

    data, module = build(cfg)
    timer = EpochTimer()
    callbacks = [instantiate(c) for name, c in cfg.callbacks.items() if name != "model_checkpoint"]
    logger = instantiate(cfg.logger.tensorboard, save_dir=workdir)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=batches, limit_val_batches=0,
                        enable_checkpointing=False, callbacks=[*callbacks, timer], logger=logger,
                        enable_model_summary=False, log_every_n_steps=10)
    trainer.fit(module, datamodule=LightningData(data))
    return timer.items / timer.seconds


def plain_epoch(cfg, batches: int) -> float:
    """Images/s of a hand-written loop with the same nets, optimisers, data, loss and EMA (second epoch)."""
    data, module = build(cfg)
    g, d, ema = module.generator, module.discriminator, module.ema_generator
    g_opt = module.g_optimizer_factory(params=g.parameters())
    d_opt = module.d_optimizer_factory(params=d.parameters())
    x_all = data.splits["train"][0]
    bs, latent = data.batch_size, g.latent_dim
    steps = 0
    seconds = items = 0.0
    for epoch in range(2):
        start = time.perf_counter()
        order = torch.randperm(len(x_all))
        for b in range(batches):
            real = x_all[order[b * bs : (b + 1) * bs]] * 2 - 1
            with torch.no_grad():
                fake = g(torch.randn(len(real), latent))
            d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            g_loss = F.softplus(-d(g(torch.randn(len(real), latent)))).mean()
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            steps += 1
            with torch.no_grad():
                decay = min(0.999, (1 + steps) / (10 + steps))
                for e, p in zip(ema.parameters(), g.parameters(), strict=True):
                    e.lerp_(p, 1 - decay)
                for e, p in zip(ema.buffers(), g.buffers(), strict=True):
                    e.copy_(p)
            items += len(real) if epoch == 1 else 0
        if epoch == 1:
            seconds = time.perf_counter() - start
    return items / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("overrides", nargs="*")
    options = parser.parse_args()
    from genrun.runs import quiet_library_logs

    quiet_library_logs()
    overrides = ["model=dcgan", "dataset=mnist", "dataset.source=mini", *options.overrides]
    cfg = compose(overrides)
    print(machine())
    print(f"config: {' '.join(overrides)}; batch {cfg.dataset.batch_size}; {options.batches} batches per timed "
          f"epoch; torch threads {torch.get_num_threads()}")
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(options.rounds):
            torch.manual_seed(r)
            plain.append(plain_epoch(cfg, options.batches))
            torch.manual_seed(r)
            ours.append(genrun_epoch(cfg, options.batches, workdir))
            print(f"round {r}: plain {plain[-1]:.1f} img/s, genrun {ours[-1]:.1f} img/s, "
                  f"ratio {ours[-1] / plain[-1]:.3f}", flush=True)
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"median: plain {statistics.median(plain):.1f} img/s, genrun {statistics.median(ours):.1f} img/s, "
          f"ratio {ratio:.3f} ({'PASS' if ratio >= 0.95 else 'FAIL'}: target >= 0.95)")


if __name__ == "__main__":
    main()
