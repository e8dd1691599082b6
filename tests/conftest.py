"""Shared helpers: run the real `genrun` command in a scratch directory, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GENRUN = [sys.executable, "-m", "genrun"]
# The bundled digits: no download attempt, same real data on every machine.
MINI = "dataset.source=mini"


def pytest_sessionstart(session):
    """Load torch and Lightning once with full collections held, then freeze them, as genrun's own process
    entry does: the collector's full passes then skip the libraries' objects for the whole suite."""
    from genrun.collector import hold_full_collections, libraries_loaded

    hold_full_collections()
    libraries_loaded("train")


def run_genrun(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None,
               command: list[str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GENRUN_DATA_DIR": str(cwd / "data"), "PYTHONUNBUFFERED": "1",
                "COLUMNS": "200", **(env or {})}
    full_env.pop("GENRUN_OUTPUT_DIR", None)
    return subprocess.run([*(command or GENRUN), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    output = f"STDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"exit {result.returncode}\n{output}"
    return result


def run_dirs(root: Path, task: str = "train") -> list[Path]:
    return sorted(p for p in (root / "outputs" / task).glob("*/*") if p.is_dir())


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def trained_vae(tmp_path_factory) -> Path:
    """One short VAE run shared by the sampling tests (its directory is the cwd for `genrun sample`)."""
    root = tmp_path_factory.mktemp("vae_run")
    (root / "data").mkdir()
    # The end-of-training sample-quality report trains a domain classifier: one epoch is enough to test it.
    check_ok(run_genrun(["train", "model=vae", MINI, "trainer.max_epochs=1", "trainer.limit_train_batches=10",
                         "trainer.limit_val_batches=2", "model.iwae_k=5", "num_samples=16"], cwd=root,
                        env={"GENRUN_CLASSIFIER_EPOCHS": "1"}))
    return root


def genrun_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the real `genrun` entry point, run in this process from `cwd`."""
    from genrun.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("GENRUN_DATA_DIR", str(cwd / "data"))
    monkeypatch.delenv("GENRUN_OUTPUT_DIR", raising=False)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: to show that a command left a directory as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
