"""`genrun train model=ddpm` against a plain PyTorch loop around the same U-Net: training images/s.

Same data (the 5,000 bundled digits, all used for training), batch 128, CPU, every epoch but the first
timed on both sides; sides run in turn, ROUNDS times, so they see the same machine load:
  genrun        `genrun train model=ddpm ...` as shipped (EMA on, torch's fused Adam on CPU)
  plain         the loop as DDPM is written, default Adam, EMA after every step (bench/plain_ddpm.py)
  plain fused   the same loop with fused Adam and the malloc setting the genrun command makes
                (genrun/allocator.py): like for like, what the runner itself costs
Run: .venv/bin/python bench/ddpm_throughput.py [EPOCHS] [ROUNDS]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from common import BENCH, RUNS, genrun, machine, throughput_table, write_result

GENRUN_ARGS = ["train", "model=ddpm", "dataset.source=mini", "dataset.val_fraction=0", "dataset.batch_size=128",
               "test=false", "trainer.accelerator=cpu", "num_samples=0"]


def plain(epochs: int, *flags: str) -> float:
    out = subprocess.run([sys.executable, str(BENCH / "plain_ddpm.py"), str(epochs), *flags], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["images_per_sec"]


def main(epochs: int = 2, rounds: int = 2) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ours, reference, fused = [], [], []
    for i in range(rounds):
        run_dir = RUNS / f"ddpm_throughput_{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        ours.append(genrun([*GENRUN_ARGS, f"trainer.max_epochs={epochs}"], run_dir)["metrics"]
                    ["perf/train_images_per_sec"])
        reference.append(plain(epochs))
        fused.append(plain(epochs, "--fused", "--keep-freed-memory"))
    write_result("ddpm_throughput", f"""# DDPM training throughput: genrun vs a plain PyTorch loop

Command: `.venv/bin/python bench/ddpm_throughput.py {epochs} {rounds}` ({epochs} epochs of 40 batches of 128,
the first not timed; the default U-Net of configs/model/ddpm.yaml on both sides)
Machine: `{json.dumps(machine())}`, load average before the run: {load}

{throughput_table(ours, reference, fused)}""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
