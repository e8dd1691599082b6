"""PixelCNN sampling speed: 64 digits drawn the naive way (the whole net once per pixel) against genrun's
cached raster sampler (a row of the vertical stack and a column of the horizontal stack per step), side by
side in one run, on the net of configs/model/pixelcnn.yaml (28x28, 256 levels; its weights do not change
the work, so a fresh net is timed).

The naive way costs the same full pass at every position whatever is drawn, so `--naive-rows R` times it on
the first R rows of the image (each pass over the whole 28x28 grid) and scales by 28/R; R=28 draws it all.
Both ways take the same random numbers in the same order, so the rows both drew must be identical: checked.

Run: .venv/bin/python bench/pixelcnn_sampling.py [--naive-rows R] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from omegaconf import OmegaConf

from common import machine, write_result

SAMPLES, SIZE = 64, 28


def net_from_config():
    from genrun.configs import config_dir
    from genrun.nets.pixelcnn import GatedPixelCNN

    cfg = OmegaConf.load(config_dir() / "model" / "pixelcnn.yaml")
    torch.manual_seed(0)
    sizes = {key: int(cfg[key]) for key in ("width", "layers", "kernel", "embed_dim")}
    return GatedPixelCNN(1, int(cfg.levels), **sizes).eval(), sizes


def main(naive_rows: int, threads: int | None) -> None:
    from genrun.sampling.raster import sample

    if threads:
        torch.set_num_threads(threads)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    net, sizes = net_from_config()
    shape = (SAMPLES, 1, SIZE, SIZE)
    start = time.perf_counter()
    cached = sample(net, shape, 1.0, torch.Generator().manual_seed(0), batch_size=SAMPLES)
    cached_s = time.perf_counter() - start
    rows = max(1, min(SIZE, naive_rows))
    known = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.bool)
    known[..., rows:, :] = True  # rows below R are not drawn; every pass still runs on the whole grid
    start = time.perf_counter()
    naive = sample(net, shape, 1.0, torch.Generator().manual_seed(0), known=known,
                   start=torch.zeros(shape, dtype=torch.long), batch_size=SAMPLES, method="naive")
    naive_s = (time.perf_counter() - start) * SIZE / rows
    same = torch.equal(cached[:, :, :rows], naive[:, :, :rows])
    if not same:
        raise SystemExit("the two samplers drew different values: the cache is not exact")
    ratio = naive_s / cached_s
    timed = "all 28 rows" if rows == SIZE else f"the first {rows} of 28 rows, scaled by 28/{rows}"
    command = f"bench/pixelcnn_sampling.py --naive-rows {naive_rows}" + (f" --threads {threads}" if threads else "")
    cached_row = "genrun (cached: one vertical row per image row, one horizontal column per pixel)"
    write_result("pixelcnn_sampling", f"""# PixelCNN sampling: naive (a full pass per pixel) vs genrun's cached sampler

Command: `.venv/bin/python {command}`
({SAMPLES} samples of 28x28 at 256 levels in one batch, temperature 1, the net of configs/model/pixelcnn.yaml:
`{json.dumps(sizes)}`; naive timed on {timed})
Machine: `{json.dumps(machine())}`, load average before the run: {load}

| sampler | seconds for {SAMPLES} images | images/s |
|---|---|---|
| naive: the whole net at each of 784 positions | {naive_s:.1f} | {SAMPLES / naive_s:.3f} |
| {cached_row} | {cached_s:.1f} | {SAMPLES / cached_s:.2f} |

- **speed-up: {ratio:.1f}x** (goal ≥ 5x); the rows both drew are identical under the same seed: {same}.
- The cached sampler runs on one CPU thread (its steps are small); the naive one on {torch.get_num_threads()}.
""")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-rows", type=int, default=2, help="rows the naive sampler draws (28: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    main(args.naive_rows, args.threads)
