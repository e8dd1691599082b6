"""Benchmark: Gatys et al.'s optimisation (L-BFGS, 300 steps, 256 px) against fast-style inference (Johnson
et al.'s TransformerNet, one forward pass) on the same image, side by side. Johnson et al. report about
1000x on a GPU; genrun's goal is at least 100x on a CPU.

    .venv/bin/python bench/style_speed.py                         # the issue's setting
    .venv/bin/python bench/style_speed.py --steps 3 --size 64     # a quick proof that it runs

Speed does not depend on the weights, so VGG19 and the stylizer have random weights of their real sizes
(pass --weights FILE for ImageNet VGG19). Results go to bench/results/style_speed.md with the machine and
its load average (a busy machine's figures are not idle figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402
from genrun.data import photos  # noqa: E402
from genrun.families.style import StyleKnobs, StyleTransferPipeline  # noqa: E402
from genrun.nets.transformer_net import TransformerNet  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--weights", default="none", help="VGG19 weights: none (random), auto or FILE")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5, help="fast style: best of N forward passes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    content, _ = photos.load_photo("grace_hopper", size=args.size)
    style, _ = photos.load_photo("flower", size=args.size)

    pipeline = StyleTransferPipeline.from_config({"weights": args.weights})
    knobs = replace(StyleKnobs(), steps=args.steps, size=args.size, optimizer="lbfgs")
    started = time.perf_counter()
    _result, curve = pipeline.stylize(content, [style], knobs, torch.Generator().manual_seed(0))
    gatys = time.perf_counter() - started

    net = TransformerNet(width=32, residual_blocks=5).eval()
    x = content[None]
    times = []
    with torch.no_grad():
        net(x)  # warm-up
        for _ in range(args.repeats):
            started = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - started)
    fast = min(times)
    info = machine()
    h, w = content.shape[-2:]
    vgg = "VGG19 (ImageNet weights)" if "ImageNet" in pipeline.features.source else "VGG19 (random weights)"
    rows = [
        "| method | what | wall time | speed-up |",
        "|---|---|---|---|",
        f"| Gatys et al. (genrun style_transfer) | L-BFGS, {len(curve)} loss evaluations, {w}x{h} px, {vgg} "
        f"| {gatys:.1f} s | 1x |",
        f"| Johnson et al. (genrun fast_style) | one forward pass, {w}x{h} px, TransformerNet 32/5 blocks "
        f"(best of {args.repeats}) | {fast * 1000:.1f} ms | {gatys / fast:,.0f}x |",
    ]
    command = f"python bench/style_speed.py --steps {args.steps} --size {args.size} --weights {args.weights}"
    command += f" --threads {args.threads}" if args.threads else ""
    text = "\n".join([
        "# Style transfer: optimisation against a feed-forward stylizer",
        "",
        f"`{command}` on {info['date']}: {info['cpu']}, {info['cpus']} CPUs, torch {info['torch']}, "
        f"{info['threads']} threads; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        "",
        *rows,
        "",
        "Johnson et al. 2016 report about 1000x on a GPU; goal here: at least 100x on a CPU. Random weights of the "
        "real sizes (speed does not depend on them).",
        "",
    ])
    write_result("style_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
