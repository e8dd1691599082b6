"""PixelCNN likelihood at equal work: `experiment=pixelcnn_mnist_cpu` trained for MINUTES of CPU time on the
5,000 bundled digits, twice (256 grey levels, and model.binarize=true), each tested on the real MNIST test set
(10,000 images, ../shared/data/mnist_t10k): exact NLL in nats per image and bits per dimension.

Binarized test images are drawn once as Bernoulli(intensity) with a fixed seed (genrun.families.pixelcnn);
the literature's figures use the fixed binarization of Larochelle & Murray or their own draw, so compare
within a few tenths of a nat, not exactly. Anchors: Gated PixelCNN 81.30 nats (van den Oord et al. 2016, full
training on 60,000 digits); flows on 8-bit MNIST 0.97-1.06 bits/dim.
Run: .venv/bin/python bench/pixelcnn_likelihood.py [MINUTES] (default 20)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from common import REPO, RUNS, machine, mnist_test_dir, write_result

SETTINGS = (("8-bit (256 levels)", []), ("binarized (2 levels, dynamic binarization)", ["model.binarize=true"]))


def launch(name: str, extra: list[str], minutes: int, core: int, data_dir) -> tuple[str, object, subprocess.Popen]:
    """Start one training run with one thread, pinned to `core`: MINUTES of one core is its whole budget."""
    run_dir = RUNS / f"pixelcnn_likelihood_{'binarized' if extra else '8bit'}_{minutes}min"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "genrun", "train", "experiment=pixelcnn_mnist_cpu", "dataset.source=mini",
           "trainer.accelerator=cpu", "threads=1", f"trainer.max_time=00:00:{minutes:02d}:00", "num_samples=16",
           *extra, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "GENRUN_DATA_DIR": str(data_dir)},
                               stdout=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    return name, run_dir, process


def main(minutes: int = 20) -> None:
    data_dir = mnist_test_dir()
    cores = sorted(os.sched_getaffinity(0))
    load = os.getloadavg()
    # side by side, one core each, when there are two; otherwise one after the other on the one core
    runs = []
    for i, (name, extra) in enumerate(SETTINGS):
        runs.append(launch(name, extra, minutes, cores[i % len(cores)], data_dir))
        if len(cores) < 2:
            runs[-1][2].wait()
    rows = []
    for name, run_dir, process in runs:
        if process.wait() != 0:
            raise SystemExit(f"{run_dir}: genrun train failed (exit {process.returncode})")
        result = json.loads((run_dir / "metrics.json").read_text())
        metrics = result["metrics"]
        if result["data"].get("test_split") != "test files":
            raise SystemExit(f"{run_dir}: tested on {result['data'].get('test_split')}, not the MNIST test set")
        rows.append(f"| {name} | {result['global_step']:,} | {result['epochs']} | {metrics['test/nll']:.2f} | "
                    f"{metrics['test/bits_per_dim']:.4f} | {metrics['val/bits_per_dim']:.4f} | "
                    f"{int(metrics['test/n_images']):,} |")
    write_result("pixelcnn_likelihood", f"""# Gated PixelCNN likelihood after {minutes} minute(s) of CPU training

Command: `.venv/bin/python bench/pixelcnn_likelihood.py {minutes}`
Machine: `{json.dumps(machine())}`, load average before the runs {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}

Each row: `genrun train experiment=pixelcnn_mnist_cpu dataset.source=mini threads=1
trainer.max_time=00:00:{minutes:02d}:00`
(the default net of configs/model/pixelcnn.yaml, batch 64, Adam 1e-3) on the 5,000 bundled digits, then the
exact NLL of the 10,000 MNIST test images (binarized ones: one fixed-seed Bernoulli draw). The two rows
train side by side, each with one thread pinned to its own core: {minutes} CPU-minutes each, literally (the
DDPM recipe's 20 minutes use two cores, so this budget is half of that).

| setting | steps | epochs | test NLL (nats/image) | test bits/dim | val bits/dim | test images |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Goal: binarized NLL at most 90 nats within 20 minutes (Gated PixelCNN 81.30 after full training on
60,000 digits); 8-bit bits/dim recorded (flows on 8-bit MNIST: 0.97-1.06).
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
