"""`genrun train model=pixelcnn` against a plain PyTorch loop around the same gated PixelCNN: training images/s.

Same data (the 5,000 bundled digits, all used for training), batch 64, the net of configs/model/pixelcnn.yaml,
CPU; each epoch is BATCHES batches, every epoch but the first timed on both sides; the sides run in turn,
ROUNDS times, so they see the same machine load:
  genrun        `genrun train model=pixelcnn ...` as shipped (torch's fused Adam on CPU)
  plain         the loop as a PixelCNN is written, default Adam (bench/plain_pixelcnn.py)
  plain fused   the same loop with fused Adam: like for like, what the runner itself costs
Run: .venv/bin/python bench/pixelcnn_throughput.py [EPOCHS] [BATCHES] [ROUNDS]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from common import BENCH, RUNS, genrun, machine, throughput_table, write_result

GENRUN_ARGS = ["train", "model=pixelcnn", "dataset.source=mini", "dataset.val_fraction=0", "dataset.batch_size=64",
               "test=false", "trainer.accelerator=cpu", "num_samples=0"]


def plain(epochs: int, batches: int, *flags: str) -> float:
    out = subprocess.run([sys.executable, str(BENCH / "plain_pixelcnn.py"), str(epochs), str(batches), *flags],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["images_per_sec"]


def main(epochs: int = 2, batches: int = 20, rounds: int = 2) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ours, reference, fused = [], [], []
    for i in range(rounds):
        run_dir = RUNS / f"pixelcnn_throughput_{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        ours.append(genrun([*GENRUN_ARGS, f"trainer.max_epochs={epochs}", f"trainer.limit_train_batches={batches}"],
                           run_dir)["metrics"]["perf/train_images_per_sec"])
        reference.append(plain(epochs, batches))
        fused.append(plain(epochs, batches, "--fused"))
    write_result("pixelcnn_throughput", f"""# PixelCNN training throughput: genrun vs a plain PyTorch loop

Command: `.venv/bin/python bench/pixelcnn_throughput.py {epochs} {batches} {rounds}` ({epochs} epochs of {batches}
batches of 64, the first not timed; the default gated PixelCNN of configs/model/pixelcnn.yaml on both sides)
Machine: `{json.dumps(machine())}`, load average before the run: {load}

{throughput_table(ours, reference, fused)}""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
