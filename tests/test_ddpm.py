"""Diffusion: the U-Net, the training objective, one checkpoint sampled by DDPM and DDIM, guidance, bad input."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch

from conftest import MINI, genrun_in_process, run_dirs
from genrun.data.base import InMemoryDataModule
from genrun.data.lightning import LightningData
from genrun.errors import GenrunError
from genrun.families.diffusion import CPU_SLICE, DiffusionKnobs, DiffusionPipeline, UNet
from genrun.models.ddpm import DDPMModule

TINY = {"base_width": 8, "channel_mults": [1, 2], "attention_levels": [1], "dropout": 0.0}


def test_the_unet_keeps_the_image_shape_and_refuses_sizes_it_cannot_halve():
    for size, mults in ((28, [1, 2, 2]), (32, [1, 2, 2, 2]), (8, [1, 2])):
        net = UNet(1, size, base_width=8, channel_mults=mults, num_classes=3)
        x = torch.randn(2, 1, size, size)
        assert net(x, torch.tensor([0, 999]), torch.tensor([0, 3])).shape == x.shape
    with pytest.raises(GenrunError, match=r"^dataset.image_size=28: the U-Net halves it 3 times .* divisible by 8"):
        UNet(1, 28, channel_mults=[1, 2, 2, 2])
    with pytest.raises(GenrunError, match=r"^model=ddpm needs images"):
        UNet(None, None)  # what a dataset of points (toy2d) hands it


class Patterns(InMemoryDataModule):
    """8x8 images, each a vertical or horizontal half white: a distribution a tiny U-Net learns in seconds."""

    def load(self):
        g = torch.Generator().manual_seed(0)
        x = torch.zeros(256, 1, 8, 8)
        y = torch.randint(2, (256,), generator=g)
        x[y == 0, :, :, :4] = 1
        x[y == 1, :, :4, :] = 1
        return {"train": (x[:224], y[:224]), "val": (x[224:], y[224:]), "test": (x[224:], y[224:])}


def _held_out_loss(module: DDPMModule, data: Patterns) -> float:
    with torch.no_grad():
        return float(module._loss(data.splits["val"], torch.Generator().manual_seed(1)))


def test_training_lowers_the_denoising_loss_quickly():
    torch.manual_seed(0)
    data = Patterns(batch_size=32)
    data.setup()
    module = DDPMModule(UNet(1, 8, num_classes=2, **TINY), optimizer=lambda params: torch.optim.Adam(params, 3e-3),
                        timesteps=100)
    before = _held_out_loss(module, data)
    L.Trainer(max_steps=80, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0).fit(module, datamodule=LightningData(data))
    after = _held_out_loss(module, data)
    assert after < 0.5 * before, (before, after)
    # The pipeline's held-out figure (what genrun evaluate and the end of training report) agrees.
    trained = module.pipeline().test_loss(data.splits["val"], 16)["test/denoising_mse"]
    fresh = DiffusionPipeline({"unet": UNet(1, 8, num_classes=2, **TINY)}, {"timesteps": 100}).test_loss(
        data.splits["val"], 16)["test/denoising_mse"]
    assert trained < 0.5 * fresh, (trained, fresh)
    # The averaged U-Net is the one the pipeline samples with, and it is not the live one.
    assert module.pipeline().unet is module.ema_unet


def _conditional_pipeline() -> DiffusionPipeline:
    torch.manual_seed(0)
    return DiffusionPipeline({"unet": UNet(1, 8, num_classes=3, **TINY).eval()}, {"timesteps": 50})


def test_guidance_zero_is_the_unconditional_model_and_ddim_eta_zero_is_deterministic():
    pipeline = _conditional_pipeline()
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2])
    unconditional = pipeline.denoise(noise, DiffusionKnobs(steps=10), None, torch.Generator().manual_seed(3))
    guided_zero = pipeline.denoise(noise, DiffusionKnobs(steps=10, guidance=0.0), labels,
                                   torch.Generator().manual_seed(4))
    conditional = pipeline.denoise(noise, DiffusionKnobs(steps=10, guidance=1.0), labels)
    assert torch.allclose(unconditional, guided_zero, atol=1e-6)
    assert not torch.allclose(unconditional, conditional, atol=1e-4)
    ddpm_a = pipeline.denoise(noise, DiffusionKnobs(sampler="ddpm", steps=10), None, torch.Generator().manual_seed(5))
    ddpm_b = pipeline.denoise(noise, DiffusionKnobs(sampler="ddpm", steps=10), None, torch.Generator().manual_seed(6))
    assert not torch.allclose(ddpm_a, ddpm_b)  # ancestral sampling draws fresh noise at every step


def test_a_sampling_batch_larger_than_a_cpu_slice_predicts_what_each_image_alone_predicts():
    """The U-Net runs big CPU batches in slices (speed): every image, label and timestep must stay paired."""
    pipeline = _conditional_pipeline()
    count = CPU_SLICE * 2 + 5
    x = torch.randn(count, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    labels = torch.arange(count) % 3
    guided = pipeline.predict(x, 20, labels, 2.0)
    alone = torch.cat([pipeline.predict(x[i : i + 1], 20, labels[i : i + 1], 2.0) for i in range(count)])
    assert guided.shape == x.shape
    assert torch.allclose(guided, alone, atol=1e-5)
    assert torch.allclose(pipeline.predict(x, 20, None, 1.0)[-1:], pipeline.predict(x[-1:], 20, None, 1.0), atol=1e-5)


def test_bad_sampling_settings_are_one_line_each():
    pipeline = _conditional_pipeline()
    for knobs, message in [
        (DiffusionKnobs(steps=51), r"^steps=51: the model was trained with 50 timesteps$"),
        (DiffusionKnobs(label=3), r"^label=3: this model has classes 0..2$"),
    ]:
        with pytest.raises(GenrunError, match=message):
            pipeline.scheduler(knobs) if knobs.steps > 50 else pipeline._labels(knobs.label, 1, 1.0)
    unconditional = DiffusionPipeline({"unet": UNet(1, 8, **TINY)}, {"timesteps": 50})
    with pytest.raises(GenrunError, match=r"^guidance=3: this model is not class-conditional"):
        unconditional._labels(None, 1, 3.0)
    with pytest.raises(GenrunError, match=r"^eta=1.5: must be between 0"):
        DiffusionKnobs(eta=1.5).check()


def test_train_then_sample_one_checkpoint_with_ddpm_and_ddim(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    code, _out, err = genrun_in_process(
        ["train", "model=ddpm", MINI, "model.base_width=8", "model.channel_mults=[1,2]", "model.attention_levels=[1]",
         "model.timesteps=50", "model.num_classes=10", "trainer.max_steps=3", "trainer.limit_val_batches=1",
         "trainer.val_check_interval=3", "trainer.limit_test_batches=1", "num_samples=4"], tmp_path, monkeypatch,
        capsys)
    assert code == 0, err
    (run,) = run_dirs(tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [image.step for image in events.Images("samples/ddim_20_steps")] == [3]  # the validation's grid
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test/denoising_mse"] > 0 and metrics["test/n_images"] == 128  # one test batch
    for extra in (["sampler=ddpm", "steps=50", "label=1"], ["sampler=ddim", "steps=5", "label=3", "guidance=3"],
                  ["mode=denoise", "steps=5", "label=0"]):
        code, _out, err = genrun_in_process(["sample", f"ckpt={run}", "num_samples=6", *extra], tmp_path,
                                            monkeypatch, capsys)
        assert code == 0, (extra, err)
    samples = sorted((tmp_path / "outputs" / "sample").glob("*/*/samples.npy"), key=lambda p: p.stat().st_mtime)
    shapes = [np.load(p).shape for p in samples]
    assert shapes[0] == (6, 1, 28, 28) and shapes[1] == (6, 1, 28, 28)
    assert shapes[2] == (6 * 5, 1, 28, 28)  # six chains of five steps: noise to image, left to right
    images = np.load(samples[1])
    assert images.min() >= 0 and images.max() <= 1
    code, _out, err = genrun_in_process(["evaluate", f"ckpt={run}", "image_metrics=false", "vlb_images=2"],
                                        tmp_path, monkeypatch, capsys)
    assert code == 0, err
    [evaluation] = run_dirs(tmp_path, "evaluate")
    metrics = json.loads((evaluation / "metrics.json").read_text())["metrics"]
    assert metrics["test/vlb_images"] == 2 and 0 < metrics["test/vlb_bits_per_dim"] < 50


class _Oracle(torch.nn.Module):
    """A "network" that knows the one image of its data: it outputs the exact noise of every x_t."""

    num_classes = 0

    def __init__(self, image: torch.Tensor, schedule):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a device to be on
        self.image, self.schedule = image * 2 - 1, schedule

    def forward(self, x, t, labels=None):
        a = self.schedule.alpha_bar(t, x)
        return (x - a.sqrt() * self.image.to(x)) / (1 - a).sqrt()


def test_variational_bound_of_an_exact_model_is_its_prior_and_decoder_terms():
    import math

    from genrun.families.diffusion_vlb import discretised_gaussian_log_likelihood, variational_bound

    levels = torch.arange(256, dtype=torch.float64) / 255 * 2 - 1
    for mean, variance in ((0.0, 0.01), (0.93, 1e-4), (-1.0, 0.3)):
        total = discretised_gaussian_log_likelihood(levels, torch.full_like(levels, mean), variance).exp().sum()
        assert float(total) == pytest.approx(1.0, abs=1e-6)  # a distribution over the 256 grey levels
    image = torch.tensor([[[0.0, 1.0], [128 / 255, 64 / 255]]])  # one 1×2×2 image
    pipeline = DiffusionPipeline({"unet": UNet(1, 8, **TINY)}, {"timesteps": 40})
    pipeline.parts["unet"] = _Oracle(image, pipeline.schedule)
    result = variational_bound(pipeline, image[None].repeat(3, 1, 1, 1), batch_size=2)
    # every reverse step is exact (KL 0): what is left is the prior's KL and the decoder's -log P
    a = pipeline.schedule.alphas_cumprod[-1]
    x0 = image.double() * 2 - 1
    prior = float((0.5 * (a * x0**2 + (1 - a) - 1 - torch.log(1 - a))).sum())
    half_bin = (1 / 255) / math.sqrt(float(pipeline.schedule.betas[0]))
    inner = math.erf(half_bin / math.sqrt(2))  # P(bin) for the two inner pixels
    outer = 0.5 * (1 + inner)  # the edge pixels' bins reach to infinity on one side
    decoder = -(2 * math.log(outer) + 2 * math.log(inner))
    assert result["test/vlb_nats"] == pytest.approx(prior + decoder, rel=1e-6)
    assert result["test/vlb_bits_per_dim"] == pytest.approx((prior + decoder) / (4 * math.log(2)), rel=1e-6)
    assert result["test/vlb_images"] == 3
