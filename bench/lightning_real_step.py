"""Lightning's loop over genrun's real VAE module against the plain loop of the same net, in one process.

Three sides alternate, each 6 epochs over the 5,000 bundled digits (batch 128, fused Adam, the first epoch
not timed); all in-process, so start-up and genrun's callbacks, logger and checkpoints are left out:
  plain          bench/plain_vae.py's loop
  lightning      a bare `Trainer` (no callbacks, logger, checkpoints or progress bar; genrun's NoProfiler)
                 over `model=vae`'s AutoencoderModule as `experiment=vae_mnist` composes it
  lightning, manual optimisation   the same module stepping its optimiser itself
All sides run with Lightning's NVML-based CUDA check lifted, as genrun's runs train on a machine with no GPU
(genrun/cuda_probe.py; before, the plain side here paid it too, from Lightning's import).
Set beside bench/results/lightning_step_overhead_1thread.md (the same loop over a model that costs
nothing) it shows how much of Lightning's cost grows with the model (bench/cache_pollution.py says why).
Run: OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/lightning_real_step.py [ROUNDS]
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import warnings

import lightning as L
import torch

from common import ManualOptimisation, machine, write_result
from genrun.cuda_probe import cheap_cuda_probe
from loop_timing import EpochTimer
from plain_vae import epoch_milliseconds

EPOCHS = 6


def plain_ms(x: torch.Tensor) -> float:
    with cheap_cuda_probe():
        return epoch_milliseconds(x, EPOCHS)


def lightning_ms(cfg, data, manual: bool) -> float:
    from genrun.callbacks.lean import NoProfiler
    from genrun.data.lightning import LightningData
    from genrun.models.autoencoder import AutoencoderModule
    from genrun.tasks.building import build

    class ManualVAE(ManualOptimisation, AutoencoderModule):
        pass

    torch.manual_seed(1)
    module = build(cfg.model.module, "model.module")
    if manual:
        module = ManualVAE(module.net, module.optimizer_factory)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator="cpu", max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                        profiler=NoProfiler(), num_sanity_val_steps=0, limit_val_batches=0)
    with cheap_cuda_probe():
        trainer.fit(module, datamodule=LightningData(data))
    return statistics.median(timer.seconds[1:]) * 1000


def main(rounds: int = 8) -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    from genrun.overrides import compose_task
    from genrun.tasks.building import build

    cfg = compose_task("train", ["experiment=vae_mnist", "dataset.source=mini", "dataset.val_fraction=0",
                                 "trainer.accelerator=cpu"])
    data = build(cfg.dataset, "dataset")
    data.setup()
    x = data.splits["train"][0].reshape(-1, 784)
    steps = -(-len(x) // 128)
    sides = {"plain loop": lambda: plain_ms(x),
             "Lightning, genrun's VAE module": lambda: lightning_ms(cfg, data, False),
             "Lightning, manual optimisation": lambda: lightning_ms(cfg, data, True)}
    results = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            results[name].append(run())
    plain = results["plain loop"]
    rows = "".join(
        f"| {name} | {statistics.median(v):.0f} | "
        f"{statistics.median(a - b for a, b in zip(v, plain, strict=True)) / steps * 1000:+.0f} | "
        f"{', '.join(f'{t:.0f}' for t in v)} |\n" for name, v in results.items())
    write_result("lightning_real_step", f"""# Lightning's loop over the real VAE module against the plain loop

Command: `OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/lightning_real_step.py {rounds}` ({EPOCHS} epochs of
{steps} batches of 128 a side, the first not timed; sides alternate, {rounds} rounds; in one process)
Machine: `{json.dumps(machine())}`

| side | ms an epoch (median) | µs a step over the plain loop (paired median) | rounds |
|---|---|---|---|
{rows}""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
