"""Regenerate the README's pictures (docs/figures/*.png): one of each kind genrun draws.

Each comes from a real, tiny genrun run on the bundled MNIST digits (`dataset.source=mini`, offline) or the toy
ring, trained for a short while on the CPU, so the pictures are what a user gets, not drawings made for the
README. Run from the repository root:

    python docs/make_figures.py [--work DIR]

The runs go to a temporary directory (or DIR, kept) and only the finished PNGs are copied into docs/figures,
stored as greyscale where they have no colour, so the repository stays small.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"
MINI = "dataset.source=mini"
QUIET = ["test=false", "num_samples=0", "logger=csv"]


def genrun(work: Path, *args: str) -> Path:
    """Run one genrun command in `work`; return the run directory it wrote (the newest under outputs/)."""
    started = time.time()
    env = {**os.environ, "GENRUN_DATA_DIR": str(work / "data")}
    env.pop("GENRUN_OUTPUT_DIR", None)
    result = subprocess.run([sys.executable, "-m", "genrun", *args], cwd=work, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"genrun {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    task = args[0]
    runs = [p for p in (work / "outputs" / task).glob("*/*") if p.is_dir()]
    newest = max(runs, key=lambda p: p.stat().st_mtime)
    print(f"{time.time() - started:6.1f} s  genrun {' '.join(args)}", flush=True)
    return newest


def keep(source: Path, name: str) -> None:
    """Copy a picture into FIGURES (docs/figures), greyscale when it has no colour."""
    from PIL import Image, ImageChops

    with Image.open(source) as image:
        rgb = image.convert("RGB")
        r, g, b = rgb.split()
        grey = not ImageChops.difference(r, g).getbbox() and not ImageChops.difference(g, b).getbbox()
        out = rgb.convert("L") if grey else rgb
        FIGURES.mkdir(parents=True, exist_ok=True)
        out.save(FIGURES / name, optimize=True)
    print(f"         -> {FIGURES / name} {out.size[0]}x{out.size[1]}", flush=True)


def make(work: Path) -> None:
    (work / "data").mkdir(parents=True, exist_ok=True)
    vae = genrun(work, "train", "model=vae", MINI, "trainer.max_epochs=8", *QUIET)
    keep(genrun(work, "sample", f"ckpt={vae}", "num_samples=32", "nrow=8", "temperature=0.8") / "prior.png",
         "prior.png")
    keep(genrun(work, "sample", f"ckpt={vae}", "mode=reconstruct", "num_samples=16") / "reconstruct.png",
         "reconstruct.png")
    keep(genrun(work, "sample", f"ckpt={vae}", "mode=interpolate", "between=images", "steps=8", "num_samples=24")
         / "interpolate.png", "interpolate.png")

    # A small DCGAN trained briefly: strokes and rough digits, enough to read the arithmetic table.
    dcgan = genrun(work, "train", "model=dcgan", MINI, "model.width=16", "model.latent_dim=64", "model.lr=5e-4",
                   "dataset.batch_size=64", "model.ema_decay=0.99", "trainer.max_epochs=4", *QUIET)
    keep(genrun(work, "sample", f"ckpt={dcgan}/checkpoints/last.ckpt", "mode=arithmetic", "arithmetic.a=[0,1,2]",
                "arithmetic.b=[3,4]", "arithmetic.c=[5,6,7]") / "arithmetic.png", "arithmetic.png")

    # A tiny U-Net predicting x0 over 100 timesteps: a minute of CPU, and the chain already reads.
    ddpm = genrun(work, "train", "model=ddpm", MINI, "model.base_width=8", "model.channel_mults=[1,2]",
                  "model.attention_levels=[]", "model.timesteps=100", "model.prediction=x0", "model.ema_decay=0.99",
                  "dataset.batch_size=32", "trainer.max_steps=500", "threads=1", *QUIET)
    keep(genrun(work, "sample", f"ckpt={ddpm}", "mode=denoise", "steps=20", "num_samples=4") / "denoise.png",
         "denoise.png")

    classifier = genrun(work, "train", "model=classifier", MINI, "trainer.max_epochs=1", *QUIET)
    keep(genrun(work, "sample", f"ckpt={classifier}", "num_samples=24", "nrow=8") / "predict.png", "predict.png")

    evaluation = genrun(work, "evaluate", f"ckpt={vae}", "num_samples=300", "iwae_k=0",
                        f"classifier.ckpt={classifier}")
    keep(evaluation / "nearest_training_images.png", "nearest_training_images.png")

    ring = genrun(work, "train", "experiment=gan_ring8", "trainer.max_epochs=60", "test=false", "num_samples=2500",
                  "logger=csv")
    keep(ring / "samples" / "prior.png", "toy_scatter.png")


def main() -> None:
    global FIGURES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="run directory to use and keep (default: a temporary one)")
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where the pictures go (default: docs/figures)")
    args = parser.parse_args()
    FIGURES = args.figures.resolve()
    started = time.time()
    if args.work:
        make(args.work.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="genrun-figures-") as work:
            make(Path(work))
    print(f"{time.time() - started:.0f} s in all")


if __name__ == "__main__":
    main()
