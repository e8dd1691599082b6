"""The command line: help, task dispatch, one-line errors, Hydra's own flags."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import MINI, check_ok, run_genrun


def test_help_lists_tasks_groups_and_choices_without_torch(workdir):
    code = ("import sys, runpy; sys.argv=['genrun','--help']\n"
            "from genrun.cli import main\nmain(['--help'])\n"
            "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'heavy import'\n")
    start = time.perf_counter()
    result = check_ok(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir))
    assert time.perf_counter() - start < 20  # generous; the benchmark measures the real figure
    out = result.stdout
    for word in ("train", "sample", "evaluate", "model", "dataset", "trainer", "vae", "conv_vae", "beta_vae", "ae",
                 "mnist", "image_folder", "fashion_mnist", "ddp", "experiment", "debug"):
        assert word in out, word


def test_help_names_config_dir_and_shell_completion(capsys):
    from genrun.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "-cd DIR" in out and 'eval "$(genrun -sc install=bash)"' in out and "hydra/launcher=joblib" in out


def test_console_script_and_module_agree(workdir):
    script = Path(sys.executable).parent / "genrun"
    a = check_ok(run_genrun(["--help"], workdir, command=[str(script)]))
    b = check_ok(run_genrun(["--help"], workdir))
    assert a.stdout == b.stdout


def test_misspelt_task_prints_usage_and_exits_2(workdir):
    result = run_genrun(["trian"], workdir)
    assert result.returncode == 2
    assert "unknown task 'trian'" in result.stderr and "usage:" in result.stderr


def _one_line_error(result) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_key_names_key_and_valid_keys(workdir):
    line = _one_line_error(run_genrun(["train", "model.latent_dimm=3"], workdir))
    assert "model.latent_dimm" in line and "latent_dim" in line.split("keys at")[1]


def test_unknown_model_lists_choices(workdir):
    line = _one_line_error(run_genrun(["train", "model=vea"], workdir))
    assert "'vea'" in line and "vae" in line and "conv_vae" in line


def test_unknown_dataset_in_sweep_lists_choices(workdir):
    line = _one_line_error(run_genrun(["train", "-m", "dataset=mnist,mnits"], workdir))
    assert "'mnits'" in line and "fashion_mnist" in line


def test_wrong_type_names_key_and_expected_type(workdir):
    line = _one_line_error(run_genrun(["train", "model.latent_dim=abc"], workdir))
    assert "model.latent_dim" in line and "integer" in line
    line = _one_line_error(run_genrun(["train", "trainer.max_epochs=1.5"], workdir))
    assert "trainer.max_epochs" in line


def test_unparsable_override(workdir):
    line = _one_line_error(run_genrun(["train", "model.latent_dim=[1,"], workdir))
    assert "override" in line


def test_cfg_job_prints_composed_config(workdir):
    result = check_ok(run_genrun(["train", "model=conv_vae", "--cfg", "job"], workdir))
    assert "arch: conv" in result.stdout and "_target_: genrun.models.autoencoder.AutoencoderModule" in result.stdout
    assert not (workdir / "outputs").exists()


def test_info_and_append_key(workdir):
    check_ok(run_genrun(["train", "--info", "defaults"], workdir))
    result = check_ok(run_genrun(["train", "+extra_note=hello", "--cfg", "job"], workdir))
    assert "extra_note: hello" in result.stdout


def test_experiment_recipe_composes(workdir):
    result = check_ok(run_genrun(["train", "experiment=vae_mnist", MINI, "--cfg", "job"], workdir))
    assert "seed: 1" in result.stdout and "max_epochs: 10" in result.stdout


def test_delete_and_force_add_overrides_pass_through(workdir):
    """Hydra's `~key` and `++key=value` reach the composed config as Hydra defines them."""
    result = check_ok(run_genrun(["train", "~callbacks.progress_bar", "++trainer.max_epochs=3",
                                  "++new_key=7", "--cfg", "job"], workdir))
    assert "progress_bar" not in result.stdout and "LeanRichProgressBar" not in result.stdout
    assert "max_epochs: 3" in result.stdout and "new_key: 7" in result.stdout


def test_bad_values_of_the_right_type_name_the_key_in_one_line(workdir):
    """A value only Lightning can judge: one line naming the key and value, no traceback (more cases, in
    process, in test_building.py)."""
    line = _one_line_error(run_genrun(["train", MINI, "debug=fast_dev_run", "trainer.precision=bogus"], workdir))
    assert line.startswith("genrun: error: trainer.precision='bogus': ")


def test_a_model_knob_given_at_the_top_level_is_that_knob_and_an_unknown_key_is_still_refused(workdir, monkeypatch,
                                                                                              capsys):
    """`genrun train model=fast_style style=FILE` (the issue's spelling) means model.style=FILE."""
    from conftest import genrun_in_process

    code, out, err = genrun_in_process(["train", "model=fast_style", "style=china", "dataset=photo_crops",
                                        "--cfg", "job"], workdir, monkeypatch, capsys)
    assert code == 0, err
    assert "style: china" in out.split("module:")[0]
    code, _out, err = genrun_in_process(["train", "model=vae", "style=china"], workdir, monkeypatch, capsys)
    assert code == 1 and "unknown key 'style'" in err


def test_a_config_group_set_to_null_is_one_line_naming_it(workdir, monkeypatch, capsys):
    """Hydra refuses `model=null` with a ValueError of its own: still one line, naming the override."""
    from conftest import genrun_in_process

    code, _out, err = genrun_in_process(["train", "model=null"], workdir, monkeypatch, capsys)
    assert code == 1
    assert err.strip() == ("genrun: error: model=null: a config group needs one of its choices "
                           "(genrun --help lists them)")
