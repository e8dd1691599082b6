"""Noise schedulers against closed forms: the forward marginal, the respaced posterior, DDIM's extremes."""

from __future__ import annotations

import pytest
import torch

from genrun.errors import GenrunError
from genrun.sampling.schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedule, timesteps_for


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_marginal_of_add_noise_is_the_chain_of_single_steps(kind):
    """q(x_t|x_0) must be what t single steps N(√(1−β) x, β) give: mean scale Π√(1−β), variance by recursion."""
    schedule = NoiseSchedule(1000, kind)
    for t in (0, 1, 10, 500, 999):
        scale, variance = 1.0, 0.0
        for beta in schedule.betas[: t + 1].tolist():
            scale, variance = scale * (1 - beta) ** 0.5, (1 - beta) * variance + beta
        x0, noise = torch.full((1, 1), 3.0, dtype=torch.float64), torch.ones((1, 1), dtype=torch.float64)
        assert schedule.add_noise(x0, torch.zeros_like(noise), t).item() == pytest.approx(3.0 * scale, rel=1e-9)
        noise_part = schedule.add_noise(torch.zeros_like(x0), noise, t).item()
        assert noise_part**2 == pytest.approx(variance, rel=1e-9)
    assert schedule.alphas_cumprod[-1] < 1e-3  # the last step is (nearly) pure noise


def test_network_outputs_convert_back_to_x0_and_noise_for_every_prediction_type():
    torch.manual_seed(0)
    x0, noise, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64), torch.tensor(
        [0, 10, 400, 999])
    for prediction in ("eps", "x0", "v"):
        schedule = NoiseSchedule(1000, "cosine", prediction)
        x_t = schedule.add_noise(x0, noise, t)
        got_x0, got_noise = schedule.split(schedule.target(x0, noise, t), x_t, t)
        assert torch.allclose(got_x0, x0, atol=1e-6) and torch.allclose(got_noise, noise, atol=1e-6), prediction


def _gaussian_posterior_variance(a_s: float, a_t: float) -> float:
    """Var(x_s | x_t, x_0) by conditioning the joint Gaussian of (x_s, x_t) given x_0, computed directly."""
    alpha = a_t / a_s
    var_s, var_t, cov = 1 - a_s, 1 - a_t, alpha**0.5 * (1 - a_s)
    return var_s - cov**2 / var_t


@pytest.mark.parametrize("steps", [1000, 50, 7])
def test_respaced_ddpm_uses_the_posterior_variance_of_the_kept_steps(steps):
    schedule = NoiseSchedule(1000, "linear")
    scheduler = DDPMScheduler(schedule)
    timesteps = scheduler.set_timesteps(steps)
    like = torch.zeros(1, dtype=torch.float64)
    for t in timesteps.tolist()[:-1]:
        s = scheduler.previous(t)
        _c0, _ct, variance = scheduler.posterior(t, like)
        expected = _gaussian_posterior_variance(float(schedule.alphas_cumprod[s]), float(schedule.alphas_cumprod[t]))
        assert float(variance) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_an_exact_denoiser_of_a_single_image_samples_that_image(sampler, prediction):
    """If all data is one image, the true network output is known in closed form: every chain must end there."""
    schedule = NoiseSchedule(1000, "cosine", prediction)
    target = torch.tensor([[0.5, -0.25, 0.9]], dtype=torch.float64)
    scheduler = DDPMScheduler(schedule) if sampler == "ddpm" else DDIMScheduler(schedule, eta=0.5)
    scheduler.set_timesteps(25)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(target.shape, generator=generator, dtype=torch.float64)
    for t in scheduler.timesteps.tolist():
        a = schedule.alpha_bar(t, x)
        noise = (x - a.sqrt() * target) / (1 - a).sqrt()
        x = scheduler.step(schedule.target(target, noise, t), t, x, generator)
    assert torch.allclose(x, target, atol=1e-6)


def test_ddim_with_eta_zero_is_deterministic_and_eta_one_is_ddpm():
    schedule = NoiseSchedule(1000, "linear")
    x, output = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    ddim = DDIMScheduler(schedule, clip_sample=False, eta=0.0)
    ddim.set_timesteps(20)
    t = int(ddim.timesteps[3])
    first = ddim.step(output, t, x, torch.Generator().manual_seed(1))
    assert torch.equal(first, ddim.step(output, t, x, torch.Generator().manual_seed(2)))
    ddpm, ddim1 = DDPMScheduler(schedule, clip_sample=False), DDIMScheduler(schedule, clip_sample=False, eta=1.0)
    ddpm.set_timesteps(20)
    ddim1.set_timesteps(20)
    z = torch.randn(2, 5, dtype=torch.float64)
    assert torch.allclose(ddpm.step(output, t, x, noise=z), ddim1.step(output, t, x, noise=z), atol=1e-10)


def test_timestep_spacings_and_their_limits():
    assert timesteps_for(4, 1000, "trailing").tolist() == [999, 749, 499, 249]
    assert timesteps_for(4, 1000, "leading").tolist() == [750, 500, 250, 0]
    assert timesteps_for(4, 1000, "linspace").tolist() == [999, 666, 333, 0]
    assert timesteps_for(1000, 1000).tolist() == list(range(999, -1, -1))
    for bad in (0, 1001):
        with pytest.raises(GenrunError, match=f"steps={bad}: must be between 1 and the 1000"):
            timesteps_for(bad, 1000)
    with pytest.raises(GenrunError, match="eta=1.5"):
        DDIMScheduler(NoiseSchedule(10), eta=1.5)
