"""Hydra's ecosystem works through genrun: launcher and sweeper plugins, sweep syntax, --config-dir, shell
completion, any Trainer argument, and one-line errors taken from Hydra's own composition."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import check_ok, genrun_in_process, read_metrics, run_genrun

# A GAN on 512 generated points, one batch of everything: a real run in a few seconds.
TINY_GAN = ["model=gan", "dataset=toy2d", "dataset.n_train=512", "debug=fast_dev_run", "test=false", "num_samples=0"]


def _has_plugin(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"hydra_plugins.{module}") is not None
    except ModuleNotFoundError:  # no plugin at all: not even the hydra_plugins namespace
        return False


def _one_line(code: int, err: str) -> str:
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _composed(result: tuple[int, str, str]) -> dict:
    code, out, err = result
    assert code == 0, err
    return yaml.safe_load(out)


# --- launcher and sweeper plugins -------------------------------------------------------------------------


def test_joblib_launcher_runs_the_jobs_of_a_sweep_in_parallel_processes(workdir):
    result = check_ok(run_genrun(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY_GAN,
                                  "seed=0,1"], workdir))
    assert "Joblib.Parallel" in result.stdout + result.stderr
    assert "sweep finished: 2 done, 0 failed" in result.stdout
    jobs = sorted((workdir / "outputs" / "multirun" / "train").glob("*/*_gan_toy2d"))
    assert len(jobs) == 2 and all(read_metrics(job)["status"] == "completed" for job in jobs)


@pytest.mark.parametrize(("override", "module", "package"), [
    ("hydra/launcher=rq", "hydra_rq_launcher", "hydra-rq-launcher"),
    ("hydra/sweeper=ax", "hydra_ax_sweeper", "hydra-ax-sweeper"),
])
def test_a_plugin_that_is_not_installed_is_one_line_naming_the_package(workdir, monkeypatch, capsys, override,
                                                                       module, package):
    if _has_plugin(module):
        pytest.skip(f"{package} is installed here, so its missing-plugin message cannot show (dev installs neither)")
    line = _one_line(*genrun_in_process(["train", "-m", override, "seed=0,1"], workdir, monkeypatch, capsys)[::2])
    assert f"{override}: not installed; pip install {package}" in line


def test_a_plus_on_a_group_that_has_a_value_says_to_drop_it(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["train", "+model=gan", "--cfg", "job"], workdir, monkeypatch, capsys)
    assert "+model=gan: model has a value already; choose another with model=gan (no +)" in _one_line(code, err)


RECORDING_SWEEPER = '''
import json
from pathlib import Path

from hydra.plugins.sweeper import Sweeper


class RecordingSweeper(Sweeper):
    """Writes the overrides it was handed and launches nothing: what a sampling sweeper receives."""

    def __init__(self, record):
        self.record = record

    def setup(self, *, hydra_context, task_function, config):
        pass

    def sweep(self, arguments):
        Path(self.record).write_text(json.dumps(list(arguments)))
        return []
'''


def test_a_sweep_only_a_sampling_sweeper_reads_reaches_that_sweeper(workdir, monkeypatch, capsys):
    """interval() is for sweepers such as optuna's; genrun hands it to whichever sweeper is chosen."""
    from hydra.core.plugins import Plugins

    plugins = workdir / "plugins" / "hydra_plugins"
    plugins.mkdir(parents=True)
    (plugins / "genrun_test_recording_sweeper.py").write_text(RECORDING_SWEEPER)
    monkeypatch.syspath_prepend(str(workdir / "plugins"))
    # Hydra looks for plugins once per process; this one arrived later, so it is registered by hand.
    Plugins.instance().register(importlib.import_module("hydra_plugins.genrun_test_recording_sweeper")
                                .RecordingSweeper)
    (workdir / "conf" / "hydra" / "sweeper").mkdir(parents=True)
    record = workdir / "record.json"
    (workdir / "conf" / "hydra" / "sweeper" / "recording.yaml").write_text(
        f"_target_: hydra_plugins.genrun_test_recording_sweeper.RecordingSweeper\nrecord: {record}\n")
    code, _out, err = genrun_in_process(["train", "-m", "-cd", "conf", "hydra/sweeper=recording", "model=gan",
                                         "model.lr=interval(1e-4,1e-2)", "model.latent_dim=choice(8,16)"],
                                        workdir, monkeypatch, capsys)
    assert code == 0, err
    assert "model.lr=interval(1e-4,1e-2)" in yaml.safe_load(record.read_text())
    code, _out, err = genrun_in_process(["train", "-m", "-cd", "conf", "hydra/sweeper=recording", "model=gan",
                                         "model.lr=interval(1e-4,1e-2)", "model.latent_dimm=8"],
                                        workdir, monkeypatch, capsys)
    assert "unknown key 'model.latent_dimm'" in _one_line(code, err)  # what the sweeper does not choose is checked


# --- sweep syntax ------------------------------------------------------------------------------------------


def test_sweep_functions_pass_through_to_hydras_basic_sweeper(workdir, monkeypatch, capsys):
    sweep = ["model.latent_dim=range(2,3)", "model.n_critic=choice(1)", "seed=shuffle(choice(5))",
             "model.pack=sort(choice(1))", "model.lr=tag(fast,choice(0.001))", "debug=glob(fast*)"]
    args = ["train", "-m", *[a for a in TINY_GAN if not a.startswith("debug=")], *sweep]
    code, _out, err = genrun_in_process(args, workdir, monkeypatch, capsys)
    assert code == 0, err
    (job,) = (workdir / "outputs" / "multirun" / "train").glob("*/0_gan_toy2d")
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    for expected in ("model.latent_dim=2", "model.n_critic=1", "seed=5", "model.pack=1", "model.lr=0.001",
                     "debug=fast_dev_run"):
        assert expected in overrides, overrides
    assert read_metrics(job)["status"] == "completed"


@pytest.mark.parametrize(("args", "words"), [
    (["-m", "model.lr=interval(1e-4,1e-2)"], ["model.lr=interval(1e-4,1e-2)", "basic sweeper", "optuna"]),
    (["model.lr=interval(1e-4,1e-2)"], ["model.lr=interval(1e-4,1e-2)", "add -m", "optuna"]),
    (["model.lr=1e-3,1e-2"], ["model.lr=1e-3,1e-2", "add -m", "[a,b]"]),
    (["-m", "model.latent_dim=choice(2,abc)"], ["model.latent_dim='abc'", "integer"]),
    (["-m", "dataset=glob(nothing*)"], ["dataset=glob(nothing*)", "no value"]),
    (["-m", "model=gan", "--cfg", "job"], ["-m and --cfg cannot be combined"]),
    (["model.lr=tag(x,1,2)"], ["cannot parse override 'model.lr=tag(x,1,2)'", "tag(x,1,2)"]),
])
def test_a_sweep_hydra_refuses_is_one_line(workdir, monkeypatch, capsys, args, words):
    code, _out, err = genrun_in_process(["train", *args], workdir, monkeypatch, capsys)
    line = _one_line(code, err)
    assert all(word in line for word in words), line


# --- --config-dir --------------------------------------------------------------------------------------------


def _user_configs(root: Path, monkeypatch) -> Path:
    """A user's own experiment, model and dataset, each built on one of genrun's."""
    from genrun.cli import DDP_FLAGS_ENV

    monkeypatch.setenv(DDP_FLAGS_ENV, "[]")  # genrun records -cd here for DDP; restored after the test
    conf = root / "my_configs"
    for group in ("experiment", "model", "dataset"):
        (conf / group).mkdir(parents=True)
    (conf / "model" / "tiny_gan.yaml").write_text("defaults:\n  - gan\n  - _self_\nhidden_dims: [32, 32]\n"
                                                  "latent_dim: 8\n")
    (conf / "dataset" / "grid.yaml").write_text("defaults:\n  - toy2d\n  - _self_\nkind: grid25\nn_train: 512\n")
    (conf / "experiment" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: tiny_gan\n"
                                                   "  - override /dataset: grid\nseed: 3\ntest: false\n")
    return conf


def test_a_config_dir_adds_the_users_experiment_model_and_dataset(workdir, monkeypatch, capsys):
    _user_configs(workdir, monkeypatch)
    cfg = _composed(genrun_in_process(["train", "-cd", "my_configs", "experiment=mine", "--cfg", "job"], workdir,
                                      monkeypatch, capsys))
    assert cfg["model"]["hidden_dims"] == [32, 32] and cfg["dataset"]["kind"] == "grid25" and cfg["seed"] == 3
    code, _out, err = genrun_in_process(["train", "--config-dir=my_configs", "experiment=mine",
                                         "debug=fast_dev_run", "num_samples=0"], workdir, monkeypatch, capsys)
    assert code == 0, err
    (run,) = (workdir / "outputs" / "train" / "tiny_gan_grid").iterdir()
    assert read_metrics(run)["status"] == "completed"


def test_mistakes_under_a_config_dir_are_one_line_and_list_the_users_choices(workdir, monkeypatch, capsys):
    conf = _user_configs(workdir, monkeypatch)
    (conf / "experiment" / "broken.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: nope\n")
    code, _out, err = genrun_in_process(["train", "-cd", "my_configs", "experiment=mien"], workdir, monkeypatch,
                                        capsys)
    line = _one_line(code, err)
    assert "unknown experiment 'mien'" in line and "mine" in line and "vae_mnist" in line
    code, _out, err = genrun_in_process(["train", "-cd", "my_configs", "experiment=broken"], workdir, monkeypatch,
                                        capsys)
    line = _one_line(code, err)
    assert "unknown model 'nope'" in line and "tiny_gan" in line
    code, _out, err = genrun_in_process(["train", "-cd", "no_such_dir"], workdir, monkeypatch, capsys)
    assert "--config-dir no_such_dir: no such directory" in _one_line(code, err)


def test_ddp_processes_read_the_users_config_dir_too(workdir, monkeypatch):
    """DDP re-runs the command from the job's overrides, which do not record -cd: the CLI passes it on."""
    from genrun import cli

    _user_configs(workdir, monkeypatch)
    monkeypatch.chdir(workdir)
    cli._pass_config_flags_to_ddp(["-cd", "my_configs", "-m"])
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv(cli.DDP_TASK_ENV, "train")
    monkeypatch.setenv(cli.DDP_ARGS_ENV, '["experiment=mine"]')
    assert cli._ddp_child_job() == ("train", ["-cd", str(workdir / "my_configs"), "experiment=mine"])
    cli._pass_config_flags_to_ddp([])
    assert cli.DDP_FLAGS_ENV not in os.environ


# --- shell completion ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [None, "train", "sample", "evaluate"])
def test_install_prints_a_completion_script_for_genrun(workdir, monkeypatch, capsys, task):
    code, out, err = genrun_in_process([*([task] if task else []), "-sc", "install=bash"], workdir, monkeypatch,
                                       capsys)
    assert code == 0, err
    assert out.strip().endswith("complete -o nospace -o default -F hydra_bash_completion genrun")


@pytest.mark.parametrize(("line", "expected"), [("genrun ", "train sample evaluate report"), ("genrun tr", "train"),
                                                ("genrun report ", "")])
def test_the_completion_query_completes_task_names(workdir, monkeypatch, capsys, line, expected):
    monkeypatch.setenv("COMP_LINE", line)
    code, out, err = genrun_in_process(["-sc", "query=bash"], workdir, monkeypatch, capsys)
    assert code == 0 and out.strip() == expected, err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_a_tasks_overrides_through_the_installed_script(workdir):
    """What the shell does: eval the installed script, then call its completion function for a typed line."""
    script = Path(sys.executable).parent / "genrun"
    if not script.is_file():
        pytest.skip("the genrun console script is not installed beside this Python")
    complete = ('eval "$(genrun train -sc install=bash)"\n'
                'for typed in "genrun train model=" "genrun sample mo" "genrun tr"; do\n'
                '  COMP_LINE="$typed"; COMP_POINT=${#typed}; COMP_WORDS=($typed); COMP_CWORD=$((${#COMP_WORDS[@]}-1))\n'
                '  hydra_bash_completion; echo "$typed|${COMPREPLY[*]}"\n'
                'done\n')
    env = {"PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}"}
    result = check_ok(run_genrun(["-c", complete], workdir, env=env, command=["bash"]))
    answers = dict(line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)
    assert {"model=vae", "model=gan", "model=conv_vae"} <= set(answers["genrun train model="].split())
    assert set(answers["genrun sample mo"].split()) == {"model=", "mode="}
    assert answers["genrun tr"] == "train"


# --- Trainer arguments ---------------------------------------------------------------------------------------


def test_any_trainer_argument_is_a_plain_trainer_key(workdir, monkeypatch, capsys):
    cfg = _composed(genrun_in_process(["train", "trainer.accumulate_grad_batches=2", "trainer.detect_anomaly=true",
                                       "trainer.devices=auto", "trainer.deterministic=warn", "--cfg", "job"],
                                      workdir, monkeypatch, capsys))
    assert cfg["trainer"]["accumulate_grad_batches"] == 2 and cfg["trainer"]["detect_anomaly"] is True
    assert cfg["trainer"]["devices"] == "auto" and cfg["trainer"]["deterministic"] == "warn"


@pytest.mark.parametrize(("override", "words"), [
    ("trainer.max_epoch=3", ["trainer.max_epoch=3: not a lightning.pytorch.Trainer argument",
                             "did you mean max_epochs?"]),
    ("trainer.accumulate_grad_batches=abc", ["trainer.accumulate_grad_batches='abc'", "int"]),
    ("trainer.logger=false", ["trainer.logger=false", "logger=tensorboard|csv"]),
])
def test_a_trainer_key_lightning_would_refuse_is_one_line(workdir, monkeypatch, capsys, override, words):
    line = _one_line(*genrun_in_process(["train", override], workdir, monkeypatch, capsys)[::2])
    assert all(word in line for word in words), line


def test_models_that_step_their_own_optimisers_refuse_gradient_accumulation(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["train", *TINY_GAN, "trainer.accumulate_grad_batches=2"], workdir,
                                        monkeypatch, capsys)
    line = _one_line(code, err)
    assert "trainer.accumulate_grad_batches=2 does not apply to models that step their own optimisers" in line


# --- errors taken from Hydra's composition ---------------------------------------------------------------


@pytest.mark.parametrize(("args", "words"), [
    (["~model.nope"], ["model.nope", "does not exist"]),
    (["+model.latent_dim=3"], ["model.latent_dim", "++model.latent_dim=3"]),
    (["sample", "trainer.max_epochs=3"], ["unknown key 'trainer'", "ckpt"]),
    (["test=no"], ["test='no'", "boolean"]),
])
def test_what_hydra_refuses_is_one_line_naming_the_key(workdir, monkeypatch, capsys, args, words):
    task, rest = (args[0], args[1:]) if args[0] in ("sample", "evaluate") else ("train", args)
    line = _one_line(*genrun_in_process([task, *rest], workdir, monkeypatch, capsys)[::2])
    assert all(word in line for word in words), line
    assert "hydra" not in line.split("keys at")[-1].split(", ")


def test_values_omegaconf_converts_are_accepted(workdir, monkeypatch, capsys):
    """An integer for a float key is what OmegaConf converts: Hydra takes it, and so does genrun."""
    cfg = _composed(genrun_in_process(["train", "model.lr=1", "trainer.val_check_interval=1", "--cfg", "job"],
                                      workdir, monkeypatch, capsys))
    assert cfg["model"]["lr"] == 1 and cfg["trainer"]["val_check_interval"] == 1
