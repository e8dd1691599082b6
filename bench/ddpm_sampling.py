"""DDPM on CPU: `experiment=ddpm_mnist_cpu` (20 minutes of training on the 5,000 bundled digits), then one
checkpoint sampled with DDIM at 10, 20, 50 and 100 steps and (with FULL=1) the full 1000-step ancestral
chain: wall time for the same N samples and their quality (domain FID and KID against the MNIST test set,
from `genrun evaluate`; the domain classifier is trained once and cached). Like for like: every row draws
the same N samples from the same seed with the same network; only the sampler differs.
Run: .venv/bin/python bench/ddpm_sampling.py [N] [TRAIN_MINUTES] [FULL]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from common import REPO, RUNS, genrun, machine, mnist_test_dir, write_result

SETTINGS = [("ddim", 10), ("ddim", 20), ("ddim", 50), ("ddim", 100), ("ddpm", 1000)]


def evaluate(run_dir, sampler: str, steps: int, n: int, data_dir) -> tuple[dict, float]:
    out = RUNS / f"ddpm_eval_{sampler}_{steps}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "genrun", "evaluate", f"ckpt={run_dir}", f"sampler={sampler}", f"steps={steps}",
           f"num_samples={n}", "max_minutes=null", f"hydra.run.dir={out}",
           f"classifier.cache_dir={RUNS / 'classifier_cache'}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "GENRUN_DATA_DIR": str(data_dir)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())["metrics"], time.perf_counter() - start


def sample_time(run_dir, sampler: str, steps: int, n: int) -> float:
    out = RUNS / f"ddpm_sample_{sampler}_{steps}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "genrun", "sample", f"ckpt={run_dir}", f"sampler={sampler}", f"steps={steps}",
           f"num_samples={n}", "max_minutes=null", f"hydra.run.dir={out}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(n: int = 200, minutes: int = 20, full: int = 1) -> None:
    data_dir = mnist_test_dir()
    run_dir = RUNS / "ddpm_mnist_cpu"
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        genrun(["train", "experiment=ddpm_mnist_cpu", "dataset.source=mini", "trainer.accelerator=cpu",
                f"trainer.max_time=00:00:{minutes:02d}:00", "num_samples=64"], run_dir,
               env={"GENRUN_DATA_DIR": str(data_dir)})
    trained = json.loads((run_dir / "metrics.json").read_text())
    rows, base, nan = [], None, float("nan")
    for sampler, steps in SETTINGS if full else SETTINGS[:-1]:
        seconds = sample_time(run_dir, sampler, steps, n)
        metrics, _ = evaluate(run_dir, sampler, steps, n, data_dir)
        base = base or seconds
        rows.append(f"| {sampler} | {steps} | {seconds:.1f} | {seconds / base:.1f} | "
                    f"{metrics['eval/domain_fid']:.2f} | {metrics['eval/kid']:.4f} | "
                    f"{metrics.get('eval/precision', nan):.3f} | {metrics.get('eval/recall', nan):.3f} |")
    write_result("ddpm_sampling", f"""# DDPM on CPU: samplers compared on one checkpoint

Command: `.venv/bin/python bench/ddpm_sampling.py {n} {minutes} {full}`
Machine: `{json.dumps(machine())}`

Training: `genrun train experiment=ddpm_mnist_cpu dataset.source=mini trainer.max_time=00:00:{minutes:02d}:00`
on the 5,000 bundled digits: {trained['global_step']:,} optimiser steps, final test (= validation split)
denoising MSE {trained['metrics'].get('test/denoising_mse', float('nan')):.4f}.

Each row: `genrun sample ckpt=RUN sampler=S steps=K num_samples={n}` wall time (whole process, start-up
included), its ratio to DDIM-10, and `genrun evaluate` with the same sampler on {n} samples against {n} MNIST
test images (domain FID and KID in the features of genrun's digit classifier; FID at this sample count is
biased upwards, compare rows with each other, not with published figures).

| sampler | steps | sample wall s | × DDIM-10 | domain FID | KID | precision | recall |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
