"""The one progress mechanism: bars with an estimate on a terminal, single lines in logs, Lightning fits on it."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap

import torch

from genrun import progress

# A stage line, then a loop long enough for the (lowered) estimate threshold of a log.
SCRIPT = textwrap.dedent("""
    import time
    from genrun import progress
    progress.ESTIMATE_AFTER_S, progress.ESTIMATE_WORTH_S = 0.2, 0.5
    progress.stage("waiting for the slow loop ...")
    for _ in progress.track(range(12), "slow loop"):
        time.sleep(0.1)
    progress.stage("done")
""")


def run_script(terminal: bool, **env) -> str:
    """stderr of SCRIPT in a fresh interpreter, through a pseudo-terminal or a pipe."""
    full_env = {**os.environ, "TERM": "xterm", **env}
    if not terminal:
        result = subprocess.run([sys.executable, "-c", SCRIPT], env=full_env, capture_output=True, text=True,
                                timeout=120, check=True)
        return result.stderr
    parent, child = pty.openpty()
    with subprocess.Popen([sys.executable, "-c", SCRIPT], env=full_env, stderr=child, stdout=subprocess.DEVNULL) as p:
        os.close(child)
        chunks = []
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert p.wait(timeout=120) == 0
    os.close(parent)
    return b"".join(chunks).decode(errors="replace")


def test_not_a_terminal_gets_stage_lines_and_one_estimate_but_no_bars():
    for env in ({}, {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}):  # CI's colour settings do not bring bars back
        err = run_script(terminal=False, **env)
        lines = err.splitlines()
        assert "\r" not in err and "\x1b[" not in err, repr(err)
        assert lines[0] == "waiting for the slow loop ..." and lines[-1] == "done", lines
        [estimate] = lines[1:-1]
        assert estimate.startswith("  slow loop: ") and " of 12 in " in estimate and estimate.endswith(" left")


def test_a_terminal_gets_a_redrawn_bar_with_an_estimate_that_vanishes():
    out = run_script(terminal=True)
    assert "waiting for the slow loop ..." in out and "done" in out
    assert "slow loop" in out and "eta" in out and "/12" in out  # drawn: name, count, estimate
    assert "\r" in out or "\x1b[" in out  # redrawn in place
    assert " of 12 in " not in out  # the log's estimate line is for logs only


def test_a_lightning_fit_shows_on_the_bar_per_step_with_its_epoch(tmp_path, monkeypatch, capsys):
    """The domain classifier's recipe (Lightning's own bar off) reports each step, epoch e/E in the name."""
    from genrun.evaluation.domain_classifier import train_recipe

    monkeypatch.setattr(progress, "ESTIMATE_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "ESTIMATE_WORTH_S", 0.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(256, 1, 28, 28, generator=g), torch.arange(256) % 10
    info = {"channels": 1, "image_size": 28, "num_classes": 10}
    capsys.readouterr()
    train_recipe(x, y, info, {"epochs": 2, "batch_size": 128, "seed": 0, "version": 0})
    err = capsys.readouterr().err
    assert "  training the domain classifier, epoch 1/2: 1 of 4 in " in err, err
