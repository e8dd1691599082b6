"""Start-up with and without genrun's hold on full garbage collections (genrun/collector.py), side by side.

Each command runs two ways, alternating, ROUNDS times (after one warm-up run of each):
  held       `genrun.cli.entry`, what the `genrun` script and `python -m genrun` run
  not held   `genrun.cli.main` with the same arguments: the same code with Python's collector as it comes
Both run under the same wrapper, which counts full (oldest-generation) collections and their time, and
reads the process's peak resident memory at exit.
Run: .venv/bin/python bench/startup_gc.py [ROUNDS]
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
from startup import ENV

WRAPPER = """
import atexit, gc, json, resource, sys, time
full = [0, 0.0]
started = {{}}
def count(phase, info):
    if info["generation"] == 2:
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            full[0] += 1
            full[1] += time.perf_counter() - started["t"]
gc.callbacks.append(count)
def report():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stderr.write("GCSTATS " + json.dumps({{"full": full[0], "full_s": full[1], "peak_mib": peak}}) + "\\n")
atexit.register(report)
from genrun.cli import {function}
sys.argv = ["genrun", *sys.argv[1:]]
sys.exit({function}())
"""


def run(function: str, args: list[str]) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", WRAPPER.format(function=function), *args], cwd=REPO, env=ENV,
                            capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    stats = json.loads(result.stderr.rsplit("GCSTATS ", 1)[1].splitlines()[0])
    return {"wall": wall, **stats}


def main(rounds: int = 6) -> None:
    vae_dir = RUNS / "startup_gc_vae"
    shutil.rmtree(vae_dir, ignore_errors=True)
    genrun(["train", "dataset.source=mini", "debug=fast_dev_run", "model.iwae_k=2"], vae_dir)
    train_dir = RUNS / "startup_gc_train"
    commands = {
        "genrun sample (VAE, 64 samples)": ["sample", f"ckpt={vae_dir}", f"hydra.run.dir={RUNS / 'startup_gc_s'}"],
        "genrun train (VAE, 1 epoch of 5 batches)": [
            "train", "dataset.source=mini", "trainer.max_epochs=1", "trainer.limit_train_batches=5",
            "trainer.limit_val_batches=1", "test=false", "num_samples=4", "model.iwae_k=2",
            f"hydra.run.dir={train_dir}"],
    }
    results = {name: {"entry": [], "main": []} for name in commands}
    for round_ in range(rounds + 1):
        for name, args in commands.items():
            for function in ("entry", "main"):
                shutil.rmtree(train_dir, ignore_errors=True)
                measured = run(function, args)
                if round_:  # the first round writes caches and is not counted
                    results[name][function].append(measured)
    rows = []
    for name, sides in results.items():
        held, plain = sides["entry"], sides["main"]

        def med(side, key):
            return statistics.median(m[key] for m in side)

        ratio = statistics.median(h["wall"] / p["wall"] for h, p in zip(held, plain, strict=True))
        rows.append(f"| `{name}` | {med(held, 'wall'):.2f} | {med(plain, 'wall'):.2f} | {ratio:.3f} | "
                    f"{med(held, 'full'):.0f} ({med(held, 'full_s'):.2f} s) | "
                    f"{med(plain, 'full'):.0f} ({med(plain, 'full_s'):.2f} s) | "
                    f"{med(held, 'peak_mib'):.0f} / {med(plain, 'peak_mib'):.0f} |\n")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header = ("| command | held (s, median) | not held (s, median) | held / not held (paired median) "
              "| full collections held (their time) | not held (their time) | peak memory held / not held (MiB) |")
    write_result("startup_gc", f"""# Start-up with and without the hold on full garbage collections

Command: `.venv/bin/python bench/startup_gc.py {rounds}` (each command {rounds} times a side, alternating, after
one uncounted round; wall seconds of the whole process)
Machine: `{json.dumps(machine())}`, load average before the run: {load}

{header}
|---|---|---|---|---|---|---|
{''.join(rows)}
"held" is `genrun.cli.entry` (the `genrun` script, `python -m genrun`): full collections wait while torch and
Lightning load, then the objects alive are frozen. "not held" is `genrun.cli.main` on the same arguments.
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
