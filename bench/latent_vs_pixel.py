"""Latent against pixel-space diffusion on CPU, at equal sampler steps: DDIM-K from the pixel U-Net of
bench/ddpm_sampling.py (20 minutes of `experiment=ddpm_mnist_cpu`) and DDIM-K from `model=latent_ddpm` over a
conv_vae trained on the same 5,000 bundled digits. Each row: `genrun sample` wall time for N samples (whole
process, start-up included; the same for both) and `genrun evaluate` with the same sampler on N samples
against N MNIST test images (domain FID, KID, precision / recall). Both sides run in this one script.
Run: .venv/bin/python bench/latent_vs_pixel.py [N] [STEPS] [VAE_EPOCHS] [LATENT_STEPS]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from common import REPO, RUNS, genrun, machine, mnist_test_dir, write_result


def timed(args: list[str], out, env: dict | None = None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genrun", *args, "max_minutes=null", f"hydra.run.dir={out}"], check=True,
                   cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def train(name: str, args: list[str], data_dir) -> tuple[dict, float]:
    run_dir = RUNS / name
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return json.loads((run_dir / "metrics.json").read_text()), float("nan")
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    metrics = genrun(["train", "dataset=mnist", "dataset.source=mini", "trainer.accelerator=cpu", "seed=1", *args],
                     run_dir, env={"GENRUN_DATA_DIR": str(data_dir)})
    return metrics, time.perf_counter() - start


def main(n: int = 200, steps: int = 50, vae_epochs: int = 40, latent_steps: int = 5000) -> None:
    data_dir = mnist_test_dir()
    pixel = RUNS / "ddpm_mnist_cpu"
    if not (pixel / "checkpoints" / "last.ckpt").is_file():
        sys.exit(f"{pixel}: no trained run; run bench/ddpm_sampling.py first")
    vae, vae_wall = train("latent_conv_vae", ["model=conv_vae", "model.likelihood=bernoulli",
                                              f"trainer.max_epochs={vae_epochs}", "num_samples=16"], data_dir)
    latent, latent_wall = train("latent_ddpm", ["model=latent_ddpm", f"model.autoencoder={RUNS / 'latent_conv_vae'}",
                                                "trainer.max_epochs=-1", f"trainer.max_steps={latent_steps}",
                                                "num_samples=16"], data_dir)
    rows, nan = [], float("nan")
    models = (("pixel U-Net (ddpm)", pixel), ("latent MLP over conv_vae (latent_ddpm)", RUNS / "latent_ddpm"))
    for name, run_dir in models:
        tag = run_dir.name
        sample_s = timed(["sample", f"ckpt={run_dir}", "sampler=ddim", f"steps={steps}", f"num_samples={n}"],
                         RUNS / f"lvp_sample_{tag}")
        timed(["evaluate", f"ckpt={run_dir}", "sampler=ddim", f"steps={steps}", f"num_samples={n}",
               f"classifier.cache_dir={RUNS / 'classifier_cache'}"], RUNS / f"lvp_eval_{tag}",
              env={"GENRUN_DATA_DIR": str(data_dir)})
        m = json.loads((RUNS / f"lvp_eval_{tag}" / "metrics.json").read_text())["metrics"]
        rows.append(f"| {name} | {sample_s:.1f} | {sample_s / n * 1000:.0f} | {m['eval/domain_fid']:.2f} | "
                    f"{m['eval/kid']:.4f} | {m.get('eval/precision', nan):.3f} | {m.get('eval/recall', nan):.3f} |")
    def took(seconds: float) -> str:
        return "" if seconds != seconds else f", {seconds / 60:.1f} min on a shared machine"

    write_result("latent_vs_pixel", f"""# Latent against pixel-space diffusion on CPU, DDIM-{steps}

Command: `.venv/bin/python bench/latent_vs_pixel.py {n} {steps} {vae_epochs} {latent_steps}`
Machine: `{json.dumps(machine())}`

- Pixel: the checkpoint of bench/results/ddpm_sampling.md (U-Net, 20 minutes of `experiment=ddpm_mnist_cpu`).
- Latent: `genrun train model=conv_vae model.likelihood=bernoulli trainer.max_epochs={vae_epochs}`
  ({vae['global_step']:,} steps{took(vae_wall)}), then `genrun train model=latent_ddpm
  model.autoencoder=RUN trainer.max_steps={latent_steps}` ({latent['global_step']:,} steps{took(latent_wall)};
  latent scale measured from the data), both on the 5,000 bundled digits.

Each row: `genrun sample ckpt=RUN sampler=ddim steps={steps} num_samples={n}` wall time (whole process, start-up
included) and `genrun evaluate` with the same sampler, {n} samples against {n} MNIST test images, in the
features of genrun's digit classifier.

| model | sample wall s ({n} images) | ms per image | domain FID | KID | precision | recall |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
