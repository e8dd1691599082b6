"""`pip install .` (a real wheel, not editable) carries the configs: genrun works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_configs_and_runs_from_elsewhere(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = list((tmp_path / "dist").glob("genrun-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "genrun/configs/train.yaml" in names and "genrun/configs/model/vae.yaml" in names
    assert "genrun/data/mnist.py" in names and "genrun/cli.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import genrun.configs as c, sys; print(c.config_dir()); sys.exit(0)"
    where = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    job = subprocess.run([sys.executable, "-m", "genrun", "train", "model=conv_vae", "--cfg", "job"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert "arch: conv" in job.stdout
