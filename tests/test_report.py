"""`genrun report` on a real sweep (one job fails on purpose) and on a sweep directory laid out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import check_ok, run_genrun
from genrun.report import report


def test_report_of_a_real_sweep_lists_the_failed_job_with_its_error(workdir):
    sweep = run_genrun(["train", "-m", "model=gan", "dataset=toy2d", "model.n_critic=0,1", "debug=fast_dev_run",
                        "dataset.n_train=512", "test=false"], cwd=workdir)
    (sweep_dir,) = (workdir / "outputs" / "multirun" / "train").iterdir()
    # The failed job does not stop the sweep, prints one line, and the sweep ends in one summary.
    assert sweep.returncode == 1 and "Traceback" not in sweep.stderr, sweep.stderr[-3000:]
    assert "genrun: error: model.n_critic=0: must be at least 1" in sweep.stderr
    assert f"genrun: sweep finished: 1 done, 1 failed ({sweep_dir})" in sweep.stderr
    assert "failed: 0_gan_toy2d [model=gan dataset=toy2d model.n_critic=0" in sweep.stderr
    assert f"genrun report {sweep_dir}" in sweep.stderr
    result = check_ok(run_genrun(["report", str(sweep_dir), "--metrics", "train/d_loss,val/swd"], cwd=workdir))
    lines = [line for line in result.stdout.splitlines() if "model.n_critic" in line or "_gan_toy2d" in line]
    assert any("failed" in line and "model.n_critic=0" in line for line in lines), result.stdout
    assert "2 jobs, 1 not completed" in result.stdout, sweep.stderr[-2000:]
    assert (sweep_dir / "report.png").stat().st_size > 1000
    rows = (sweep_dir / "report.csv").read_text().splitlines()
    assert rows[0] == "job,model.n_critic,dataset,dataset.n_train,debug,model,test,train/d_loss,val/swd,status"
    assert rows[2].endswith(",completed") and rows[1].split(",")[7] == "-"


def _job(root: Path, name: str, overrides: list[str], metrics: dict | None) -> None:
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (root / name / "metrics.json").write_text(json.dumps(metrics))


def test_report_orders_jobs_and_marks_unfinished_ones(tmp_path):
    _job(tmp_path, "10_dcgan_mnist", ["model.lr=0.0002", "seed=1"], {"status": "completed",
                                                                      "metrics": {"val/swd": 0.5, "val/swd_step": 9}})
    _job(tmp_path, "2_dcgan_mnist", ["model.lr=0.0001", "seed=1"], {"status": "completed",
                                                                     "metrics": {"val/swd": "nan"}})
    _job(tmp_path, "3_dcgan_mnist", ["model.lr=0.0001", "seed=2"], None)
    result = report(tmp_path)
    assert result["header"] == ["job", "model.lr", "seed", "val/swd", "status"]
    assert [row[0] for row in result["rows"]] == ["2_dcgan_mnist", "3_dcgan_mnist", "10_dcgan_mnist"]
    assert result["rows"][0][3] == "nan" and result["rows"][1][-1].startswith("unfinished")


def test_report_needs_no_torch_and_names_a_bad_directory(tmp_path):
    code = ("import sys\nfrom genrun.cli import main\ncode = main(['report', 'nowhere'])\n"
            "assert 'torch' not in sys.modules and 'hydra' not in sys.modules\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and "nowhere: no such directory" in result.stderr
