"""VQ-VAE and its prior against the conv VAE at equal work: `model=vqvae`, then `model=vq_prior` (transformer
prior) on its codes, trained one after the other within one CPU budget (default 10 minutes of one core, the
budget of bench/results/gan_quality_baseline.md), then `genrun evaluate` on the prior's two-stage samples.

Targets (issue 13): at least 90% of the codebook in use at the end of the VQ-VAE's training (on the held-out
split), and a domain FID of the prior's samples below the conv VAE's 19.25 recorded at 10 minutes.

Protocol as the baseline's: the 5,000 bundled MNIST digits (90/10 split, seed 0), `threads=1` pinned to one
core, Lightning's `max_time` as the budget (`--vqvae-share` of it for the VQ-VAE, the rest for the prior),
`genrun evaluate num_samples=1000` against the 500 held-out digits with the cached domain classifier.

Usage: .venv/bin/python bench/vqvae_quality.py [--minutes 10] [--vqvae-share 0.4] [--num-samples 1000]
Only the full budget (--minutes 10 or more) writes bench/results/vqvae_quality.md; a shorter run (a check that
the script works: --minutes 1 --num-samples 100 --classifier-epochs 1) prints its table and records nothing.
Runs go under bench/.runs/vqvae_quality/ (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import machine, write_result

ROOT = Path(__file__).resolve().parent / ".runs" / "vqvae_quality"
BASELINE_FID = 19.25
VQVAE = ["model=vqvae"]
PRIOR = ["model=vq_prior", "model.prior=transformer"]
COMMON = ["dataset.source=mini", "trainer.max_epochs=100000", "logger=csv", "threads=1", "image_metrics=false"]


def env(classifier_epochs: int | None) -> dict:
    extra = {"GENRUN_CLASSIFIER_EPOCHS": str(classifier_epochs)} if classifier_epochs else {}
    return {**os.environ, "GENRUN_OUTPUT_DIR": str(ROOT / "outputs"), "GENRUN_DATA_DIR": str(ROOT / "data"), **extra}


def clock(seconds: float) -> str:
    """Lightning's max_time format, DD:HH:MM:SS."""
    seconds = max(1, round(seconds))
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def genrun(args: list[str], environment: dict, core: int | None) -> float:
    """Run one genrun command pinned to `core`; its wall time in seconds."""
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "genrun", *args], env=environment, capture_output=True, text=True,
                            preexec_fn=pin)
    if result.returncode != 0:
        raise SystemExit(f"genrun {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def vqvae_recipe(run_dir: Path) -> str:
    """The VQ-VAE's settings as the run recorded them."""
    import yaml

    model = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["model"]
    side = 28 // 2 ** int(model["downsamples"])
    return (f"K={model['codebook_size']}, code_dim={model['code_dim']}, width={model['width']}, {side}x{side} grid, "
            f"{model['codebook_update']} codebook")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--vqvae-share", type=float, default=0.4)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--classifier-epochs", type=int, default=None, help="only to check the script quickly")
    options = parser.parse_args()
    environment = env(options.classifier_epochs)
    core = sorted(os.sched_getaffinity(0))[0]
    vq_budget = options.minutes * 60 * options.vqvae_share
    prior_budget = options.minutes * 60 - vq_budget
    vq_dir, prior_dir = ROOT / "outputs" / "train" / "vqvae", ROOT / "outputs" / "train" / "vq_prior"
    # a fresh start, but the cached domain classifier is kept: it does not depend on the models
    for stale in (vq_dir, prior_dir, ROOT / "outputs" / ".cache" / "vq_codes"):
        subprocess.run(["rm", "-rf", str(stale)], check=True)
    load = os.getloadavg()
    genrun(["train", *VQVAE, *COMMON, f"trainer.max_time={clock(vq_budget)}", "num_samples=16",
            f"hydra.run.dir={vq_dir}"], environment, core)
    genrun(["train", *PRIOR, f"model.vqvae={vq_dir}", *COMMON, f"trainer.max_time={clock(prior_budget)}",
            "test=false", "num_samples=64", f"hydra.run.dir={prior_dir}"], environment, core)
    eval_dir = ROOT / "outputs" / "evaluate" / "vq_prior"
    genrun(["evaluate", f"ckpt={prior_dir}", f"num_samples={options.num_samples}", f"hydra.run.dir={eval_dir}"],
           environment, core)
    vq, prior, ev = metrics(vq_dir), metrics(prior_dir), metrics(eval_dir)["metrics"]
    m = vq["metrics"]
    used, fid = m["test/codes_used"], ev["eval/domain_fid"]
    table = f"""| stage | recipe | epochs | held-out figures |
|---|---|---|---|
| VQ-VAE | `{' '.join(VQVAE)}` ({vqvae_recipe(vq_dir)}), {clock(vq_budget)} | {vq['epochs']} | codes used \
**{used:.1%}**, perplexity {m['test/perplexity']:.1f}, recon MSE {m['test/recon_mse']:.4f}/pixel |
| prior | `{' '.join(PRIOR)}`, {clock(prior_budget)} | {prior['epochs']} | {ev['test/bits_per_code']:.3f} bits/code |
| samples | `genrun evaluate num_samples={options.num_samples}` | – | domain FID **{fid:.2f}** (floor \
{ev['eval/domain_fid_train_vs_test']:.2f}), precision {ev['eval/precision']:.3f}, recall {ev['eval/recall']:.3f}, \
n fake / n real {ev['eval/n_fake']:.0f} / {ev['eval/n_real']:.0f} |
"""
    verdict = (f"Codebook use {used:.1%} (target ≥ 90%: {'met' if used >= 0.9 else 'NOT met'}); domain FID {fid:.2f} "
               f"against the conv VAE's {BASELINE_FID} ({'better' if fid < BASELINE_FID else 'NOT better'}).")
    header = (f"Machine: `{json.dumps(machine())}`, load average before the run {load[0]:.2f}, {load[1]:.2f}, "
              f"{load[2]:.2f}")
    if options.minutes < 10:
        print(f"(a {options.minutes:g}-minute check, not recorded)\n{header}\n\n{table}\n{verdict}")
        return 0
    title = f"VQ-VAE + transformer prior at equal work ({options.minutes:g} CPU minutes, bundled digits)"
    write_result("vqvae_quality", f"""# {title}

Command: `.venv/bin/python bench/vqvae_quality.py --minutes {options.minutes:g} --vqvae-share {options.vqvae_share:g} \
--num-samples {options.num_samples}`
{header}

Protocol: bench/results/gan_quality_baseline.md's (5,000 bundled digits, 90/10 split, one pinned core,
`threads=1`, Lightning's `max_time`); the VQ-VAE and the prior share the budget one after the other. Held-out
figures are on the 500-digit validation split (the bundled digits have no test files).

{table}
{verdict}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
