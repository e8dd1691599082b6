"""Checkpoints: weights-only loading refuses crafted pickles; saves are atomic and finite-only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import run_genrun
from genrun.checkpoint import TMP_PREFIX, atomic_save, load_checkpoint, remove_stale_temporaries
from genrun.errors import GenrunError


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_and_never_runs(workdir):
    marker = workdir / "pwned"
    evil = workdir / "evil.ckpt"
    torch.save({"state_dict": {}, "genrun": _Payload(marker)}, evil)
    result = run_genrun(["sample", f"ckpt={evil}"], workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "refused" in result.stderr and str(evil) in result.stderr and "posix.system" in result.stderr
    assert "weights_only` set to `False`" not in result.stderr  # torch's advice to load it unsafely is dropped
    assert not marker.exists()
    with pytest.raises(GenrunError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_garbage_file_is_a_clear_error(workdir):
    junk = workdir / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    for ckpt in (junk, "junk.ckpt"):  # absolute, and relative to the working directory
        result = run_genrun(["sample", f"ckpt={ckpt}"], workdir)
        assert result.returncode == 1 and "junk.ckpt: not a PyTorch checkpoint" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_non_finite_weights_are_never_saved(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_save({"state_dict": {"w": torch.ones(3)}}, target)
    with pytest.raises(GenrunError, match="non-finite"):
        atomic_save({"state_dict": {"w": torch.tensor([1.0, float("nan")])}}, target)
    assert torch.equal(load_checkpoint(target)["state_dict"]["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [target]


def test_killed_mid_save_leaves_previous_checkpoint_whole(tmp_path):
    target = tmp_path / "last.ckpt"
    writer = textwrap.dedent(f"""
        import torch
        from genrun.checkpoint import atomic_save
        big = {{"w": torch.randn(6_000_000)}}
        i = 0
        while True:
            big["w"][0] = i
            atomic_save({{"state_dict": big, "step": i}}, {str(target)!r})
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "0"  # one complete save exists
    time.sleep(0.35)  # now it is (very likely) in the middle of another save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    payload = load_checkpoint(target)  # whole, loadable, and consistent with its own step counter
    assert payload["state_dict"]["w"][0].item() == payload["step"]
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert all(p.name.startswith(TMP_PREFIX) for p in leftovers)
    # a temporary left by SIGKILL is removed when the run is next started or resumed
    remove_stale_temporaries(tmp_path)
    assert list(tmp_path.iterdir()) == [target]
