"""The pieces that keep genrun's training step lean: cheap training scalars and fused optimisers."""

from __future__ import annotations

import os
import sys

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from genrun.errors import GenrunError
from genrun.models.lean_module import LeanLightningModule
from genrun.models.optim import build_optimizer
from genrun.models.train_scalars import TrainScalars


class _RecordingLogger:
    def __init__(self):
        self.written: list[tuple[dict, int]] = []

    def log_metrics(self, metrics, step):
        self.written.append((metrics, step))


class _Recorder(L.LightningModule):
    """Collects what TrainScalars hands to `self.log` and to the loggers, with a trainer stand-in that says
    when Lightning's logger would write."""

    def __init__(self, logs_now: bool):
        super().__init__()
        self.logged: list[tuple[str, float, dict]] = []
        self.logger_ = _RecordingLogger()
        connector = type("Connector", (), {"should_update_logs": logs_now})()
        self._fake_trainer = type("FakeTrainer", (), {"fast_dev_run": False, "_logger_connector": connector,
                                                      "loggers": [self.logger_], "global_step": 7})()

    @property
    def trainer(self):
        return self._fake_trainer

    def log(self, name, value, **kwargs):
        self.logged.append((name, float(value), kwargs))


def test_epoch_means_are_weighted_by_batch_size_and_names_may_come_and_go():
    scalars = TrainScalars()
    module = _Recorder(logs_now=False)
    scalars.update(module, {"train/d_loss": torch.tensor(1.0), "train/g_loss": torch.tensor(10.0)}, 100)
    scalars.update(module, {"train/d_loss": torch.tensor(4.0)}, 50)  # a discriminator-only step
    scalars.update(module, {"train/d_loss": torch.tensor(2.0), "train/g_loss": torch.tensor(20.0)}, 50)
    means = scalars.epoch_means()
    assert means["train/d_loss"].item() == pytest.approx((100 * 1 + 50 * 4 + 50 * 2) / 200)
    assert means["train/g_loss"].item() == pytest.approx((100 * 10 + 50 * 20) / 150)
    assert module.logged == []  # no step was a logging step

    scalars.log_epoch(module)
    logged = {name: (value, kwargs) for name, value, kwargs in module.logged}
    assert logged["train/d_loss"][0] == pytest.approx(2.0)
    assert logged["train/d_loss"][1]["on_epoch"] and logged["train/d_loss"][1]["sync_dist"]
    assert not logged["train/d_loss"][1].get("prog_bar")  # the bar shows step values, not last epoch's mean
    assert scalars.epoch_means() == {}  # reset for the next epoch


def test_step_values_go_to_the_loggers_only_on_logging_steps_and_epoch_means_stay_detached():
    scalars = TrainScalars(prog_bar=["train/loss"])
    quiet, logging = _Recorder(logs_now=False), _Recorder(logs_now=True)
    weight = torch.tensor(3.0, requires_grad=True)
    scalars.update(quiet, {"train/loss": weight * 1, "train/kl": weight * 0}, 8)
    assert quiet.logger_.written == [] and scalars.shown() == {}
    scalars.update(logging, {"train/loss": weight * 2, "train/kl": weight * 1}, 8)
    assert logging.logger_.written == [({"train/loss_step": 6.0, "train/kl_step": 3.0}, 7)]
    assert scalars.shown() == {"train/loss_step": 6.0}  # only what the progress bar is told to show
    assert quiet.logged == logging.logged == []  # nothing went through Lightning's per-step collection
    assert not scalars.epoch_means()["train/loss"].requires_grad
    assert scalars.epoch_means()["train/loss"].item() == pytest.approx(4.5)


def _partial(target: str, **kwargs):
    return instantiate({"_target_": target, "_partial_": True, "lr": 1e-3, **kwargs})


def test_adam_is_fused_on_cpu_unless_the_config_decides():
    params = list(torch.nn.Linear(4, 3).parameters())
    assert build_optimizer(_partial("torch.optim.Adam"), params).defaults["fused"] is True
    assert build_optimizer(_partial("torch.optim.AdamW", fused=None), params).defaults["fused"] is True
    assert not build_optimizer(_partial("torch.optim.Adam", fused=False), params).defaults["fused"]
    assert not build_optimizer(_partial("torch.optim.SGD"), params).defaults.get("fused")


def _trainer(precision: str, clip: float | None = None) -> L.Trainer:
    return L.Trainer(accelerator="cpu", precision=precision, gradient_clip_val=clip, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False)


def test_param_groups_are_fused_too_but_never_under_mixed_precision():
    net = torch.nn.Linear(4, 3)
    groups = [{"params": [net.weight], "weight_decay": 0.1}, {"params": [net.bias], "weight_decay": 0.0}]
    fused = build_optimizer(_partial("torch.optim.AdamW"), groups, _trainer("32-true", clip=1.0))
    assert fused.defaults["fused"] is True and len(fused.param_groups) == 2
    # A fused step unscales fp16 gradients itself, and Lightning refuses to clip for it under autocast.
    for precision in ("16-mixed", "bf16-mixed"):
        assert not build_optimizer(_partial("torch.optim.AdamW"), groups, _trainer(precision)).defaults["fused"]


def test_explicit_fused_with_clipping_under_mixed_precision_is_refused_naming_the_key():
    params = list(torch.nn.Linear(4, 3).parameters())
    with pytest.raises(GenrunError, match=r"model\.module\.d_optimizer\.fused=true"):
        build_optimizer(_partial("torch.optim.Adam", fused=True), params, _trainer("bf16-mixed"), clipping=True,
                        key="model.module.d_optimizer")
    with pytest.raises(GenrunError, match=r"model\.module\.optimizer\.fused=true"):
        build_optimizer(_partial("torch.optim.Adam", fused=True), params, _trainer("bf16-mixed", clip=0.5))
    # Without clipping the explicit choice stands.
    assert build_optimizer(_partial("torch.optim.Adam", fused=True), params, _trainer("bf16-mixed")).defaults["fused"]


def test_a_fused_step_updates_like_the_unfused_one():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 8)
    opt_a = build_optimizer(_partial("torch.optim.Adam"), a.parameters())
    opt_b = build_optimizer(_partial("torch.optim.Adam", fused=False), b.parameters())
    for net, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


def test_lean_checkpoint_keeps_lightnings_state_key(tmp_path):
    """The key names the callback's entry in every checkpoint: caching it must not change it, or a
    checkpoint written before could not restore the callback's state."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from genrun.callbacks.lean import LeanModelCheckpoint

    settings = {"dirpath": tmp_path, "monitor": "val/loss", "mode": "min", "save_last": True}
    lean = LeanModelCheckpoint(**settings)
    assert lean.state_key == ModelCheckpoint(**settings).state_key
    assert lean.state_key is lean.state_key  # computed once


def test_lean_module_still_registers_parameters_buffers_and_submodules():
    """The fast attribute path must never bypass nn.Module's registries."""
    module = LeanLightningModule()
    module.note, module.slot, module.weight = "a", None, None
    module.note = "b"  # plain -> plain: the fast path
    module.slot = torch.nn.Linear(2, 3)  # plain -> submodule
    module.weight = torch.nn.Parameter(torch.ones(2))  # plain -> parameter
    module.register_buffer("stats", torch.zeros(2))
    module.stats = torch.ones(2)  # a buffer stays a buffer
    assert module.note == "b" and "note" not in dict(module.named_parameters())
    assert dict(module.named_children()) == {"slot": module.slot}
    assert set(dict(module.named_parameters())) == {"weight", "slot.weight", "slot.bias"}
    assert torch.equal(dict(module.named_buffers())["stats"], torch.ones(2))
    assert "slot" not in module.__dict__ and "weight" not in module.__dict__
    module.slot = None  # a registered submodule set to None stays registered, as in nn.Module
    assert "slot" in module._modules and module.slot is None
    module._current_fx_name = "training_step"  # what Lightning assigns around every hook
    assert module._current_fx_name == "training_step"


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn", "ddp_fork"])
def test_models_stepping_their_own_optimisers_get_a_ddp_that_allows_unused_parameters(strategy):
    from genrun.tasks.train import ddp_strategy_for

    class TwoNetworks(LeanLightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=ddp_strategy_for(TwoNetworks(), strategy),
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer.strategy._ddp_kwargs.get("find_unused_parameters") is True
    assert trainer.strategy._start_method == {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork"}[strategy]
    assert ddp_strategy_for(LeanLightningModule(), strategy) == strategy  # automatic optimisation: unchanged


_NVML_LOADS: list[str] = []
_RECORDING: list[bool] = []
_AUDITING: list = []


def _count_nvml_loads(event: str, args: tuple) -> None:
    if _RECORDING and event == "ctypes.dlopen" and "nvidia-ml" in str(args[0]):
        _NVML_LOADS.append(str(args[0]))


def _nvml_loads_during(work) -> int:
    """How many times `work()` tries to load NVML (Python's audit events see every ctypes library load)."""
    if _count_nvml_loads not in _AUDITING:
        sys.addaudithook(_count_nvml_loads)  # audit hooks cannot be removed; this one records only when asked
        _AUDITING.append(_count_nvml_loads)
    _NVML_LOADS.clear()
    _RECORDING.append(True)
    try:
        work()
    finally:
        _RECORDING.clear()
    return len(_NVML_LOADS)


def _without_gpu() -> bool:
    import lightning  # noqa: F401  (sets the NVML-based check, as in every training process)

    from genrun.cuda_probe import probe_is_wasted

    return probe_is_wasted()


needs_cuda_build_without_gpu = pytest.mark.skipif(
    not _without_gpu(), reason="the NVML probe costs only on a CUDA build of torch with no GPU (CI's machines)")


@needs_cuda_build_without_gpu
def test_adam_steps_try_to_load_nvml_every_step_unless_the_probe_is_lifted():
    """The premise and the remedy: under Lightning's NVML-based check, torch's Adam asks for CUDA on every step
    and, with no GPU, tries to load libnvidia-ml each time; inside `cheap_cuda_probe` it does not, and the
    variable is back afterwards."""
    from genrun.cuda_probe import NVML_CHECK, cheap_cuda_probe

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight], lr=0.1)

    def steps():
        for _ in range(5):
            optimizer.zero_grad()
            weight.square().sum().backward()
            optimizer.step()

    assert _nvml_loads_during(steps) >= 5
    with cheap_cuda_probe():
        assert NVML_CHECK not in os.environ
        assert _nvml_loads_during(steps) == 0
    assert os.environ[NVML_CHECK] == "1"
    os.environ[NVML_CHECK] = "0"  # a user's own choice is not Lightning's setting: left as it is
    try:
        with cheap_cuda_probe():
            assert os.environ[NVML_CHECK] == "0"
    finally:
        os.environ[NVML_CHECK] = "1"


@needs_cuda_build_without_gpu
def test_genrun_train_on_cpu_does_not_probe_nvml_each_step(workdir, monkeypatch, capsys):
    """A real `genrun train` of 30 Adam steps: NVML is looked for a few times while the Trainer is set up,
    not once a step, and Lightning's setting is back when the run ends."""
    from conftest import MINI, genrun_in_process
    from genrun.cuda_probe import NVML_CHECK

    result = []
    loads = _nvml_loads_during(lambda: result.append(genrun_in_process(
        ["train", "model=vae", MINI, "trainer.max_steps=30", "trainer.limit_val_batches=1", "test=false",
         "num_samples=0", "model.iwae_k=0"], workdir, monkeypatch, capsys)))
    code, _out, err = result[0]
    assert code == 0, err
    assert loads < 10, f"{loads} attempts to load NVML in a 30-step run"
    assert os.environ.get(NVML_CHECK) == "1"
