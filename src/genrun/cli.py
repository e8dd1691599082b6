"""The `genrun` command: picks the task from argv, checks the overrides, hands the rest to Hydra.

Imports neither torch nor Lightning, so `genrun --help` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
import time

from genrun.configs import config_dir, config_groups

TASKS = {
    "train": "fit a model on a dataset; writes checkpoints, TensorBoard logs, samples, metrics.json",
    "sample": "draw from a trained model (newest run of model=..., or ckpt=FILE|RUN_DIR)",
    "evaluate": "measure a trained model on held-out data (likelihood, sample quality)",
    "report": "table and plot of a sweep's overrides against final metrics: genrun report MULTIRUN_DIR",
}
# Environment set by a DDP parent so that the processes Lightning starts re-enter the same job.
DDP_TASK_ENV = "GENRUN_DDP_TASK"
DDP_ARGS_ENV = "GENRUN_DDP_ARGS"
# Hydra flags that consume the next argument.
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion"}
_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_NO_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "--version", "-sc", "--shell-completion"}


def usage() -> str:
    lines = ["usage: genrun TASK [key=value ...] [-m] [hydra flags]", "", "tasks:"]
    lines += [f"  {name:<9} {text}" for name, text in TASKS.items()]
    lines += ["", "config groups (choose with group=choice):"]
    for group, choices in config_groups().items():
        if group not in ("hydra", "paths"):
            lines.append(f"  {group:<11} {', '.join(choices)}")
    lines += [
        "",
        "examples:",
        "  genrun train model=vae dataset=mnist",
        "  genrun sample model=vae temperature=0.8 num_samples=64 seed=0",
        "  genrun train -m model=vae model.latent_dim=2,16",
        "  genrun train experiment=vae_mnist trainer=cpu",
        "  genrun train --cfg job            (print the composed config)",
        "",
        "Hydra's flags work as usual: -m/--multirun, --cfg job, --info, hydra.run.dir=..., +key=value.",
    ]
    return "\n".join(lines)


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra flags (with their values) from key=value overrides."""
    flags, overrides = [], []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            flags.append(arg)
            info_choice = arg in ("-i", "--info") and args[i + 1 : i + 2] and args[i + 1] in _INFO_CHOICES
            takes_value = arg in _FLAGS_WITH_VALUE or info_choice
            if takes_value and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def _ddp_child_job() -> tuple[str, list[str]] | None:
    """In a process Lightning started for DDP, the exact job the parent runs; else None."""
    if "LOCAL_RANK" in os.environ and os.environ.get(DDP_TASK_ENV):
        return os.environ[DDP_TASK_ENV], json.loads(os.environ.get(DDP_ARGS_ENV, "[]"))
    return None


def _fail(message: str, code: int = 1) -> int:
    print(f"genrun: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as stop:  # Ctrl-C: no traceback (training prints its own line)
        if str(stop) != "reported":  # genrun.tasks.REPORTED, not imported here: this module stays light
            print("genrun: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    child = _ddp_child_job()
    if child:
        task, args = child
    else:
        if not args or args[0] in ("-h", "--help", "help"):
            print(usage())
            return 0
        task, args = args[0], args[1:]
        if task not in TASKS:
            print(f"genrun: unknown task {task!r} (choose from {', '.join(TASKS)})\n", file=sys.stderr)
            print(usage(), file=sys.stderr)
            return 2
        if task == "report":  # reads files only: no Hydra, no torch
            from genrun.report import main as report_main

            return report_main(args)
    from genrun.errors import GenrunError
    from genrun.overrides import check_overrides, resume_overrides

    flags, overrides = split_args(args)
    resumed = None
    try:
        if not child and task == "train":
            overrides, resumed = resume_overrides(overrides, multirun=bool({"-m", "--multirun"} & set(flags)))
        if not child and not _NO_CHECK_FLAGS & set(flags):
            check_overrides(task, overrides)
    except GenrunError as err:
        return _fail(str(err))
    if resumed is None:
        return _run_hydra(task, flags + overrides)
    return _resume(resumed, task, flags + overrides)


def _resume(run_dir, task: str, args: list[str]) -> int:
    """Run a resume; if it fails before writing a checkpoint, put the run's files back as they were."""
    from genrun.runs import RunSnapshot

    snapshot = RunSnapshot(run_dir)
    code = 130
    try:
        code = _run_hydra(task, args)
    finally:
        if code != 0 and snapshot.checkpoint_unchanged():
            snapshot.restore()
            print(f"genrun: {run_dir} is as it was before this resume", file=sys.stderr)
    return code


def _run_hydra(task: str, args: list[str]) -> int:
    import hydra

    from genrun import resolvers

    resolvers.register()
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")

    def task_function(cfg):
        from genrun.tasks import run_task

        return run_task(task, cfg)

    entry = hydra.main(config_path=str(config_dir()), config_name=task, version_base="1.3")(task_function)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *args]
    from genrun import sweeps

    sweeps.reset()
    started = time.time()
    try:
        entry()
    except KeyboardInterrupt:
        if task == "train":
            _discard_half_made_run(started)
        raise
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = saved_argv
    return 1 if sweeps.failed_jobs() else 0


def _discard_half_made_run(started: float) -> None:
    """Ctrl-C between Hydra making the job's directory and training: remove it if this process made it and
    it holds no checkpoint (genrun.tasks.run_task does the same once the task runs)."""
    from pathlib import Path

    from genrun.resolvers import JOB_DIRS
    from genrun.tasks import discard_unstarted_run

    if JOB_DIRS:
        run_dir = Path(JOB_DIRS[-1])
        if run_dir.is_dir() and run_dir.stat().st_ctime >= started - 1:
            discard_unstarted_run(run_dir)


if __name__ == "__main__":
    sys.exit(main())
