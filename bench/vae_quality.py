"""Quality at equal work: 10 epochs of the MLP VAE (784-400-20) on the 5,000 bundled digits, evaluated
on the real MNIST test set (../shared/data/mnist_t10k). Target: test negative ELBO ≤ 133 nats/image
(the plain reference reaches 133.1 in 31.8 s on this machine kind).
Run: .venv/bin/python bench/vae_quality.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from common import BENCH, RUNS, genrun, machine, mnist_test_dir, write_result


def main() -> None:
    data_dir = mnist_test_dir()
    run_dir = RUNS / "vae_quality"
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    metrics = genrun(["train", "experiment=vae_mnist", "dataset.source=mini", "dataset.val_fraction=0",
                      "trainer.accelerator=cpu", "model.iwae_k=100"], run_dir,
                     env={"GENRUN_DATA_DIR": str(data_dir)})
    wall = time.perf_counter() - start
    m = metrics["metrics"]
    same_dir = RUNS / "vae_quality_reference_recipe"
    shutil.rmtree(same_dir, ignore_errors=True)
    same = genrun(["train", "experiment=vae_mnist", "dataset.source=mini", "dataset.val_fraction=0",
                   "trainer.accelerator=cpu", "model.lr=1e-3", "model.iwae_k=0"], same_dir,
                  env={"GENRUN_DATA_DIR": str(data_dir)})["metrics"]
    start = time.perf_counter()
    plain = json.loads(subprocess.run([sys.executable, str(BENCH / "plain_vae.py"), "10", str(data_dir)],
                                      check=True, capture_output=True, text=True).stdout)
    plain_wall = time.perf_counter() - start
    write_result("vae_quality", f"""# VAE quality at equal work (10 epochs, 5,000 bundled digits, MNIST test set)

Command: `.venv/bin/python bench/vae_quality.py`  (genrun side: `genrun train experiment=vae_mnist
dataset.source=mini dataset.val_fraction=0 trainer.accelerator=cpu` with the MNIST test files in the data dir)
Machine: `{json.dumps(machine())}`

| | test −ELBO (nats/image) | IWAE NLL k=100 | bits/dim | test images | wall (s, whole command) |
|---|---|---|---|---|---|
| genrun, `experiment=vae_mnist` (Adam 2e-3) | {m['test/neg_elbo']:.1f} | {m['test/nll_iwae']:.1f} \
| {m['test/bits_per_dim']:.4f} | {m['test/n_images']} | {wall:.1f} |
| genrun, reference recipe (`model.lr=1e-3`) | {same['test/neg_elbo']:.1f} | – | – | {same['test/n_images']} | – |
| plain loop, reference recipe (Adam 1e-3) | {plain['test_neg_elbo']:.1f} | – | – | 10000 | {plain_wall:.1f} |

Data source recorded by genrun: {metrics['data']['source']}, test split: {metrics['data']['test_split']}.
Target: genrun's test −ELBO ≤ 133 nats/image. At the reference recipe genrun and the plain loop agree
within seed noise; the experiment's larger step size is what buys the ~7 nats in the same 10 epochs.
genrun's wall time includes start-up, the IWAE evaluation
(100 importance samples × 10,000 images), samples and TensorBoard logging.
""")


if __name__ == "__main__":
    main()
