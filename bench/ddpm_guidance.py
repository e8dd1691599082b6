"""Classifier-free guidance on CPU: a class-conditional `experiment=ddpm_mnist_cpu` (labels dropped with
probability 0.1) trained for the same number of optimiser steps as the unconditional run of
bench/ddpm_sampling.py, then one checkpoint evaluated with DDIM-50 at several guidance scales: domain FID,
KID, precision / recall and the domain classifier's accuracy on the samples (their labels drawn as often as
the training data has each class). The fidelity-diversity trade-off of Ho & Salimans 2022 at digit scale.

genrun's `guidance=s` is diffusers' scale: eps = eps_u + s (eps_c - eps_u); the paper's w is s - 1.
Equal work is counted in optimiser steps (not wall time), so the result does not depend on how busy the
machine was while training.
Run: .venv/bin/python bench/ddpm_guidance.py [N] [STEPS]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from common import REPO, RUNS, genrun, machine, mnist_test_dir, write_result

SCALES = (0.0, 1.0, 2.0, 4.0)  # unconditional, and w = 0, 1, 3


def evaluate(run_dir, scale: float, n: int, data_dir) -> tuple[dict, float]:
    out = RUNS / f"ddpm_guidance_eval_{scale:g}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "genrun", "evaluate", f"ckpt={run_dir}", "sampler=ddim", "steps=50",
           f"guidance={scale}", f"num_samples={n}", "max_minutes=null", f"hydra.run.dir={out}",
           f"classifier.cache_dir={RUNS / 'classifier_cache'}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "GENRUN_DATA_DIR": str(data_dir)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())["metrics"], time.perf_counter() - start


def picture(run_dir, scale: float) -> None:
    """A row per class at this scale, the same noise in every row, kept beside the result."""
    out = RUNS / f"ddpm_guidance_sample_{scale:g}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "genrun", "sample", f"ckpt={run_dir}", "sampler=ddim", "steps=50",
           f"guidance={scale}", "num_samples=80", "max_minutes=null", f"hydra.run.dir={out}"]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.copyfile(out / "prior.png", REPO / "bench" / "results" / f"ddpm_guidance_s{scale:g}.png")


def main(n: int = 200, steps: int = 1004) -> None:
    data_dir = mnist_test_dir()
    run_dir = RUNS / "ddpm_mnist_cpu_conditional"
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        genrun(["train", "experiment=ddpm_mnist_cpu", "dataset.source=mini", "trainer.accelerator=cpu",
                "model.num_classes=10", "trainer.max_time=null", f"trainer.max_steps={steps}", "num_samples=64"],
               run_dir, env={"GENRUN_DATA_DIR": str(data_dir)})
    trained = json.loads((run_dir / "metrics.json").read_text())
    rows, nan = [], float("nan")
    for scale in SCALES:
        metrics, seconds = evaluate(run_dir, scale, n, data_dir)
        picture(run_dir, scale)
        w = "unconditional" if scale == 0 else f"{scale - 1:g}"
        accuracy = metrics.get("eval/conditional_acc", nan) if scale else nan
        rows.append(f"| {scale:g} | {w} | {metrics['eval/domain_fid']:.2f} | {metrics['eval/kid']:.4f} | "
                    f"{metrics.get('eval/precision', nan):.3f} | {metrics.get('eval/recall', nan):.3f} | "
                    f"{accuracy:.3f} | {seconds:.0f} |")
    write_result("ddpm_guidance", f"""# DDPM with classifier-free guidance on CPU: the fidelity-diversity trade-off

Command: `.venv/bin/python bench/ddpm_guidance.py {n} {steps}`
Machine: `{json.dumps(machine())}`

Training: `genrun train experiment=ddpm_mnist_cpu dataset.source=mini model.num_classes=10
trainer.max_time=null trainer.max_steps={steps}` on the 5,000 bundled digits (labels dropped with probability
0.1): {trained['global_step']:,} optimiser steps, the unconditional run's count in bench/results/ddpm_sampling.md.

Each row: `genrun evaluate ckpt=RUN sampler=ddim steps=50 guidance=S num_samples={n}` against {n} MNIST test
images, in the features of genrun's digit classifier; conditional accuracy is that classifier's accuracy on
the samples' requested labels (not defined for the unconditional row). genrun's `guidance=S` is diffusers'
scale; Ho & Salimans' w = S - 1. Guided rows (S not 0 or 1) run the U-Net twice per step. The wall time is
the whole evaluate process on a machine shared with other work: read it as rough.
Pictures: `bench/results/ddpm_guidance_s<S>.png`, a row per class from the same noise.

| guidance S | w | domain FID | KID | precision | recall | conditional accuracy | evaluate wall s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
