"""The sample-quality baseline later work must beat: `model=dcgan` and `model=vae` each trained on the
bundled MNIST digits for a fixed wall budget (10 minutes by default, stopped by Lightning's max_time), then
`genrun evaluate` on both: domain FID, precision/recall, coverage, memorization, with n stated.

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


def genrun(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENRUN_OUTPUT_DIR": str(ROOT / "outputs"), "GENRUN_DATA_DIR": str(ROOT / "data")}
    return subprocess.run([sys.executable, "-m", "genrun", *args], env=env, capture_output=True, text=True)


def newest(task: str) -> Path:
    return max((ROOT / "outputs" / task).glob("*/*"), key=lambda p: p.stat().st_mtime)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--num-samples", type=int, default=1000)
    options = parser.parse_args()
    budget = time.strftime("%H:%M:%S", time.gmtime(options.minutes * 60))
    print(machine())
    rows = {}
    for name, overrides in MODELS.items():
        started = time.perf_counter()
        train = genrun(["train", *overrides, "dataset.source=mini", "trainer.max_epochs=1000",
                        f"trainer.max_time=00:{budget}", "test=false", "logger=csv"])
        if train.returncode:
            print(train.stderr[-3000:])
            return 1
        run = newest("train")
        epochs = json.loads((run / "metrics.json").read_text())["epochs"]
        wall = time.perf_counter() - started
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
