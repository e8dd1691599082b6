"""Benchmark: wall time of `genrun evaluate` on a VAE trained for 10 epochs on the bundled MNIST digits,
first with the domain classifier to train (once per dataset), then with it cached; and the figures.

    .venv/bin/python bench/eval_wall_time.py [--workdir DIR] [--epochs 10] [--num-samples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from eval_classifier import machine  # noqa: E402

SHOWN = ("test/nll_iwae", "eval/classifier_test_acc", "eval/domain_fid", "eval/domain_fid_train_vs_test",
         "eval/kid", "eval/kid_std", "eval/kid_subset_size", "eval/kid_subsets",
         "eval/precision", "eval/recall", "eval/memorization_ratio", "eval/near_copy_fraction", "eval/coverage_kl",
         "eval/classes_covered", "eval/n_fake", "eval/n_real")


def genrun(args: list[str], cwd: Path) -> tuple[float, str]:
    """(wall seconds, stderr) of one `genrun` command."""
    env = {**os.environ, "GENRUN_DATA_DIR": str(cwd / "data")}
    env.pop("GENRUN_OUTPUT_DIR", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "genrun", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"genrun {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=1000)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(args.workdir or scratch)
        (cwd / "data").mkdir(parents=True, exist_ok=True)
        seconds, _ = genrun(["train", "model=vae", "dataset.source=mini", f"trainer.max_epochs={args.epochs}"], cwd)
        print(f"genrun train model=vae dataset.source=mini trainer.max_epochs={args.epochs}: {seconds:.1f} s")
        evaluate = ["evaluate", "model=vae", f"num_samples={args.num_samples}"]
        first, progress = genrun(evaluate, cwd)
        print(f"genrun {' '.join(evaluate)} (trains the domain classifier): {first:.1f} s")
        print("its stderr (not a terminal: stage lines and estimates, no bars):")
        print("".join(f"    {line}\n" for line in progress.splitlines()), end="")
        second, _ = genrun(evaluate, cwd)
        print(f"genrun {' '.join(evaluate)} (classifier cached): {second:.1f} s")
        likelihood_only, _ = genrun([*evaluate, "image_metrics=false"], cwd)
        print(f"genrun {' '.join(evaluate)} image_metrics=false: {likelihood_only:.1f} s")
        metrics = json.loads(sorted((cwd / "outputs" / "evaluate").glob("*/*/metrics.json"),
                                    key=lambda p: p.stat().st_mtime)[-2].read_text())["metrics"]
        print("\n| metric | value |\n|---|---|")
        for key in SHOWN:
            if key in metrics:
                print(f"| {key} | {metrics[key]:.4g} |")


if __name__ == "__main__":
    main()
