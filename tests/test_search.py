"""Hyperparameter search (genrun.search): a real Optuna study over real trials, continued from its storage,
with pruned trials recorded; `genrun report` on it; the mistakes a search refuses before any trial runs."""

from __future__ import annotations

import math
import shlex
import sys

import optuna  # in the dev extra: a missing optuna fails here, it does not skip
import pytest
import yaml

from conftest import genrun_in_process, read_metrics

# A recipe like configs/hparams_search/*.yaml, shrunk to seconds: a GAN on 512 points, one batch per epoch.
# The pruner stops every trial that reaches its second validation (upper=0: any loss is too high; the first
# validation is warm-up), so trials given trainer.max_epochs=3 are pruned and those given 1 complete.
TINY_RECIPE = """\
# @package _global_
defaults:
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/pruner: threshold
  - override /model: gan
  - override /dataset: toy2d
optimized_metric: val/loss
test: false
num_samples: 0
threads: 1
dataset: {n_train: 256, n_val: 128, n_test: 128, batch_size: 256}
model: {hidden_dims: [16], latent_dim: 4}
trainer: {limit_val_batches: 1, enable_model_summary: false}
hydra:
  mode: MULTIRUN
  sweep:
    dir: ${paths.output_root}/search/${hydra.runtime.choices.hparams_search}
  sweeper:
    direction: minimize
    study_name: tiny
    n_trials: 4
    sampler: {seed: 3, n_startup_trials: 10}
    params:
      model.lr: tag(log, interval(1e-4, 1e-2))
      trainer.max_epochs: choice(1, 3)
"""
# A pruner of the user's own, beside genrun's median and successive_halving.
THRESHOLD = "_target_: optuna.pruners.ThresholdPruner\nupper: 0.0\nn_warmup_steps: 1\n"
SEARCH = ["-cd", "conf", "hparams_search=tiny"]


def _conf(root):
    for group, name, text in (("hparams_search", "tiny", TINY_RECIPE), ("hydra/sweeper/pruner", "threshold",
                                                                          THRESHOLD)):
        (root / "conf" / group).mkdir(parents=True, exist_ok=True)
        (root / "conf" / group / f"{name}.yaml").write_text(text)


def _genrun(args: list[str], root) -> tuple[int, str, str]:
    """The real `genrun` entry point in this process (the module's search is shared, so no function fixtures)."""
    import contextlib
    import io

    from genrun.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.chdir(root)
        patch.setenv("GENRUN_DATA_DIR", str(root / "data"))
        patch.delenv("GENRUN_OUTPUT_DIR", raising=False)
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """4 trials, then the same command with n_trials=6: (root, sweep directory, first output, second output)."""
    root = tmp_path_factory.mktemp("search")
    (root / "data").mkdir()
    _conf(root)
    first = _genrun(["train", *SEARCH], root)
    assert first[0] == 0, first[2][-3000:]
    second = _genrun(["train", *SEARCH, "hydra.sweeper.n_trials=6"], root)
    assert second[0] == 0, second[2][-3000:]
    return root, root / "outputs" / "search" / "tiny", first[1], second[1]


def _study(sweep_dir):
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def test_a_search_continues_its_study_from_storage_and_records_pruned_trials(search):
    root, sweep_dir, first, second = search
    assert "4 trials to run" in first and "continuing from 4 finished trials: 2 trials to run" in second
    trials = _study(sweep_dir).trials
    assert [t.number for t in trials] == list(range(6))
    states = {t.number: t.state for t in trials}
    for trial in trials:
        epochs = trial.params["trainer.max_epochs"]
        job = sweep_dir / f"{trial.number}_gan_toy2d"
        metrics = read_metrics(job)
        # Every trial reported its validation loss after each validation it reached.
        assert sorted(trial.intermediate_values) == list(range(min(epochs, 2)))
        if epochs == 3:  # pruned at its second validation, recorded in the study and in the job's files
            assert trial.state == optuna.trial.TrialState.PRUNED and metrics["status"] == "pruned"
            assert not (job / "samples").exists()
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE and metrics["status"] == "completed"
            assert math.isclose(trial.value, metrics["metrics"]["val/loss"], rel_tol=1e-6)
    assert optuna.trial.TrialState.PRUNED in states.values() and optuna.trial.TrialState.COMPLETE in states.values()
    # The continued study drew new values: its sampler was reseeded past the trials already there.
    assert len({t.params["model.lr"] for t in trials}) == 6
    assert "sweep finished: " in second and ", 0 failed" in second  # pruned trials are no failures


def test_a_finished_study_run_again_runs_nothing(search, monkeypatch, capsys):
    root, sweep_dir, _first, _second = search
    code, out, err = genrun_in_process(["train", *SEARCH, "hydra.sweeper.n_trials=6"], root, monkeypatch, capsys)
    assert code == 0, err
    assert "the study has 6 finished trials, hydra.sweeper.n_trials=6: nothing to run" in out
    assert len(_study(sweep_dir).trials) == 6


def test_a_continued_study_with_other_fixed_overrides_is_refused(search, monkeypatch, capsys):
    root, sweep_dir, _first, _second = search
    code, _out, err = genrun_in_process(["train", *SEARCH, "seed=7", "hydra.sweeper.n_trials=7"], root, monkeypatch,
                                        capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "was started with overrides [hparams_search=tiny]" in err and "seed=7" in err
    assert "hydra.sweep.dir=NEW_DIR" in err and len(_study(sweep_dir).trials) == 6


def test_report_shows_trials_the_best_command_and_the_plots(search, monkeypatch, capsys):
    root, sweep_dir, _first, _second = search
    code, out, err = genrun_in_process(["report", str(sweep_dir)], root, monkeypatch, capsys)
    assert code == 0, err
    study = _study(sweep_dir)
    best = study.best_trial
    assert "6 trials (" in out and "pruned" in out and f"best: trial {best.number}" in out
    rows = (sweep_dir / "search.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("trial,state,val/loss,model.lr,trainer.max_epochs")
    assert (sweep_dir / "search.png").stat().st_size > 10_000
    assert "(optimisation history (lower is better); parameter importance (fANOVA over " in out
    # The reproducing command composes the best trial's own config (the recipe's settings, its values).
    command = next(line for line in out.splitlines() if line.startswith("reproduce: "))[len("reproduce: "):]
    words = shlex.split(command)
    assert words[:2] == ["genrun", "train"] and "hydra.mode=RUN" in words
    code, out, err = genrun_in_process(["train", "-cd", "conf", *words[2:], "--cfg", "job"], root, monkeypatch,
                                       capsys)
    assert code == 0, err
    composed = yaml.safe_load(out)
    saved = yaml.safe_load((sweep_dir / f"{best.number}_gan_toy2d" / ".hydra" / "config.yaml").read_text())
    for section in ("model", "trainer", "dataset"):
        assert composed[section] == saved[section], section


# --- mistakes, before any trial runs ---------------------------------------------------------------------------


def _one_line(code: int, err: str) -> str:
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_search_space_over_a_key_that_does_not_exist_is_one_line_naming_it(workdir, monkeypatch, capsys):
    _conf(workdir)
    code, _out, err = genrun_in_process(["train", *SEARCH, "model.latnt_dim=choice(4,8)"], workdir, monkeypatch,
                                        capsys)
    line = _one_line(code, err)
    assert line.startswith("genrun: error: search space: unknown key 'model.latnt_dim'"), line
    assert "latent_dim" in line and not (workdir / "outputs").exists()


def test_failed_trials_are_recorded_and_the_search_goes_on(workdir, monkeypatch, capsys):
    """A value the model refuses fails its trial only (the config cannot know it): every trial still runs."""
    _conf(workdir)
    code, out, err = genrun_in_process(["train", *SEARCH, "hydra.sweeper.n_trials=2", "model.loss=choice(nope,nah)"],
                                       workdir, monkeypatch, capsys)
    assert code == 1 and "sweep finished: 0 done, 2 failed" in err, out + err
    trials = _study(workdir / "outputs" / "search" / "tiny").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all("model.loss=" in t.user_attrs["error"] and "choose one of" in t.user_attrs["error"] for t in trials)


def test_a_recipe_whose_space_names_a_missing_key_is_one_line(workdir, monkeypatch, capsys):
    _conf(workdir)
    recipe = workdir / "conf" / "hparams_search" / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("model.lr: tag", "model.lrr: tag"))
    line = _one_line(*genrun_in_process(["train", *SEARCH], workdir, monkeypatch, capsys)[::2])
    assert "search space: unknown key 'model.lrr'" in line and not (workdir / "outputs").exists()


def test_without_optuna_a_search_is_one_line_naming_the_extra(workdir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now fails, as where it is not installed
    line = _one_line(*genrun_in_process(["train", "hparams_search=vae_optuna"], workdir, monkeypatch, capsys)[::2])
    assert line == "genrun: error: hydra/sweeper=optuna needs optuna, which is not installed: pip install " \
                   "'genrun[search]'"


@pytest.mark.parametrize(("recipe", "model", "pruner"), [("vae_optuna", "vae", "MedianPruner"),
                                                         ("gan_optuna", "gan", "MedianPruner"),
                                                         ("gpt_optuna", "gpt", "SuccessiveHalvingPruner")])
def test_each_recipe_names_its_metric_direction_space_and_tpe(recipe, model, pruner):
    from hydra import compose, initialize_config_dir

    from genrun import resolvers
    from genrun.configs import config_dir

    resolvers.register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={recipe}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert cfg.optimized_metric == "val/loss" and sweeper.direction == "minimize"
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.runtime.choices.model == model
    assert sweeper._target_ == "hydra_plugins.genrun_search.optuna_sweeper.OptunaSweeper"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.pruner._target_ == f"optuna.pruners.{pruner}"
    assert len(sweeper.params) >= 3 and all(k.split(".")[0] in ("model", "trainer", "dataset") for k in sweeper.params)
