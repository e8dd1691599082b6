"""A checkpoint is data, never code; nothing a user did is lost; nothing goes wrong silently.

Crafted checkpoints and run directories, interrupted and failed runs, and settings that would only fail
after training, each through the real `genrun` entry point.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import GENRUN, MINI, genrun_in_process, run_dirs, tree_state
from genrun.checkpoint import atomic_save


@pytest.fixture
def vae_run(trained_vae, tmp_path) -> Path:
    """A private copy of the shared short VAE run (tests here change or damage it)."""
    (source,) = run_dirs(trained_vae)
    copy = tmp_path / "outputs" / "train" / "vae_mnist" / source.name
    shutil.copytree(source, copy)
    (tmp_path / "data").mkdir(exist_ok=True)
    return copy


def _payload(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[leaf] = value


PAYLOADS = [
    ("model.module.net", lambda m, f: {"_target_": "builtins.open", "_args_": [str(m), "w"]}),
    ("model.module.net", lambda m, f: {"_target_": "torch.save", "obj": 1, "f": str(m)}),
    ("model.module.net.activation", lambda m, f: {"_target_": "pathlib.Path.touch", "_args_": [str(m)]}),
    ("model.module.optimizer", lambda m, f: {"_target_": "shutil.copyfile", "_partial_": True, "src": str(f),
                                             "dst": str(m)}),
    ("dataset", lambda m, f: {"_target_": "torch.load", "f": str(f), "weights_only": False}),
    ("callbacks.model_checkpoint", lambda m, f: {"_target_": "builtins.open", "_args_": [str(m), "w"]}),
]


@pytest.mark.parametrize(("key", "make"), PAYLOADS, ids=[f"{k}-{i}" for i, (k, _m) in enumerate(PAYLOADS)])
@pytest.mark.parametrize("task", ["sample", "evaluate"])
def test_a_crafted_target_in_a_checkpoint_is_refused_before_anything_runs(vae_run, monkeypatch, capsys, task,
                                                                          key, make):
    marker = vae_run.parent / "payload-ran"
    payload = _payload(vae_run)
    _set(payload["genrun"]["config"], key, make(marker, vae_run / "checkpoints" / "last.ckpt"))
    crafted = vae_run.parent / "crafted.ckpt"
    atomic_save(payload, crafted)  # a valid digest: the file is well formed, only its config is hostile
    code, _out, err = genrun_in_process([task, f"ckpt={crafted}"], vae_run.parents[3], monkeypatch, capsys)
    assert code == 1
    target = make(marker, "")["_target_"]
    assert f"{key}._target_='{target}' is not one of genrun's buildable classes" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not marker.exists()


def test_a_run_directory_naming_code_in_its_overrides_is_refused_on_resume(vae_run, monkeypatch, capsys):
    marker = vae_run.parent / "payload-ran"
    overrides = vae_run / ".hydra" / "overrides.yaml"
    before = tree_state(vae_run)
    for line in [f"+callbacks.evil={{_target_:builtins.open,_args_:['{marker}',w]}}",
                 "model.module.optimizer._target_=torch.save"]:
        overrides.write_text(before[".hydra/overrides.yaml"].decode() + f"- {line}\n")
        code, _out, err = genrun_in_process(["train", f"resume={vae_run}"], vae_run.parents[3], monkeypatch, capsys)
        assert code == 1 and "refused" in err and "is not one of genrun's buildable classes" in err, err
        assert not marker.exists()
    overrides.write_text(before[".hydra/overrides.yaml"].decode()
                         + "- hydra.callbacks.x._target_=builtins.open\n")
    code, _out, err = genrun_in_process(["train", f"resume={vae_run}"], vae_run.parents[3], monkeypatch, capsys)
    assert code == 1 and "sets Hydra itself" in err


def test_a_flipped_bit_in_a_checkpoint_is_reported_as_corruption(vae_run, monkeypatch, capsys):
    path = vae_run / "checkpoints" / "last.ckpt"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = entry.header_offset  # the local header's own name and extra lengths (torch pads for alignment)
    name_length, extra_length = (int.from_bytes(data[start + k : start + k + 2], "little") for k in (26, 28))
    data[start + 30 + name_length + extra_length + 17] ^= 0x40
    path.write_bytes(bytes(data))
    code, _out, err = genrun_in_process(["sample", f"ckpt={path}"], vae_run.parents[3], monkeypatch, capsys)
    assert code == 1 and f"checkpoint {path}: corrupted" in err and err.count("\n") == 1


def test_non_finite_weights_are_refused_on_load(vae_run, monkeypatch, capsys):
    payload = _payload(vae_run)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name][0] = float("nan")
    del payload["genrun_digest"]
    torch.save(payload, vae_run / "checkpoints" / "last.ckpt")  # no digest, as a file from elsewhere
    code, _out, err = genrun_in_process(["sample", "ckpt=last"], vae_run.parents[3], monkeypatch, capsys)
    assert code == 1 and f"non-finite weights in {name}" in err


def test_the_model_named_on_the_command_line_must_be_the_checkpoints(vae_run, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["sample", "model=dcgan", f"ckpt={vae_run}"], vae_run.parents[3],
                                        monkeypatch, capsys)
    assert code == 1 and f"model=dcgan, but ckpt={vae_run} holds a model=vae run" in err


@pytest.mark.parametrize("change", ["trainer.precision=bogus", "model.lr=1e30", "dataset.batch_size=7", "seed=3"])
def test_a_failed_or_refused_resume_leaves_the_run_as_it_was(vae_run, monkeypatch, capsys, change):
    before = tree_state(vae_run)
    code, _out, err = genrun_in_process(["train", f"resume={vae_run}", change], vae_run.parents[3], monkeypatch,
                                        capsys)
    assert code == 1
    if not change.startswith("trainer"):
        key, value = change.split("=")
        assert f"{key}={float(value) if '.' in value or 'e' in value else int(value)!r} differs from the run's" in err
    assert tree_state(vae_run) == before
    assert json.loads(before["metrics.json"])["status"] == "completed"


@pytest.mark.parametrize(("setting", "message"), [
    ("num_samples=-5", "num_samples=-5: must be 0"),
    ("threads=-2", "threads=-2: must be at least 1"),
    ("temperature=-1", "temperature=-1: must be non-negative"),
    ("model.latent_dim=0", "model.latent_dim=0: latent_dim must be at least 1, got 0"),
    ("model.hidden_dims=[400,0]", "hidden_dims must be at least 1, got [400, 0]"),
])
def test_settings_are_checked_before_training_starts(tmp_path, monkeypatch, capsys, setting, message):
    (tmp_path / "data").mkdir()
    code, _out, err = genrun_in_process(["train", "model=vae", MINI, setting, "trainer.max_epochs=1"], tmp_path,
                                        monkeypatch, capsys)
    assert code == 1 and message in err, err
    assert not list((tmp_path / "outputs").glob("train/*/*/checkpoints"))


def test_endless_training_is_announced_once(caplog):
    from omegaconf import OmegaConf

    from genrun.tasks.train import _warn_if_endless

    with caplog.at_level("WARNING", logger="genrun"):
        _warn_if_endless(OmegaConf.create({"max_epochs": -1, "max_steps": -1, "max_time": None}))
        _warn_if_endless(OmegaConf.create({"max_epochs": -1, "max_steps": 100, "max_time": None}))
        _warn_if_endless(OmegaConf.create({"max_epochs": -1, "max_steps": -1, "max_time": "00:00:10:00"}))
        _warn_if_endless(OmegaConf.create({"max_epochs": 5, "max_steps": -1, "max_time": None}))
    messages = [r.getMessage() for r in caplog.records if r.name == "genrun"]
    assert len(messages) == 1 and messages[0].startswith("trainer.max_epochs=-1 with no trainer.max_steps")


def _interrupt_when(pattern: str, root: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Start `genrun`, send SIGINT as soon as a path matching `pattern` exists under `root`."""
    import os

    env = {**os.environ, "GENRUN_DATA_DIR": str(root / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop("GENRUN_OUTPUT_DIR", None)
    # A suite started in the background of a non-interactive shell inherits SIGINT ignored; the child must
    # hear Ctrl-C as a terminal user's genrun does.
    process = subprocess.Popen([*GENRUN, *args], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(root.glob(pattern)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()  # a hung run must not outlive its test (it trains without end)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


ENDLESS = ["train", "model=vae", MINI, "trainer.max_epochs=-1", "trainer.limit_train_batches=3",
           "trainer.limit_val_batches=1"]


def test_ctrl_c_during_training_says_where_the_checkpoint_is_and_how_to_resume(workdir):
    result = _interrupt_when("outputs/train/*/*/checkpoints/last.ckpt", workdir, ENDLESS)
    (run_dir,) = run_dirs(workdir)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert f"last checkpoint: {run_dir}/checkpoints/last.ckpt; continue with: genrun train resume={run_dir}" in (
        result.stderr)
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert recorded["status"] == "interrupted" and recorded["resume"] == f"genrun train resume={run_dir}"


def test_ctrl_c_during_start_up_leaves_no_half_made_run(workdir):
    result = _interrupt_when("outputs/train/*/*/.hydra", workdir, ENDLESS)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "genrun: interrupted"
    assert run_dirs(workdir) == []
