"""`model.compile=true` (torch.compile of each step's loss) against eager, side by side, on the CPU: the GPT recipe
and the MNIST VAE, each run as a whole `genrun train` command.

For each model and setting: the whole command's wall time (start-up, compilation, training, validation, end-of-
run work) and the steady training speed after warm-up. The GPT's steady speed is read from the run's
TensorBoard events (wall times of the per-step loss logged every 50 steps, from step 100 on, so compilation
is not in it); the VAE's is genrun's own `perf/train_images_per_sec` (every epoch after the first). The two
settings run in turn, ROUNDS times, so that they see the same machine; medians and ratios are reported.

Run: .venv/bin/python bench/compile_speed.py [ROUNDS] [GPT_STEPS]
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

SHAKESPEARE = SHARED / "text" / "tinyshakespeare.txt"


def gpt_args(steps: int) -> list[str]:
    return ["train", "experiment=gpt_shakespeare_cpu", f"dataset.path={SHAKESPEARE}", f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}", "logger=tensorboard"]


VAE = ["train", "experiment=vae_mnist", "dataset.source=mini", "test=false", "trainer.accelerator=cpu"]


def steady_ms_per_step(run_dir: Path) -> float:
    """Milliseconds per optimiser step between the logged steps from 100 on (after any compilation)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for event_file in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss_step" in acc.Tags()["scalars"]:
            points += [(e.step, e.wall_time) for e in acc.Scalars("train/loss_step") if e.step >= 100]
    (first_step, first_time), (last_step, last_time) = min(points), max(points)
    return (last_time - first_time) * 1000 / (last_step - first_step)


def run(args: list[str], run_dir: Path) -> tuple[float, dict]:
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "genrun", *args, f"hydra.run.dir={run_dir}"], cwd=REPO,
                            capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"genrun {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return wall, json.loads((run_dir / "metrics.json").read_text())


def main(rounds: int = 2, gpt_steps: int = 600) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    figures: dict[tuple[str, bool], list[tuple[float, float, float]]] = {}
    for i in range(rounds):
        for compiled in (False, True):
            flag = [f"model.compile={str(compiled).lower()}"]
            run_dir = RUNS / f"compile_gpt_{int(compiled)}"
            wall, out = run([*gpt_args(gpt_steps), *flag], run_dir)
            figures.setdefault(("gpt", compiled), []).append((wall, steady_ms_per_step(run_dir),
                                                              out["metrics"]["val/loss"]))
            run_dir = RUNS / f"compile_vae_{int(compiled)}"
            wall, out = run([*VAE, *flag], run_dir)
            figures.setdefault(("vae", compiled), []).append((wall, out["metrics"]["perf/train_images_per_sec"],
                                                              out["metrics"]["train/neg_elbo"]))
            print(i, compiled, figures[("gpt", compiled)][-1], figures[("vae", compiled)][-1], flush=True)

    def med(model: str, compiled: bool, k: int) -> float:
        return statistics.median(f[k] for f in figures[(model, compiled)])

    rows = []
    for model, speed_unit, quality in (("gpt", "ms/step", "val loss (nats/char)"),
                                       ("vae", "images/s", "train −ELBO, last epoch (nats)")):
        for compiled in (False, True):
            per_round = ", ".join(f"{w:.1f}" for w, _, _ in figures[(model, compiled)])
            rows.append(f"| {model} | {'compiled' if compiled else 'eager'} | {per_round} | "
                        f"{med(model, compiled, 0):.1f} | {med(model, compiled, 1):.1f} {speed_unit} | "
                        f"{med(model, compiled, 2):.3f} {quality} |")
    gpt_speed = med("gpt", False, 1) / med("gpt", True, 1)  # ms/step: eager over compiled
    vae_speed = med("vae", True, 1) / med("vae", False, 1)  # images/s: compiled over eager
    write_result("compile_speed", f"""# torch.compile against eager on a 2-core CPU

Command: `.venv/bin/python bench/compile_speed.py {rounds} {gpt_steps}` ({rounds} rounds, the settings in turn)
Machine: `{json.dumps(machine())}`, load average before the run: {load}

- GPT: `genrun train experiment=gpt_shakespeare_cpu trainer.max_steps={gpt_steps}` (the recipe's GPT:
  4 layers, 64 dims, batch 32, context 64), one full validation at the end.
- VAE: `genrun train experiment=vae_mnist dataset.source=mini test=false` (MLP VAE, 10 epochs of the 4,500
  bundled training digits, batch 128).

| model | setting | whole command per round (s) | median whole command (s) | median steady speed | median quality |
|---|---|---|---|---|---|
{chr(10).join(rows)}

- GPT steady step time, compiled against eager: **{gpt_speed:.2f}x** the speed; whole command
  {med('gpt', True, 0) / med('gpt', False, 0):.2f}x the eager wall time.
- VAE steady images/s, compiled against eager: **{vae_speed:.2f}x**; whole command
  {med('vae', True, 0) / med('vae', False, 0):.2f}x the eager wall time.
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
