"""ring8 benchmark: `genrun train experiment=gan_ring8` must cover all 8 modes with >= 90% high-quality
samples (VEEGAN protocol, 2,500 samples) within 2 minutes of CPU.

Runs the real command in a scratch directory and reports wall time, the child's CPU time and the metrics.
Usage: .venv/bin/python bench/gan_ring8.py [extra overrides...]
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now():%Y-%m-%d %H:%M}, nproc {os.cpu_count()}, {cpu}, torch {torch.__version__}, "
            f"load average before the run {load}")


def main(extra: list[str]) -> int:
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        args = [sys.executable, "-m", "genrun", "train", "experiment=gan_ring8", "logger=csv", *extra]
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(args, cwd=scratch, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - started
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode:
            print(done.stderr[-3000:])
            return done.returncode
        (metrics_file,) = Path(scratch, "outputs", "train").glob("*/*/metrics.json")
        metrics = json.loads(metrics_file.read_text())["metrics"]
    print(f"command: genrun train experiment=gan_ring8 logger=csv {' '.join(extra)}")
    print(f"wall {wall:.1f} s (process start, training, evaluation, samples), CPU {cpu:.1f} s")
    print(f"modes covered {metrics['toy/modes_covered']:.0f}/{metrics['toy/num_modes']:.0f}, "
          f"high-quality fraction {metrics['toy/hq_fraction']:.3f} (n={metrics['toy/n_samples']:.0f})")
    ok = metrics["toy/modes_covered"] == 8 and metrics["toy/hq_fraction"] >= 0.9 and wall <= 120
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
