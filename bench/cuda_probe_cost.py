"""What Lightning's NVML-based CUDA check costs a CPU training step on a machine with no GPU.

Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1; torch's Adam then asks for CUDA on every step, and
with no GPU each question tries (and fails) to load libnvidia-ml (genrun/cuda_probe.py). Two sides alternate
in one process, ROUNDS times, each the plain fused-Adam VAE loop of bench/plain_vae.py over the 5,000 bundled
digits (6 epochs of 40 batches of 128, the first not timed):
  check on      as in any process that imported Lightning (what genrun's runs paid before cuda_probe)
  check lifted  what `genrun.cuda_probe.cheap_cuda_probe` gives a run on such a machine
Run: OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/cuda_probe_cost.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys

import lightning  # noqa: F401  (sets the check, as in every genrun training process)
import torch

from common import machine, write_result
from genrun.cuda_probe import NVML_CHECK, probe_is_wasted
from plain_vae import epoch_milliseconds

STEPS = 40


def main(rounds: int = 10) -> None:
    from genrun.data.mnist import bundled_digits

    if not probe_is_wasted():
        print("cuda_probe_cost: the check costs nothing here (no CUDA build of torch, or a GPU); nothing to measure")
        return
    images, _ = bundled_digits()
    x = images.float().div(255).view(-1, 784)[:5000]
    on, lifted = [], []
    for _ in range(rounds):
        os.environ[NVML_CHECK] = "1"
        on.append(epoch_milliseconds(x))
        del os.environ[NVML_CHECK]
        lifted.append(epoch_milliseconds(x))
    os.environ[NVML_CHECK] = "1"
    paired = statistics.median(a - b for a, b in zip(on, lifted, strict=True)) / STEPS * 1000
    rows = "".join(f"| {i} | {a:.0f} | {b:.0f} |\n" for i, (a, b) in enumerate(zip(on, lifted, strict=True)))
    threads = torch.get_num_threads()
    write_result(f"cuda_probe_cost_{threads}thread", f"""# Lightning's NVML-based CUDA check on a CPU training step

Command: `OMP_NUM_THREADS={threads} taskset -c 1 .venv/bin/python bench/cuda_probe_cost.py {rounds}` (the plain
fused-Adam VAE loop, 6 epochs of {STEPS} batches of 128 a side, the first not timed; sides alternate in one
process)
Machine: `{json.dumps(machine())}`

| round | ms an epoch, check on | ms an epoch, check lifted |
|---|---|---|
{rows}
Medians: {statistics.median(on):.0f} ms with the check, {statistics.median(lifted):.0f} ms lifted:
**{paired:.0f} µs a step** (paired median), {statistics.median(a / b for a, b in zip(on, lifted, strict=True)):.3f}x
the lifted epoch time.
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
