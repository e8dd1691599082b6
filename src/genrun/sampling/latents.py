"""Latent-space utilities every latent model shares: drawing (temperature, truncation), interpolation
(linear, slerp) and vector arithmetic. Latents are drawn on the CPU from a seeded generator, so a seed
gives the same latents on every device.
"""

from __future__ import annotations

import torch

from genrun.errors import GenrunError

INTERPOLATIONS = ("linear", "slerp")
TRUNCATION_ROUNDS = 100


def draw_latents(n: int, dim: int, temperature: float = 1.0, truncation: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) latents; entries beyond ±truncation re-drawn (Brock et al. 2019); then scaled by temperature."""
    z = torch.randn(n, dim, generator=generator)
    if truncation is not None:
        if truncation <= 0:
            raise GenrunError(f"truncation={truncation}: must be positive (or null for none)")
        for _ in range(TRUNCATION_ROUNDS):
            outside = z.abs() > truncation
            if not outside.any():
                break
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
        # For a tiny psi a few entries may still lie outside: the truncated normal is then nearly uniform.
        outside = z.abs() > truncation
        z[outside] = (torch.rand(int(outside.sum()), generator=generator) * 2 - 1) * truncation
    return z * temperature


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for latent spaces), row by row."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate_at(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, kind: str) -> torch.Tensor:
    """rows × len(t) × D points at fractions `t` of the way from each row of `a` to the same row of `b`
    (a path of any length can be drawn in pieces, a slice of `t` at a time)."""
    if kind not in INTERPOLATIONS:
        raise GenrunError(f"interpolation={kind}: choose {' or '.join(INTERPOLATIONS)}")
    t = t.to(a.device, a.dtype).view(1, -1, 1)
    steps = t.shape[1]
    a, b = a.unsqueeze(1), b.unsqueeze(1)
    if kind == "linear":
        return a + t * (b - a)
    return slerp(a.expand(-1, steps, -1), b.expand(-1, steps, -1), t.expand(a.shape[0], steps, 1))


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, kind: str) -> torch.Tensor:
    """rows × steps × D points from each row of `a` to the same row of `b`, ends included."""
    return interpolate_at(a, b, torch.linspace(0, 1, steps), kind)


def arithmetic(z: torch.Tensor, a: list[int], b: list[int], c: list[int]) -> torch.Tensor:
    """mean(z[a]) − mean(z[b]) + mean(z[c]) (Radford et al. 2015, §6.3), indices checked against z."""
    for name, indices in (("a", a), ("b", b), ("c", c)):
        if not indices or any(not 0 <= i < len(z) for i in indices):
            raise GenrunError(f"arithmetic.{name}={list(indices)}: indices must be in 0..{len(z) - 1}")
    return z[a].mean(0) - z[b].mean(0) + z[c].mean(0)
