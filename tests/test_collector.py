"""genrun's process entry holds off Python's full garbage collections while torch and Lightning load."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

from conftest import check_ok

# Counts the full (oldest-generation) collections of the process it runs in, then prints what it saw.
_COUNTING = """
import gc, json, sys
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "stop" and info["generation"] == 2 else None)
{body}
print(json.dumps({{"full": len(full), "frozen": gc.get_freeze_count(), "threshold": list(gc.get_threshold()),
                  "torch": "torch" in sys.modules}}))
"""


def _counted(body: str, cwd) -> dict:
    env = {**os.environ, "GENRUN_DATA_DIR": str(cwd / "data")}
    result = check_ok(subprocess.run([sys.executable, "-c", _COUNTING.format(body=body)], capture_output=True,
                                     text=True, cwd=cwd, env=env, timeout=300))
    return json.loads(result.stdout.strip().splitlines()[-1])


def _entry(args: list[str], code: int) -> str:
    return f"from genrun.cli import entry\nsys.argv = ['genrun', *{args!r}]\nassert entry() == {code}"


def test_process_entry_loads_torch_without_a_full_collection(workdir):
    plain = _counted("import torch", workdir)
    assert plain["torch"] and plain["full"] >= 1  # the premise: loading torch runs full collections
    # A real job that gets as far as its task (which loads torch, then finds the checkpoint unreadable).
    (workdir / "junk.ckpt").write_bytes(b"not a checkpoint")
    job = _counted(_entry(["sample", "ckpt=junk.ckpt"], 1), workdir)
    assert job["torch"] and job["full"] == 0
    # Everything the libraries left alive is frozen, and full collections have their threshold back.
    assert job["frozen"] > 50_000
    assert job["threshold"] == plain["threshold"]


def test_printing_the_config_through_the_entry_loads_no_torch(workdir):
    printed = _counted(_entry(["train", "--cfg", "job"], 0), workdir)
    assert not printed["torch"] and printed["frozen"] == 0


def test_main_inside_another_program_leaves_its_collector_alone(workdir, monkeypatch, capsys):
    from genrun.cli import main

    monkeypatch.chdir(workdir)
    before = gc.isenabled(), gc.get_threshold()
    frozen = gc.get_freeze_count()
    assert main(["train", "--cfg", "job"]) == 0
    assert "model:" in capsys.readouterr().out
    assert (gc.isenabled(), gc.get_threshold()) == before
    # Frozen objects that die leave the count; a freeze here would have added everything this process holds.
    assert gc.get_freeze_count() <= frozen


def test_report_gives_full_collections_back_before_it_reads_a_sweep(workdir):
    # `genrun report` loads no torch; it releases the hold at once, so a long report is collected as usual.
    reported = _counted(_entry(["report", "nowhere"], 1), workdir)
    assert not reported["torch"] and reported["frozen"] > 0
    assert reported["threshold"] == list(gc.get_threshold())
