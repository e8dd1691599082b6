"""Shared by the benchmarks: where data lives, the machine description, running genrun."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHARED = REPO.parent / "shared" / "data"
DATA = BENCH / ".data"
RUNS = BENCH / ".runs"


def machine() -> dict:
    import torch

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    cpu = names[0] if names else "unknown"
    return {"date": str(date.today()), "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def mnist_test_dir() -> Path:
    """A data dir whose MNIST/raw holds the real MNIST test set (linked from ../shared)."""
    raw = DATA / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        link = raw / name
        if not link.exists():
            link.symlink_to(SHARED / "mnist_t10k" / name)
    return DATA


def genrun(args: list[str], run_dir: Path, env: dict | None = None) -> dict:
    """Run `genrun train ...` into run_dir and return its metrics.json."""
    cmd = [sys.executable, "-m", "genrun", *args, f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    return json.loads((run_dir / "metrics.json").read_text())


class ManualOptimisation:
    """Mixin for a LightningModule with one optimiser: Lightning's manual optimisation (no closure, fewer hooks),
    the step taken by hand around the module's own training_step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        optimizer.step()
        return loss


def write_result(name: str, markdown: str) -> Path:
    path = BENCH / "results" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    print(markdown)
    return path


def throughput_table(ours: list[float], plain: list[float], fused: list[float], target: float = 0.95) -> str:
    """The per-round table, medians and the two ratios of a genrun-against-plain-loop throughput benchmark."""
    import statistics

    med = {name: statistics.median(v) for name, v in (("genrun", ours), ("plain", plain), ("fused", fused))}
    rows = "".join(f"| {i} | {a:.1f} | {b:.1f} | {c:.1f} |\n" for i, (a, b, c) in enumerate(zip(ours, plain, fused,
                                                                                                strict=True)))
    return f"""| round | genrun (images/s) | plain loop, default Adam | plain loop, fused Adam |
|---|---|---|---|
{rows}
Medians: genrun {med['genrun']:.1f}, plain {med['plain']:.1f}, plain with fused Adam {med['fused']:.1f} images/s.

- **genrun / plain loop: {med['genrun'] / med['plain']:.3f}** (target ≥ {target}).
- genrun / plain loop with the same fused Adam: {med['genrun'] / med['fused']:.3f} (like for like).
"""
