"""`genrun train experiment=vae_mnist` from two source trees, side by side: did a change make training faster?

On this shared machine the speed of whole runs wanders by a quarter between hours, so a change is measured
against the code before it in one run, the sides alternating (and the plain fused-Adam loop beside them,
for the like-for-like ratio of each). Check the earlier commit out first, e.g.
`git worktree add /tmp/before <commit>`.
Run: .venv/bin/python bench/vae_throughput_versions.py BEFORE_SRC [ROUNDS] [THREADS]
  BEFORE_SRC  the `src` folder of the earlier checkout (/tmp/before/src); the other side is this checkout's
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys

from common import REPO, RUNS, machine, write_result
from vae_throughput import GENRUN_ARGS, plain

EPOCHS = 10


def images_per_second(src: str, run_dir, threads: int | None) -> float:
    shutil.rmtree(run_dir, ignore_errors=True)
    thread_args = [f"threads={threads}"] if threads else []
    subprocess.run([sys.executable, "-m", "genrun", *GENRUN_ARGS, f"trainer.max_epochs={EPOCHS}", *thread_args,
                    f"hydra.run.dir={run_dir}"], check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": src})
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]["perf/train_images_per_sec"]


def revision(src: str) -> str:
    return subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip() or "?"


def main(before_src: str, rounds: int = 6, threads: int | None = None) -> None:
    after_src = str(REPO / "src")
    after, before, fused = [], [], []
    for i in range(rounds):
        after.append(images_per_second(after_src, RUNS / f"versions_after_{i}", threads))
        before.append(images_per_second(before_src, RUNS / f"versions_before_{i}", threads))
        fused.append(plain(EPOCHS, "--fused", "--keep-freed-memory", threads=threads))
    rows = "".join(f"| {i} | {a:.0f} | {b:.0f} | {c:.0f} |\n"
                   for i, (a, b, c) in enumerate(zip(after, before, fused, strict=True)))

    def paired(xs, ys):
        return statistics.median(x / y for x, y in zip(xs, ys, strict=True))

    suffix = f"_{threads}thread" if threads else ""
    write_result(f"vae_throughput_versions{suffix}", f"""# VAE training throughput: this checkout against an earlier one

Command: `.venv/bin/python bench/vae_throughput_versions.py {before_src} {rounds}{f' {threads}' if threads else ''}`
(this checkout {revision(after_src)} against {revision(before_src)}; {EPOCHS} epochs of 40 batches of 128, the
first not timed; torch threads: {threads or "default"}; sides alternate)
Machine: `{json.dumps(machine())}`, load average before the run: {", ".join(f"{x:.2f}" for x in os.getloadavg())}

| round | this checkout (images/s) | earlier checkout | plain loop, fused Adam |
|---|---|---|---|
{rows}
- **this checkout / earlier: {paired(after, before):.3f}** (median of the per-round ratios).
- Like for like (against the plain fused loop, per-round medians): this checkout {paired(after, fused):.3f},
  earlier {paired(before, fused):.3f}.
""")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
