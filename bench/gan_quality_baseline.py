"""The sample-quality baseline later work must beat: `model=dcgan` and `model=vae` each trained on the
bundled MNIST digits for a fixed CPU budget, then `genrun evaluate` on both: domain FID, precision/recall,
coverage, memorization, with n stated.

The budget is CPU time, made exact: each model's training runs with `threads=1`, pinned to a core of its
own (the two train side by side on a 2-core machine), and Lightning's `max_time` stops it after
`--minutes` (10 by default) of wall time, which is then 10 minutes of one core.

Usage: .venv/bin/python bench/gan_quality_baseline.py [--minutes 10] [--num-samples 1000]
Writes the runs under bench/.runs/quality_baseline/ (ignored by git) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gan_ring8 import machine

ROOT = Path(__file__).resolve().parent / ".runs" / "quality_baseline"
MODELS = {"dcgan": ["model=dcgan", "dataset.batch_size=64"], "vae": ["model=conv_vae", "model.likelihood=bernoulli"]}
SHOWN = ("eval/domain_fid", "eval/domain_fid_train_vs_test", "eval/precision", "eval/recall", "eval/coverage_kl",
         "eval/memorization_ratio", "eval/n_fake", "eval/n_real", "eval/classifier_test_acc", "test/swd")


def genrun_env() -> dict:
    return {**os.environ, "GENRUN_OUTPUT_DIR": str(ROOT / "outputs"), "GENRUN_DATA_DIR": str(ROOT / "data")}


def genrun(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genrun", *args], env=genrun_env(), capture_output=True, text=True)


def start_training(name: str, overrides: list[str], budget: str, core: int | None) -> subprocess.Popen:
    run_dir = ROOT / "outputs" / "train" / name
    args = [sys.executable, "-m", "genrun", "train", *overrides, "dataset.source=mini", "trainer.max_epochs=1000",
            f"trainer.max_time=00:{budget}", "test=false", "logger=csv", "threads=1", f"hydra.run.dir={run_dir}"]
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    return subprocess.Popen(args, env=genrun_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pin)


def newest(task: str) -> Path:
    return max((ROOT / "outputs" / task).glob("*/*"), key=lambda p: p.stat().st_mtime)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--num-samples", type=int, default=1000)
    options = parser.parse_args()
    budget = time.strftime("%H:%M:%S", time.gmtime(options.minutes * 60))
    print(machine())
    cores = sorted(os.sched_getaffinity(0))
    side_by_side = len(cores) >= len(MODELS)
    rows, started = {}, {}
    jobs = {}
    for i, (name, overrides) in enumerate(MODELS.items()):
        started[name] = time.perf_counter()
        jobs[name] = start_training(name, overrides, budget, cores[i] if side_by_side else None)
        if not side_by_side:
            jobs[name].wait()
    for name, job in jobs.items():
        _, stderr = job.communicate()
        if job.returncode:
            print(stderr[-3000:])
            return 1
        run = ROOT / "outputs" / "train" / name
        epochs = json.loads((run / "metrics.json").read_text())["epochs"]
        wall = time.perf_counter() - started[name]
        evaluation = genrun(["evaluate", f"ckpt={run}", f"num_samples={options.num_samples}"])
        if evaluation.returncode:
            print(evaluation.stderr[-3000:])
            return 1
        metrics = json.loads((newest("evaluate") / "metrics.json").read_text())["metrics"]
        rows[name] = {"train wall s": round(wall, 1), "epochs": epochs, **{k: metrics.get(k) for k in SHOWN}}
        print(name, json.dumps(rows[name]), flush=True)
    keys = list(next(iter(rows.values())))
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                                          for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
