"""`genrun report` on a real sweep (one job fails on purpose) and on sweep directories laid out by hand.

The hand-made sweep has what a real VAE sweep logs (a couple of dozen metrics, constants among them, close
values), so the width, column choice, best-run and file checks run in seconds.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import check_ok, genrun_in_process, run_genrun
from genrun.report import build_view, report
from genrun.report_plot import build_figure
from genrun.report_table import print_report

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_report_of_a_real_sweep_lists_the_failed_job_with_its_error(workdir):
    sweep = run_genrun(["train", "-m", "model=gan", "dataset=toy2d", "model.n_critic=0,1", "debug=fast_dev_run",
                        "dataset.n_train=512", "test=false"], cwd=workdir)
    (sweep_dir,) = (workdir / "outputs" / "multirun" / "train").iterdir()
    # The failed job does not stop the sweep, prints one line, and the sweep ends in one summary.
    assert sweep.returncode == 1 and "Traceback" not in sweep.stderr, sweep.stderr[-3000:]
    assert "genrun: error: model.n_critic=0: must be at least 1" in sweep.stderr
    assert f"genrun: sweep finished: 1 done, 1 failed ({sweep_dir})" in sweep.stderr
    assert "failed: 0_gan_toy2d [model=gan dataset=toy2d model.n_critic=0" in sweep.stderr
    # ... which names the best job by the optimised metric and the command that compares the jobs.
    assert "best val/loss (lower is better): " in sweep.stderr and "in 1_gan_toy2d [n_critic=1]" in sweep.stderr
    assert f"next: genrun report {sweep_dir}" in sweep.stderr

    result = check_ok(run_genrun(["report", str(sweep_dir)], cwd=workdir, env={"COLUMNS": "80"}))
    lines = result.stdout.splitlines()
    assert _header(lines) == ["job", "n_critic", "val/loss ↓", "status"], result.stdout
    assert "n_train" not in _header(lines) and "same in every job: model=gan dataset=toy2d" in result.stdout
    assert any(line.startswith("★1 ") and line.rstrip().endswith("done") for line in lines), result.stdout
    assert any(line.startswith(" 0 ") and line.rstrip().endswith("failed") for line in lines), result.stdout
    assert "job 0 failed [n_critic=0]: model.n_critic=0: must be at least 1" in result.stdout
    assert "val/swd equals val/loss in every job" in result.stdout
    assert all(len(line) <= 80 for line in lines if not line.startswith(("table:", "plot:"))), result.stdout
    rows = (sweep_dir / "report.csv").read_text().splitlines()
    assert rows[0] == "job,model.n_critic,val/loss,best,status,error"
    assert rows[1].startswith("0_gan_toy2d,0,,,failed,") and rows[2].startswith("1_gan_toy2d,1,")
    assert ",best,completed," in rows[2]
    assert (sweep_dir / "report.png").stat().st_size > 1000

    # Another selection writes its own files: the default view's are left as they were.
    before = (sweep_dir / "report.csv").read_bytes(), (sweep_dir / "report.png").read_bytes()
    result = check_ok(run_genrun(["report", str(sweep_dir), "--metrics", "train/d_loss,val/swd"], cwd=workdir))
    assert ((sweep_dir / "report.csv").read_bytes(), (sweep_dir / "report.png").read_bytes()) == before
    rows = (sweep_dir / "report-train_d_loss+val_swd.csv").read_text().splitlines()
    assert rows[0] == "job,model.n_critic,val/loss,train/d_loss,val/swd,best,status,error"
    assert "report-train_d_loss+val_swd.png" in result.stdout


# --- a sweep laid out by hand ------------------------------------------------------------------------------


def _job(root: Path, name: str, overrides: list[str], metrics: dict | None) -> None:
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (root / name / "metrics.json").write_text(json.dumps(metrics))


def _vae_metrics(nll: float, val: float, fid: float) -> dict:
    """What a VAE job's metrics.json holds: headline figures, bookkeeping constants, training curves."""
    metrics = {"test/nll_iwae": nll, "test/bits_per_dim": nll / 784 / 0.6931, "test/iwae_k": 100,
               "test/n_images": 10000, "test/loss": val + 2, "val/loss": val, "val/loss_epoch": val,
               "train/loss": val - 3, "train/recon": val - 25, "train/kl": 22.0, "train/loss_step": val - 4,
               "eval/domain_fid": fid, "eval/precision": 0.6, "eval/recall": 0.5, "eval/n_fake": 5000,
               "eval/n_real": 5000, "eval/near_copy_fraction": 0.01, "eval/coverage_kl": 0.02,
               "perf/train_items_per_sec": 5123.4, "lr-Adam": 0.001}
    return {"status": "completed", "metrics": metrics}


def _vae_sweep(root: Path, config: str = "optimized_metric: val/loss\n") -> Path:
    """Six jobs over latent_dim x beta: four done (close values), one failed, one still running."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text(config)
    shared = ["model=vae", "dataset=mnist", "dataset.source=mini", "trainer.max_epochs=5", "seed=0"]
    values = {0: (211.6, 101.25, 31.0), 1: (214.3, 101.31, 29.0), 2: (209.9, 101.18, 33.5), 3: (213.0, 101.40, 30.2)}
    for i, (dim, beta) in enumerate([(8, 1.0), (8, 2.0), (16, 1.0), (16, 2.0), (32, 1.0), (32, 2.0)]):
        overrides = [*shared, f"model.latent_dim={dim}", f"model.beta={beta}"]
        metrics = _vae_metrics(*values[i]) if i in values else None
        if i == 4:
            metrics = {"status": "failed", "error": "CUDA out of memory"}
        _job(root, f"{i}_vae_mnist", overrides, metrics)
    return root


def _printed(view, result: dict, width: int) -> tuple[list[str], list[str], str]:
    """(plain lines, lines with their ANSI styles, all text) of the report printed on a terminal of `width`."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system="standard", highlight=False)
    print_report(view, result, console)
    styled = buffer.getvalue().splitlines()
    plain = [ANSI.sub("", line) for line in styled]
    return plain, styled, "\n".join(plain)


def _header(plain: list[str]) -> list[str]:
    """The table's column names: metric names print on two lines (`val/` over `loss`), right-aligned."""
    at = next(i for i, line in enumerate(plain) if line.startswith("job"))
    cells = re.compile(r"\S+(?: \S+)*")
    tops = {m.end(): m.group() for m in cells.finditer(plain[at - 1])} if "/" in plain[at - 1] else {}
    return [tops.get(m.end(), "") + m.group() for m in cells.finditer(plain[at])]


def test_default_view_fits_the_terminal_with_the_optimised_metric_first_and_the_best_run_starred(tmp_path):
    sweep = _vae_sweep(tmp_path / "sweep")
    result = report(sweep)
    view = result["view"]
    assert view.keys == ["model.latent_dim", "model.beta"] and "model" in view.constant
    assert view.metrics[0] == "val/loss" and view.best.name == "2_vae_mnist"
    assert not {"test/iwae_k", "test/n_images", "eval/n_fake", "perf/train_items_per_sec"} & set(view.metrics)
    shown = {}
    for width in (80, 110):
        plain, styled, text = _printed(view, result, width)
        assert all(len(line) <= width for line in plain if not line.startswith(("table:", "plot:"))), text
        header = _header(plain)
        assert header[:4] == ["job", "latent_dim", "beta", "val/loss ↓"], text
        assert header[-1] == "status" and "iwae_k" not in text and "n_images" not in text
        shown[width] = header[4:-1]
        best = [i for i, line in enumerate(plain) if re.match(r"★\d", line)]
        assert len(best) == 1 and plain[best[0]].split()[:4] == ["★2", "16", "1.0", "101.18"], text
        assert "\x1b[1m" in styled[best[0]]  # bold
        assert any(line.split()[:1] == ["4"] and line.rstrip().endswith("failed") for line in plain), text
        assert any(line.split()[:1] == ["5"] and line.rstrip().endswith("running") for line in plain), text
        assert "job 4 failed [latent_dim=32 beta=1.0]: CUDA out of memory" in text
        assert "same in every job: model=vae dataset=mnist" in text
    # The family's headline metrics follow, in reading order, as many as fit: more on a wider terminal.
    assert shown[80][:1] == ["eval/domain_fid"] and len(shown[110]) > len(shown[80]), shown
    assert shown[110] == view.metrics[1:len(shown[110]) + 1]


def test_close_values_print_and_plot_apart(tmp_path):
    sweep = _vae_sweep(tmp_path / "sweep")
    view = build_view(sweep, ["test/nll_iwae"])
    plain, _styled, text = _printed(view, report(sweep, ["test/nll_iwae"]), 80)
    assert "211.6" in text and "214.3" in text and "101.18" in text and "101.25" in text
    fig = build_figure(view)
    nll = next(ax for ax in fig.axes if ax.get_title().startswith("test/nll_iwae"))
    low, high = nll.get_ylim()
    assert 205 < low < 209.9 and 214.3 < high < 220  # a range around the data, not from zero
    assert nll.get_ylabel() == "test/nll_iwae (nats)"


def test_the_plot_leads_with_the_optimised_metric_and_stars_the_best_job(tmp_path):
    config = "optimized_metric: eval/precision\nhydra:\n  sweeper:\n    direction: maximize\n"
    sweep = _vae_sweep(tmp_path / "sweep", config)
    (sweep / "1_vae_mnist" / "metrics.json").write_text(json.dumps(
        {"status": "completed", "metrics": {**_vae_metrics(214.3, 101.31, 29.0)["metrics"], "eval/precision": 0.7}}))
    result = report(sweep)
    view = result["view"]
    assert (view.optimized, view.direction, view.best.name) == ("eval/precision", "max", "1_vae_mnist")
    fig = build_figure(view)
    first = fig.axes[0]
    assert first.get_title() == "eval/precision (higher is better)"
    assert [t.get_text() for t in first.get_xticklabels()][:2] == ["latent_dim=8\nbeta=1.0", "latent_dim=8\nbeta=2.0"]
    stars = [line for line in first.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [1] and list(stars[0].get_ydata()) == [0.7]
    assert "eval/precision, higher is better: best 0.7 at job 1" in fig.get_suptitle()
    sidecar = json.loads((sweep / "report.json").read_text())
    assert sidecar["panels"][0] == "eval/precision (higher is better)" and sidecar["best_job"] == "1_vae_mnist"
    assert sidecar["panels"][1].startswith("eval/domain_fid")


def test_no_view_replaces_the_files_of_another(tmp_path, monkeypatch, capsys):
    sweep = _vae_sweep(tmp_path / "sweep")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = genrun_in_process(["report", str(sweep)], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    default = {name: (sweep / name).read_bytes() for name in ("report.csv", "report.png", "report.json")}
    code, out, err = genrun_in_process(["report", str(sweep), "--metrics", "test/nll_iwae,train/kl"], tmp_path,
                                       monkeypatch, capsys)
    assert code == 0, err
    assert {name: (sweep / name).read_bytes() for name in default} == default
    assert (sweep / "report-test_nll_iwae+train_kl.csv").read_text().startswith(
        "job,model.latent_dim,model.beta,val/loss,test/nll_iwae,train/kl,best,status,error")
    # --all: every column, said to be wider than the terminal, in files of its own.
    code, out, err = genrun_in_process(["report", str(sweep), "--all"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "(--all: the table is" in out and "wider than this terminal's 80)" in out, out
    assert "test/iwae_k" in (sweep / "report-all.csv").read_text().splitlines()[0]
    assert {name: (sweep / name).read_bytes() for name in default} == default
    # The same view again refreshes its own files (jobs may have finished since).
    assert genrun_in_process(["report", str(sweep)], tmp_path, monkeypatch, capsys)[0] == 0
    # A file genrun report did not make is refused in one line, unless --force.
    own = tmp_path / "mine.png"
    own.write_bytes(b"my own figure")
    code, out, err = genrun_in_process(["report", str(sweep), "--out", str(own)], tmp_path, monkeypatch, capsys)
    assert code == 1 and own.read_bytes() == b"my own figure"
    assert err.strip() == f"genrun: error: {own}: exists and was not made by genrun report; pass --force to replace " \
                          "it, or --out to write elsewhere"
    notes = tmp_path / "notes.json"
    notes.write_text("{}")
    code, out, err = genrun_in_process(["report", str(sweep), "--out", str(tmp_path / "notes.png")], tmp_path,
                                       monkeypatch, capsys)
    assert code == 1 and notes.read_text() == "{}" and "notes.json: exists and was not made by" in err
    code, out, err = genrun_in_process(["report", str(sweep), "--out", str(own), "--force"], tmp_path, monkeypatch,
                                       capsys)
    assert code == 0 and own.read_bytes() != b"my own figure" and (tmp_path / "mine.csv").is_file()


def test_an_unknown_metric_is_one_line_with_the_near_names(tmp_path, monkeypatch, capsys):
    sweep = _vae_sweep(tmp_path / "sweep")
    code, _out, err = genrun_in_process(["report", str(sweep), "--metrics", "test/nll_iwea"], tmp_path, monkeypatch,
                                        capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("genrun: error: --metrics: no job logged test/nll_iwea (did you mean test/nll_iwae")
    assert not list(sweep.glob("report*"))
    code, _out, err = genrun_in_process(["report", str(sweep / "0_vae_mnist")], tmp_path, monkeypatch, capsys)
    assert code == 1 and err.strip().endswith("0_vae_mnist: a single run, not a sweep (pass a multirun directory: "
                                              "outputs/multirun/train/...)")


def test_the_end_of_a_sweep_names_the_best_job_and_the_report_command(tmp_path, capsys):
    from omegaconf import OmegaConf

    from genrun.sweeps import SweepSummary

    sweep = _vae_sweep(tmp_path / "my sweep")
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    err = capsys.readouterr().err
    assert f"sweep finished: 4 done, 2 failed ({sweep})" in err
    assert "best val/loss (lower is better): 101.18 in 2_vae_mnist [latent_dim=16 beta=1.0]" in err
    assert f"next: genrun report '{sweep}'" in err


def test_report_orders_jobs_and_marks_unfinished_ones(tmp_path):
    _job(tmp_path, "10_dcgan_mnist", ["model.lr=0.0002", "seed=1"], {"status": "completed",
                                                                      "metrics": {"val/swd": 0.5, "val/swd_step": 9}})
    _job(tmp_path, "2_dcgan_mnist", ["model.lr=0.0001", "seed=1"], {"status": "completed",
                                                                     "metrics": {"val/swd": "nan"}})
    _job(tmp_path, "3_dcgan_mnist", ["model.lr=0.0001", "seed=2"], None)
    result = report(tmp_path)
    # No multirun.yaml: the optimised metric is genrun's default, val/loss, which these jobs did not log.
    assert result["header"] == ["job", "model.lr", "seed", "val/loss", "val/swd", "best", "status", "error"]
    assert [row[0] for row in result["rows"]] == ["2_dcgan_mnist", "3_dcgan_mnist", "10_dcgan_mnist"]
    assert result["rows"][0][4] == "nan" and result["rows"][1][-2] == "running"
    assert result["view"].best is None


def test_report_needs_no_torch_and_names_a_bad_directory(tmp_path):
    _vae_sweep(tmp_path / "sweep")
    code = ("import sys\nfrom genrun.cli import main\ncodes = main(['report', 'nowhere']), main(['report', 'sweep'])\n"
            "assert 'torch' not in sys.modules and 'hydra' not in sys.modules\nsys.exit(10 * codes[0] + codes[1])")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 10 and "nowhere: no such directory" in result.stderr, result.stderr
    assert (tmp_path / "sweep" / "report.png").is_file()
