"""Time to quality for text: how long `genrun train` takes to bring the tiny-shakespeare GPT to nanoGPT's CPU-recipe
validation loss (1.88 nats/char), genrun's recipe against genrun running nanoGPT's own hyperparameters.

The reference row is nanoGPT's CPU recipe (README: 4 layers, 4 heads, 128 dims, context 64, batch 12, lr 1e-3,
100 warm-up steps, cosine to 1e-4 over 2000 steps, 2000 steps, a 20-batch validation estimate every 250 steps)
in genrun, which runs at per-step parity with nanoGPT itself (issue 15); it ends at about 1.88, so its whole
command is its time to quality. The other rows are genrun's recipe (`experiment=gpt_shakespeare_cpu`), and with
--compile the recipe with torch.compile. The rows run in turn, ROUNDS times, so that they see the same
machine; the medians and their ratios are reported.

A recipe row's time to quality is the wall time from launching the command to the first validation at or
below 1.88 (read from the run's TensorBoard events); the whole command's wall time (start-up, data,
training, validations, end-of-run samples and checkpoint) is reported beside it.

Run: .venv/bin/python bench/gpt_time_to_quality.py [ROUNDS] [--compile]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RUNS, SHARED, machine, write_result

TARGET = 1.88
SHAKESPEARE = SHARED / "text" / "tinyshakespeare.txt"
COMMON = ["train", "experiment=gpt_shakespeare_cpu", f"dataset.path={SHAKESPEARE}", "logger=tensorboard"]
NANOGPT = ["model.n_embd=128", "dataset.batch_size=12", "model.lr=1e-3", "model.warmup_steps=100",
           "model.decay_steps=2000", "model.min_lr_ratio=0.1", "trainer.max_steps=2000",
           "trainer.val_check_interval=250", "trainer.limit_val_batches=20", "dataset.eval_batch_size=12"]
ROWS = {"genrun, nanoGPT's hyperparameters (reference)": NANOGPT,
        "genrun recipe (`experiment=gpt_shakespeare_cpu`)": [],
        "genrun recipe, `model.compile=true`": ["model.compile=true"]}


def val_points(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, val/loss, absolute wall time) of every validation, from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for event_file in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        if "val/loss" in acc.Tags()["scalars"]:
            points += [(e.step, e.value, e.wall_time) for e in acc.Scalars("val/loss")]
    return sorted(points)


def run(name: str, overrides: list[str], index: int) -> dict:
    run_dir = RUNS / f"gpt_ttq_{index}_{len(overrides)}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    command = [sys.executable, "-m", "genrun", *COMMON, *overrides, f"hydra.run.dir={run_dir}"]
    launched = time.time()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name}: genrun failed\n{result.stderr[-3000:]}")
    points = val_points(run_dir)
    reached = next(((step, loss, at - launched) for step, loss, at in points if loss <= TARGET), None)
    final = json.loads((run_dir / "metrics.json").read_text())["metrics"]["val/loss"]
    return {"wall": wall, "reached": reached, "final": final, "steps": points[-1][0] if points else 0}


def main(rounds: int = 2) -> None:
    rows = {name: overrides for name, overrides in ROWS.items() if "--compile" in sys.argv or "compile" not in name}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict[str, list[dict]] = {name: [] for name in rows}
    for i in range(rounds):
        for name, overrides in rows.items():
            results[name].append(run(name, overrides, i))
            print(name, results[name][-1], flush=True)
    reference = list(rows)[0]

    def to_quality(r: dict) -> float:
        return r["reached"][2] if r["reached"] else float("inf")

    med = {name: (statistics.median(to_quality(r) for r in rs), statistics.median(r["wall"] for r in rs))
           for name, rs in results.items()}
    reference_time = med[reference][1]  # its whole command: it reaches about 1.88 at its end
    lines = []
    for name, rs in results.items():
        per_round = "; ".join(
            f"{to_quality(r):.1f} s (step {r['reached'][0]}, {r['reached'][1]:.3f})" if r["reached"] else
            f"not reached (final {r['final']:.3f})" for r in rs)
        lines.append(f"| {name} | {per_round} | {med[name][0]:.1f} | {med[name][1]:.1f} | "
                     f"{statistics.median(r['final'] for r in rs):.3f} | {med[name][0] / reference_time:.2f} | "
                     f"{med[name][1] / med[reference][1]:.2f} |")
    write_result("gpt_time_to_quality", f"""# GPT on tiny shakespeare: time to nanoGPT's validation loss ({TARGET})

Command: `.venv/bin/python bench/gpt_time_to_quality.py {' '.join(sys.argv[1:])}` ({rounds} rounds, rows in turn)
Machine: `{json.dumps(machine())}`, load average before the run: {load}

Every row is `genrun train experiment=gpt_shakespeare_cpu dataset.path=tinyshakespeare.txt` (4 layers, 4 heads,
context 64; the recipe: 64 dims, batch 32, lr 1e-2, 1000 steps, one full validation at the end); the reference
adds `{' '.join(NANOGPT)}`, nanoGPT's CPU recipe.
"Time to {TARGET}" counts from launching the command to the first validation at or below {TARGET} (the
reference's 20-batch estimates are cheaper and noisier than the recipe's full validations of the 111,539
validation characters; its crossing is the first estimate below the line).

| row | per round: time to {TARGET} (step, val loss) | median time to {TARGET} (s) | median whole command (s) | \
final val loss | time to {TARGET} / reference's whole command | whole command / reference's |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}

Goal (issue 15): genrun's recipe reaches {TARGET} in at most half the reference's time (ratio ≤ 0.50); the
last column compares whole commands (like for like: both include start-up and end-of-run work).
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2] if not a.startswith("--")))
