"""Benchmark: wall time of the whole `genrun train experiment=gpt_shakespeare_cpu` command on tiny shakespeare,
and the validation loss (nats/char) it reaches; target <= 1.88 in <= 240 s on a 2-core CPU.

    .venv/bin/python bench/text_gpt_shakespeare.py                          # the GPT recipe
    .venv/bin/python bench/text_gpt_shakespeare.py --experiment char_lstm_shakespeare_cpu
    .venv/bin/python bench/text_gpt_shakespeare.py --threads 1 trainer.max_steps=1500   # extra overrides

Results are appended to bench/results/text_gpt_shakespeare.md with the machine, its load and the command.
The machine may be shared: the load average before and after is recorded with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_common import RESULTS, ROOT, SHAKESPEARE, append_markdown, load_average, machine  # noqa: E402

TARGET_LOSS, TARGET_SECONDS = 1.88, 240.0


def val_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, val/loss, seconds since the first train/loss_step point) from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points, start = [], None
    for event_file in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        if "train/loss_step" in tags:
            first = acc.Scalars("train/loss_step")[0].wall_time
            start = first if start is None else min(start, first)
        if "val/loss" in tags:
            points += [(e.step, e.value, e.wall_time) for e in acc.Scalars("val/loss")]
    return [(step, value, wall - (start or wall)) for step, value, wall in sorted(points)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="gpt_shakespeare_cpu")
    parser.add_argument("--data", default=str(SHAKESPEARE), help="tiny shakespeare's input.txt")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the run (default: inherit)")
    parser.add_argument("--results", default=str(RESULTS / "text_gpt_shakespeare.md"))
    parser.add_argument("overrides", nargs="*", help="extra genrun overrides")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        print(f"no tiny shakespeare at {args.data}; pass --data FILE", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    run_dir = ROOT / "bench" / ".runs" / f"{args.experiment}_{time.strftime('%Y%m%d_%H%M%S')}"
    command = [str(ROOT / ".venv" / "bin" / "genrun"), "train", f"experiment={args.experiment}",
               f"dataset.path={args.data}", f"hydra.run.dir={run_dir}", *args.overrides]
    info = machine() | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads is not None else {})
    print("running:", shlex.join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    info["load average (1/5/15 min) at end"] = load_average()
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        return result.returncode
    metrics = json.loads((run_dir / "metrics.json").read_text())
    final = metrics["metrics"]["val/loss"]
    curve = val_curve(run_dir)
    ok = final <= TARGET_LOSS and wall <= TARGET_SECONDS
    info["command"] = f"`{shlex.join(command[1:])}`" + (f" (OMP_NUM_THREADS={args.threads})" if args.threads else "")
    info["steps"] = metrics["global_step"]
    info["wall time of the whole command"] = f"{wall:.1f} s"
    info["final val loss"] = f"{final:.4f} nats/char ({final / 0.693147:.3f} bits/char)"
    info[f"target (<= {TARGET_LOSS} in <= {TARGET_SECONDS:.0f} s)"] = "met" if ok else "NOT met"
    table = [["step", "val nats/char", "s since first step"]]
    table += [[str(step), f"{value:.4f}", f"{seconds:.0f}"] for step, value, seconds in curve]
    append_markdown(Path(args.results), f"{args.experiment} ({info['date']})", info, table, [])
    print(json.dumps({"wall_s": round(wall, 1), "val_loss": final, "curve": curve, "target_met": ok}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
