"""Hold off Python's full garbage collections while a genrun process loads its libraries.

Importing torch, Lightning and Hydra leaves hundreds of thousands of long-lived objects behind (modules,
classes, functions). CPython runs a full collection each time the objects that survived its young
collections grow by a quarter, and a full collection traverses every tracked object: while the libraries
load, these collections find almost nothing to free and take a large share of start-up
(bench/results/startup_gc.md). genrun's process entry holds them off: young collections still run, so
short-lived cycles are freed as usual. When the job starts (`genrun.tasks.run_task`; `genrun report`
before it reads anything), the task's libraries are loaded and everything alive then is frozen
(`gc.freeze`): later full collections skip it, including the one CPython runs at exit, and forked
DataLoader workers share those pages instead of copying them. Commands that print and stop (`--cfg`,
`--info`, shell completion) load no torch and keep the hold until they exit.

Only a process that genrun starts holds collections (`hold_full_collections` at the console entry);
`genrun.cli.main` called inside another program (a notebook, a test) changes nothing in its collector. The
test suite holds and freezes once itself, at session start (tests/conftest.py).
"""

from __future__ import annotations

import gc
import importlib

# What each task imports before its work starts: train needs Lightning; sample and evaluate avoid it.
TASK_LIBRARIES = {"train": ("torch", "lightning.pytorch"), "sample": ("torch",), "evaluate": ("torch",)}
# A threshold for the oldest generation that no import reaches: its collections wait for `libraries_loaded`.
_NEVER = 1 << 30

_held_thresholds: tuple[int, int, int] | None = None


def hold_full_collections() -> None:
    """From now until `libraries_loaded`, only young collections run (call once, at the process entry)."""
    global _held_thresholds
    if _held_thresholds is None and gc.isenabled():
        _held_thresholds = gc.get_threshold()
        gc.set_threshold(_held_thresholds[0], _held_thresholds[1], _NEVER)


def libraries_loaded(task: str) -> None:
    """Import what `task` needs, freeze everything alive, and give full collections back their threshold.

    Without a hold (genrun called inside another program) nothing is imported early and nothing frozen.
    """
    global _held_thresholds
    if _held_thresholds is None:
        return
    try:
        for name in TASK_LIBRARIES.get(task, ()):
            importlib.import_module(name)
    finally:
        gc.freeze()
        gc.set_threshold(*_held_thresholds)
        _held_thresholds = None
