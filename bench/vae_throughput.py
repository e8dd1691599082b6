"""`genrun train model=vae` against a plain PyTorch loop of the same MLP VAE: training images/s.

Same data (the 5,000 bundled digits, all used for training), batch 128, Adam 1e-3, CPU. The two run
alternately, ROUNDS times, so both see the same machine load; the ratio of medians is the figure.
Run: .venv/bin/python bench/vae_throughput.py [EPOCHS] [ROUNDS]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys

from common import BENCH, RUNS, genrun, machine, write_result

GENRUN_ARGS = ["train", "experiment=vae_mnist", "dataset.source=mini", "dataset.val_fraction=0", "test=false",
               "trainer.accelerator=cpu", "num_samples=16"]


def main(epochs: int = 10, rounds: int = 3) -> None:
    ours, plain = [], []
    for i in range(rounds):
        run_dir = RUNS / f"vae_throughput_{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics = genrun([*GENRUN_ARGS, f"trainer.max_epochs={epochs}"], run_dir)["metrics"]
        # both sides: images/s over every epoch but the first (one-off warm-up costs)
        ours.append(metrics["perf/train_items_per_sec"])
        out = subprocess.run([sys.executable, str(BENCH / "plain_vae.py"), str(epochs)], check=True,
                             capture_output=True, text=True).stdout
        plain.append(json.loads(out)["images_per_sec"])
    ratio = statistics.median(ours) / statistics.median(plain)
    write_result("vae_throughput", f"""# VAE training throughput: genrun vs a plain PyTorch loop

Command: `.venv/bin/python bench/vae_throughput.py {epochs} {rounds}`
Machine: `{json.dumps(machine())}`

| round | genrun (images/s) | plain loop (images/s) |
|---|---|---|
""" + "".join(f"| {i} | {a:.0f} | {b:.0f} |\n" for i, (a, b) in enumerate(zip(ours, plain, strict=True))) + f"""
Median genrun {statistics.median(ours):.0f} images/s, plain {statistics.median(plain):.0f} images/s:
**ratio {ratio:.3f}** (target ≥ 0.95).
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
