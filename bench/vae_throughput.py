"""`genrun train model=vae` against a plain PyTorch loop of the same MLP VAE: training images/s.

Same data (the 5,000 bundled digits, all used for training), batch 128, CPU, every epoch but the first
timed on both sides. Three sides run in turn, ROUNDS times, so all see the same machine load; the ratio
of medians is the figure:
  genrun        `genrun train experiment=vae_mnist ...` as shipped (it picks torch's fused Adam on CPU)
  plain         pytorch/examples' loop with its default Adam: the reference the target is stated against
  plain fused   the same loop with fused Adam and genrun's malloc setting: like for like, what the runner
                itself costs
Run: .venv/bin/python bench/vae_throughput.py [EPOCHS] [ROUNDS] [THREADS]
THREADS (default: torch's own choice) sets `threads=` for genrun and OMP_NUM_THREADS for the plain loops;
with THREADS the result goes to vae_throughput_THREADSthread.md (pin the process, e.g. `taskset -c 0`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys

from common import BENCH, RUNS, genrun, machine, write_result

GENRUN_ARGS = ["train", "experiment=vae_mnist", "dataset.source=mini", "dataset.val_fraction=0", "test=false",
               "trainer.accelerator=cpu", "num_samples=16"]


def plain(epochs: int, *flags: str, threads: int | None = None) -> float:
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run([sys.executable, str(BENCH / "plain_vae.py"), str(epochs), *flags], check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(out)["images_per_sec"]


def main(epochs: int = 10, rounds: int = 5, threads: int | None = None) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ours, reference, fused = [], [], []
    for i in range(rounds):
        run_dir = RUNS / f"vae_throughput_{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        thread_args = [f"threads={threads}"] if threads else []
        metrics = genrun([*GENRUN_ARGS, f"trainer.max_epochs={epochs}", *thread_args], run_dir)["metrics"]
        ours.append(metrics["perf/train_images_per_sec"])
        reference.append(plain(epochs, threads=threads))
        fused.append(plain(epochs, "--fused", "--keep-freed-memory", threads=threads))
    med = {name: statistics.median(v) for name, v in (("genrun", ours), ("plain", reference), ("fused", fused))}
    name, thread_arg = (f"vae_throughput_{threads}thread", f" {threads}") if threads else ("vae_throughput", "")
    affinity = sorted(os.sched_getaffinity(0))
    write_result(name, f"""# VAE training throughput: genrun vs a plain PyTorch loop

Command: `.venv/bin/python bench/vae_throughput.py {epochs} {rounds}{thread_arg}` ({epochs} epochs of 40 batches
of 128; the first epoch of each run is not timed; torch threads: {threads or "default"}; CPUs allowed: {affinity})
Machine: `{json.dumps(machine())}`, load average before the run: {load}

| round | genrun (images/s) | plain loop, default Adam | plain loop, fused Adam |
|---|---|---|---|
""" + "".join(f"| {i} | {a:.0f} | {b:.0f} | {c:.0f} |\n" for i, (a, b, c) in enumerate(zip(ours, reference, fused,
                                                                                            strict=True))) + f"""
Medians: genrun {med['genrun']:.0f}, plain {med['plain']:.0f}, plain with fused Adam {med['fused']:.0f} images/s.

- **genrun / plain loop: {med['genrun'] / med['plain']:.3f}** (target ≥ 0.95; the reference loop as
  pytorch/examples writes it). Median of the per-round ratios, which pairs runs made under the same
  machine conditions: {statistics.median(a / b for a, b in zip(ours, reference, strict=True)):.3f}.
- genrun / plain loop with the same fused Adam: {med['genrun'] / med['fused']:.3f} (like for like: what
  Lightning and genrun's callbacks, logging and data loader cost per step); median of the per-round ratios:
  {statistics.median(a / c for a, c in zip(ours, fused, strict=True)):.3f}.
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
