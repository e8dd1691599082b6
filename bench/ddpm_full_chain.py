"""The full 1000-step ancestral DDPM chain against DDIM-50 on the checkpoint of bench/ddpm_sampling.py (the
20-minute `experiment=ddpm_mnist_cpu` run), side by side in one run: `genrun evaluate` draws the same number
of samples with each sampler and measures them against the MNIST test set. The ratio of the two evaluate
wall times is the like-for-like cost (same process, same fixed feature and nearest-neighbour work); the
sampling-only ratio subtracts the fixed cost, measured by an evaluate of DDIM-1 beside them. DDIM-50 is also
evaluated on LARGE samples (1,000: the protocol of the GAN and VAE baselines) for the comparison with them.
Run: .venv/bin/python bench/ddpm_full_chain.py [N] [LARGE]   (after bench/ddpm_sampling.py has trained its run)
"""

from __future__ import annotations

import json
import sys

from common import RUNS, machine, mnist_test_dir, write_result
from ddpm_sampling import evaluate

SETTINGS = [("ddim", 1), ("ddim", 50), ("ddpm", 1000)]


BASELINES = {"DCGAN": 16.97, "conv_vae": 19.25}  # bench/results/gan_quality_baseline.md, 1,000 samples


def main(n: int = 200, large: int = 1000) -> None:
    data_dir = mnist_test_dir()
    run_dir = RUNS / "ddpm_mnist_cpu"
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        sys.exit(f"{run_dir}: no trained run; run bench/ddpm_sampling.py first")
    results = {steps: (sampler, *evaluate(run_dir, sampler, steps, n, data_dir)) for sampler, steps in SETTINGS}
    fixed = results[1][2]
    large_metrics, large_seconds = (results[50][1:] if large == n else evaluate(run_dir, "ddim", 50, large, data_dir))
    large_fid = large_metrics["eval/domain_fid"]
    verdicts = ", ".join(f"{'better' if large_fid < fid else 'NOT better'} than {name}'s {fid}"
                         for name, fid in BASELINES.items())
    unrun = "" if large == n else (f" The full chain on {large:,} samples was not run (about {large / n:.0f} "
                                   f"times its {n}-sample row above).")
    rows, nan = [], float("nan")
    for steps in (50, 1000):
        sampler, metrics, seconds = results[steps]
        sampling = max(seconds - fixed, 1e-9)
        rows.append(f"| {sampler} | {steps} | {seconds:.0f} | {sampling:.0f} | {sampling * 1000 / n / 60:.1f} | "
                    f"{metrics['eval/domain_fid']:.2f} | {metrics['eval/kid']:.4f} | "
                    f"{metrics.get('eval/precision', nan):.3f} | {metrics.get('eval/recall', nan):.3f} |")
    ddim, full = results[50], results[1000]
    speed_all = full[2] / ddim[2]
    speed_sampling = (full[2] - fixed) / max(ddim[2] - fixed, 1e-9)
    fid_gap = ddim[1]["eval/domain_fid"] / full[1]["eval/domain_fid"] - 1
    side = "above" if fid_gap > 0 else "below"
    write_result("ddpm_full_chain", f"""# DDPM on CPU: the full 1000-step chain against DDIM-50

Command: `.venv/bin/python bench/ddpm_full_chain.py {n} {large}`
Machine: `{json.dumps(machine())}`

The checkpoint of bench/results/ddpm_sampling.md (20 minutes of `experiment=ddpm_mnist_cpu`). Each row:
`genrun evaluate ckpt=RUN sampler=S steps=K num_samples={n}`, {n} samples against {n} MNIST test images in the
features of genrun's digit classifier. "Sampling s" subtracts the evaluate of DDIM-1 ({fixed:.0f} s: start-up,
features, nearest neighbours), which does the same fixed work with one network call per sample.

| sampler | steps | evaluate wall s | sampling s | min / 1,000 images | domain FID | KID | precision | recall |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

DDIM-50 against the full chain: {speed_sampling:.1f}x faster sampling ({speed_all:.1f}x whole evaluate, like for like);
its domain FID is {abs(fid_gap) * 100:.0f}% {side} the full chain's (goal: within 20%, at least 15x faster).

## DDIM-50 on {large:,} samples, the baselines' protocol

`genrun evaluate ckpt=RUN sampler=ddim steps=50 num_samples={large}` ({large_seconds:.0f} s whole evaluate,
{large_metrics['eval/n_fake']:.0f} samples against {large_metrics['eval/n_real']:.0f} MNIST test images): domain FID
**{large_fid:.2f}**, KID {large_metrics['eval/kid']:.4f}, precision {large_metrics.get('eval/precision', nan):.3f},
recall {large_metrics.get('eval/recall', nan):.3f}: {verdicts} (bench/results/gan_quality_baseline.md, 10
minutes of one core, 1,000 samples against the 500 held-out bundled digits; the DDPM trained 20 minutes on
two cores).{unrun}
""")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
