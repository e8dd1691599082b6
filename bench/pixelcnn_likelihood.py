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
import shutil
import sys

from common import RUNS, genrun, machine, mnist_test_dir, write_result

SETTINGS = (("8-bit (256 levels)", []), ("binarized (2 levels, dynamic binarization)", ["model.binarize=true"]))


def main(minutes: int = 20) -> None:
    data_dir = mnist_test_dir()
    rows = []
    for name, extra in SETTINGS:
        run_dir = RUNS / f"pixelcnn_likelihood_{'binarized' if extra else '8bit'}_{minutes}min"
        shutil.rmtree(run_dir, ignore_errors=True)
        result = genrun(["train", "experiment=pixelcnn_mnist_cpu", "dataset.source=mini", "trainer.accelerator=cpu",
                         f"trainer.max_time=00:00:{minutes:02d}:00", "num_samples=16", *extra], run_dir,
                        env={"GENRUN_DATA_DIR": str(data_dir)})
        metrics = result["metrics"]
        if result["data"].get("test_split") != "test files":
            raise SystemExit(f"{run_dir}: tested on {result['data'].get('test_split')}, not the MNIST test set")
        rows.append(f"| {name} | {result['global_step']:,} | {result['epochs']} | {metrics['test/nll']:.2f} | "
                    f"{metrics['test/bits_per_dim']:.4f} | {metrics['val/bits_per_dim']:.4f} | "
                    f"{int(metrics['test/n_images']):,} |")
    write_result("pixelcnn_likelihood", f"""# Gated PixelCNN likelihood after {minutes} minute(s) of CPU training

Command: `.venv/bin/python bench/pixelcnn_likelihood.py {minutes}`
Machine: `{json.dumps(machine())}`

Each row: `genrun train experiment=pixelcnn_mnist_cpu dataset.source=mini trainer.max_time=00:00:{minutes:02d}:00`
(the default net of configs/model/pixelcnn.yaml, batch 64, Adam 1e-3) on the 5,000 bundled digits, then the
exact NLL of the 10,000 MNIST test images (binarized ones: one fixed-seed Bernoulli draw).

| setting | steps | epochs | test NLL (nats/image) | test bits/dim | val bits/dim | test images |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Goal: binarized NLL at most 90 nats within 20 minutes (Gated PixelCNN 81.30 after full training on
60,000 digits); 8-bit bits/dim recorded (flows on 8-bit MNIST: 0.97-1.06).
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
