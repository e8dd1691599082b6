"""Noise schedules and the samplers that walk them back, kept apart from any network.

As in diffusers, a scheduler knows the forward process (`add_noise`) and how to take one reverse step
from a network's output (`step`); the network only predicts. One trained model samples with either:

- `DDPMScheduler` (Ho et al. 2020): ancestral sampling, on all T trained steps or on a respaced subset
  (Nichol & Dhariwal 2021): between kept steps s < t the forward process has ᾱ_t/ᾱ_s as its α, so the
  posterior q(x_s | x_t, x_0) keeps its closed form with β = 1 − ᾱ_t/ᾱ_s.
- `DDIMScheduler` (Song et al. 2021, eq. 12): η = 0 is deterministic, η = 1 has DDPM's variance.

Timestep spacing decides which of the T steps a short chain visits; it matters for DDIM's quality at few
steps (Lin et al. 2024, diffusers issue 7401): "trailing" (the default) ends on the last trained step T−1,
so the chain starts from pure noise; "leading" and "linspace" are the older choices, kept to compare.
"""

from __future__ import annotations

import math

import torch

from genrun.errors import GenrunError

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "x0", "v")
SPACINGS = ("trailing", "leading", "linspace")


def betas_for(schedule: str, steps: int) -> torch.Tensor:
    """β_1..β_T in float64: linear 1e-4 → 0.02 scaled to T (Ho et al.), or cosine ᾱ (Nichol & Dhariwal)."""
    if schedule == "linear":
        scale = 1000 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise GenrunError(f"model.schedule={schedule!r}: choose one of {', '.join(SCHEDULES)}")


class NoiseSchedule:
    """The forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), t = 0..T−1, and the conversions
    between what a network may predict: the noise ε, the clean x_0, or v = √ᾱ ε − √(1−ᾱ) x_0."""

    def __init__(self, steps: int = 1000, schedule: str = "linear", prediction: str = "eps"):
        if int(steps) < 2:
            raise GenrunError(f"model.timesteps={steps}: a diffusion needs at least 2 steps")
        if prediction not in PREDICTIONS:
            raise GenrunError(f"model.prediction={prediction!r}: choose one of {', '.join(PREDICTIONS)}")
        self.steps, self.schedule, self.prediction = int(steps), schedule, prediction
        self.betas = betas_for(schedule, self.steps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)

    def alpha_bar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t shaped to broadcast over a batch like `like` (t < 0 means before any noise: 1)."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long()
        values = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))
        values = values.to(device=like.device, dtype=like.dtype)
        return values.reshape(-1, *([1] * (like.dim() - 1))) if values.dim() else values

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """What the network is trained to output at (x_t, t) under this schedule's prediction type."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        a = self.alpha_bar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def split(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, ε) implied by the network's output at x_t."""
        a = self.alpha_bar(t, x_t)
        if self.prediction == "eps":
            return (x_t - (1 - a).sqrt() * output) / a.sqrt(), output
        if self.prediction == "x0":
            return output, (x_t - a.sqrt() * output) / (1 - a).sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * output, (1 - a).sqrt() * x_t + a.sqrt() * output


def timesteps_for(steps: int, trained: int, spacing: str = "trailing") -> torch.Tensor:
    """`steps` of the `trained` timesteps, descending, as a sampler visits them."""
    if not 1 <= int(steps) <= trained:
        raise GenrunError(f"steps={steps}: must be between 1 and the {trained} trained timesteps")
    if spacing not in SPACINGS:
        raise GenrunError(f"spacing={spacing!r}: choose one of {', '.join(SPACINGS)}")
    if spacing == "trailing":
        chosen = torch.round(torch.arange(trained, 0, -trained / steps, dtype=torch.float64)) - 1
    elif spacing == "leading":
        chosen = torch.arange(0, steps, dtype=torch.float64).mul(trained // steps).flip(0)
    else:
        chosen = torch.linspace(0, trained - 1, steps, dtype=torch.float64).round().flip(0)
    return chosen.long()


class _Scheduler:
    """A reverse chain over `timesteps`; `step` maps x_t to x_prev, the next timestep's sample."""

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True):
        self.schedule, self.clip_sample = schedule, bool(clip_sample)
        self.timesteps: torch.Tensor = torch.empty(0, dtype=torch.long)
        self._previous: dict[int, int] = {}
        self.set_timesteps(schedule.steps)

    def set_timesteps(self, steps: int, spacing: str = "trailing") -> torch.Tensor:
        self.timesteps = timesteps_for(steps, self.schedule.steps, spacing)
        later = self.timesteps.tolist()
        self._previous = dict(zip(later, [*later[1:], -1], strict=True))
        return self.timesteps

    def previous(self, t: int) -> int:
        return self._previous[int(t)]

    def _x0_and_eps(self, output, t: int, x_t):
        x0, eps = self.schedule.split(output, x_t, t)
        if self.clip_sample:  # images live in [-1, 1]; ε is recomputed so the step stays consistent
            x0 = x0.clamp(-1, 1)
            a = self.schedule.alpha_bar(t, x_t)
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return x0, eps


class DDPMScheduler(_Scheduler):
    """Ancestral sampling from the posterior q(x_s | x_t, x̂_0); variance "small" (β̃, the posterior's own)
    or "large" (β), both from Ho et al."""

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True, variance: str = "small"):
        if variance not in ("small", "large"):
            raise GenrunError(f"variance={variance!r}: choose small or large")
        self.variance = variance
        super().__init__(schedule, clip_sample)

    def posterior(self, t: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(coefficient of x̂_0, coefficient of x_t, variance) of q(x_s | x_t, x_0), s the previous step."""
        s = self.previous(t)
        a_t, a_s = self.schedule.alpha_bar(t, like), self.schedule.alpha_bar(s, like)
        alpha = a_t / a_s
        beta = 1 - alpha
        c0 = a_s.sqrt() * beta / (1 - a_t)
        ct = alpha.sqrt() * (1 - a_s) / (1 - a_t)
        variance = beta * (1 - a_s) / (1 - a_t) if self.variance == "small" else beta
        return c0, ct, variance

    def step(self, output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        x0, _eps = self._x0_and_eps(output, t, x_t)
        c0, ct, variance = self.posterior(t, x_t)
        mean = c0 * x0 + ct * x_t
        if self.previous(t) < 0:
            return mean
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return mean + variance.sqrt() * noise


class DDIMScheduler(_Scheduler):
    """x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z, σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)."""

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True, eta: float = 0.0):
        if not 0.0 <= float(eta) <= 1.0:
            raise GenrunError(f"eta={eta}: must be between 0 (deterministic DDIM) and 1 (DDPM-like)")
        self.eta = float(eta)
        super().__init__(schedule, clip_sample)

    def step(self, output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        x0, eps = self._x0_and_eps(output, t, x_t)
        s = self.previous(t)
        a_t, a_s = self.schedule.alpha_bar(t, x_t), self.schedule.alpha_bar(s, x_t)
        sigma = self.eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).sqrt()
        x_s = a_s.sqrt() * x0 + (1 - a_s - sigma**2).clamp(min=0).sqrt() * eps
        if self.eta == 0 or s < 0:
            return x_s
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return x_s + sigma * noise


SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}
