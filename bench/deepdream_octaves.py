"""Benchmark: DeepDream's wall time per octave at 512 px (long side) and its peak memory, with InceptionV3.

    .venv/bin/python bench/deepdream_octaves.py                          # 512 px, 4 octaves x 10 iterations
    .venv/bin/python bench/deepdream_octaves.py --size 128 --iterations 1  # a quick proof that it runs

Wall time does not depend on the weights, so InceptionV3 has random weights (pass --weights FILE for
ImageNet's). Peak memory is the process's peak resident set (ru_maxrss) above what it held before the dream,
on CUDA torch.cuda.max_memory_allocated; divided by the working image's pixels it gives the bytes per pixel
behind configs/model/deepdream.yaml's max_pixels (images over it are refused before any work, limit named).
Results go to bench/results/deepdream_octaves.md with the machine and its load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402
from genrun.data import photos  # noqa: E402
from genrun.errors import GenrunError  # noqa: E402
from genrun.families.deepdream import DeepDreamPipeline, DreamKnobs  # noqa: E402


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--weights", default="none", help="InceptionV3 weights: none (random), auto or FILE")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]
    pipeline = DeepDreamPipeline.from_config({"weights": args.weights, "fallback": "random_inception"})
    image, _ = photos.load_photo("grace_hopper", size=args.size)
    knobs = DreamKnobs(octaves=args.octaves, iterations=args.iterations)
    pipeline.features.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_rss_bytes()
    started = time.perf_counter()
    _dream, _strip, record = pipeline.dream(image, knobs, torch.Generator().manual_seed(0), device)
    total = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes() - before)
    pixels = image.shape[-1] * image.shape[-2]
    limit = 4_000_000
    huge = 8000
    try:
        photos.check_pixels(huge, huge, limit, f"size={huge}", "model.max_pixels")
        refusal = "not refused (!)"
    except GenrunError as err:
        refusal = f"refused before any work: `{err}`"
    info = machine()
    rows = ["| octave | size (w x h) | iterations | wall time | objective start -> end |", "|---|---|---|---|---|"]
    for k, octave in enumerate(record["octaves"]):
        values = octave["objective"]
        rows.append(f"| {k + 1} | {octave['width']}x{octave['height']} | {args.iterations} | {octave['seconds']:.2f} s "
                    f"| {values[0]:.3g} -> {values[-1]:.3g} |")
    command = f"python bench/deepdream_octaves.py --size {args.size} --octaves {args.octaves} " \
              f"--iterations {args.iterations} --weights {args.weights} --device {args.device}"
    command += f" --threads {args.threads}" if args.threads else ""
    text = "\n".join([
        "# DeepDream: wall time per octave and peak memory (InceptionV3)",
        "",
        f"`{command}` on {info['date']}: {info['cpu']}, {info['cpus']} CPUs, torch {info['torch']}, "
        f"{info['threads']} threads; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        f"Features: {pipeline.features.source}; layers {record['layers']}.",
        "",
        *rows,
        "",
        f"Total {total:.1f} s. Peak memory above the start ({'CUDA allocated' if device.type == 'cuda' else 'RSS'}): "
        f"{peak / 2**20:,.0f} MiB for {image.shape[-1]}x{image.shape[-2]} = {pixels:,} pixels "
        f"({peak / pixels:,.0f} bytes per pixel at the largest octave).",
        f"An {huge}x{huge} image with max_pixels={limit:,}: {refusal}",
        "",
    ])
    write_result("deepdream_octaves", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
