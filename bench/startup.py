"""Start-up: `genrun --help` (no torch) and `genrun sample` for every model family (no Lightning).

Targets: --help under 1 s; sample under 3 s wall for every family. The VAE and the DDPM are fresh
checkpoints (the current format); the other families sample the small checkpoints in tests/data/format1
(converted on load). The DDPM's start-up is measured on one sample with one DDIM step; beside it, 64 samples
with 10 steps show how much of a real call is the network's work.
Also the import cost of torch alone and of torch + lightning + hydra + torchvision, for context. Median of
ROUNDS runs each. Run: .venv/bin/python bench/startup.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import REPO, RUNS, genrun, machine, write_result

# As installed for a user: Python caches compiled modules (this sandbox sets PYTHONDONTWRITEBYTECODE, which
# would recompile genrun's sources at every start). One warm-up run writes the cache.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], rounds: int) -> float:
    times = []
    for round_ in range(rounds + 1):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(rounds: int = 5) -> None:
    run_dir = RUNS / "startup_vae"
    shutil.rmtree(run_dir, ignore_errors=True)
    genrun(["train", "dataset.source=mini", "debug=fast_dev_run", "model.iwae_k=2"], run_dir)
    ddpm_dir = RUNS / "startup_ddpm"
    shutil.rmtree(ddpm_dir, ignore_errors=True)
    genrun(["train", "model=ddpm", "dataset.source=mini", "debug=fast_dev_run"], ddpm_dir)
    py = sys.executable
    fixtures = REPO / "tests" / "data" / "format1"
    sample = [py, "-m", "genrun", "sample", f"hydra.run.dir={RUNS / 'startup_sample'}"]
    figures = {
        "genrun --help": timed([py, "-m", "genrun", "--help"], rounds),
        "genrun sample (VAE, 64 samples)": timed([*sample, f"ckpt={run_dir}"], rounds),
        "genrun sample (DCGAN, 64 samples)": timed([*sample, f"ckpt={fixtures / 'dcgan.ckpt'}"], rounds),
        "genrun sample (GPT, 64 x 100 tokens)": timed(
            [*sample, f"ckpt={fixtures / 'gpt.ckpt'}", "max_new_tokens=100"], rounds),
        "genrun sample (DDPM, 1 sample, 1 DDIM step: start-up)": timed(
            [*sample, f"ckpt={ddpm_dir}", "sampler=ddim", "steps=1", "num_samples=1"], rounds),
        "genrun sample (DDPM, 64 samples, 10 DDIM steps: start-up + sampling)": timed(
            [*sample, f"ckpt={ddpm_dir}", "sampler=ddim", "steps=10"], rounds),
        "genrun sample (classifier, 64 test images)": timed(
            [*sample, f"ckpt={fixtures / 'classifier.ckpt'}"], rounds),
        "import torch": timed([py, "-c", "import torch"], rounds),
        "import torch, lightning, hydra, torchvision": timed(
            [py, "-c", "import torch, lightning, hydra, torchvision"], rounds),
    }
    rows = "".join(f"| `{name}` | {seconds:.2f} |\n" for name, seconds in figures.items())
    write_result("startup", f"""# Start-up times (median of {rounds} after one warm-up run, wall seconds, whole process)

Command: `.venv/bin/python bench/startup.py {rounds}`
Machine: `{json.dumps(machine())}`

| command | seconds |
|---|---|
{rows}
Targets: `genrun --help` < 1 s (it imports no torch); `genrun sample` < 3 s for every family (it imports
no Lightning and no torchvision; the classifier reads test images through the plain dataset classes, which
import no Lightning either).
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
