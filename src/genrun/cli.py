"""The `genrun` command: picks the task from argv, checks the overrides, hands the rest to Hydra.

Imports neither torch nor Lightning, so `genrun --help` answers at once.
"""

from __future__ import annotations

import json
import os
import re
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
# Hydra flags that choose where configs come from (-cd, -cn, -cp): the job's overrides do not record them, so
# the DDP processes read them from here.
DDP_FLAGS_ENV = "GENRUN_DDP_CONFIG_FLAGS"
_CONFIG_FLAGS = (("-cd", "--config-dir"), ("-cn", "--config-name"), ("-cp", "--config-path"))
# Hydra flags that consume the next argument.
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion"}
_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
# Flags after which genrun does not check the overrides: nothing composes, or Hydra reads another config tree.
_NO_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "--version", "-cp", "--config-path"}
# Hydra's commands, of which one runs: Hydra answers two with a bare ValueError and a traceback.
_COMMANDS = {"-m": "-m", "--multirun": "-m", "-c": "--cfg", "--cfg": "--cfg", "-i": "--info", "--info": "--info",
             "-r": "--run", "--run": "--run", "-sc": "-sc", "--shell-completion": "-sc"}


def usage() -> str:
    lines = ["usage: genrun TASK [key=value ...] [-m] [hydra flags]", "", "tasks:"]
    lines += [f"  {name:<9} {text}" for name, text in TASKS.items()]
    lines += ["", "config groups (choose with group=choice):"]
    groups = {group: choices for group, choices in config_groups().items() if group not in ("hydra", "paths")}
    width = max(map(len, groups), default=0)
    lines += [f"  {group:<{width}} {', '.join(choices)}" for group, choices in groups.items()]
    lines += [
        "",
        "examples:",
        "  genrun train model=vae dataset=mnist",
        "  genrun sample model=vae temperature=0.8 num_samples=64 seed=0",
        "  genrun sample model=ddpm --help   (that model's own knobs: sampler=ddim steps=50 guidance=3 ...)",
        "  genrun train -m model=vae model.latent_dim=2,16",
        "  genrun train experiment=vae_mnist trainer=cpu",
        "  genrun train --cfg job            (print the composed config)",
        "  genrun train -cd my_configs experiment=mine   (your own configs beside genrun's)",
        "  genrun train -m hydra/launcher=joblib model.latent_dim=2,16   (jobs in parallel; needs the plugin)",
        "  genrun train hparams_search=vae_optuna   (Bayesian search with pruning; the same command continues it)",
        "",
        "Hydra's flags work as usual: -m/--multirun, --cfg job, --info, -cd DIR, hydra.run.dir=..., +key=value.",
        'Shell completion (bash, zsh): eval "$(genrun -sc install=bash)"',
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


def _flag_value(flags: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the last of `names` among `flags` (`-cd DIR` or `--config-dir=DIR`), else None."""
    value = None
    for i, flag in enumerate(flags):
        name, eq, inline = flag.partition("=")
        if name in names:
            value = inline if eq else (flags[i + 1] if i + 1 < len(flags) else None)
    return value


def _clashing_commands(flags: list[str]) -> str | None:
    """One line when the flags ask Hydra for two commands (say -m and --cfg), which it refuses."""
    chosen = list(dict.fromkeys(_COMMANDS[f.split("=")[0]] for f in flags if f.split("=")[0] in _COMMANDS))
    if len(chosen) < 2:
        return None
    return (f"{chosen[0]} and {chosen[1]} cannot be combined: Hydra runs one of --run, -m, --cfg, --info and "
            "-sc per command")


def _ddp_child_job() -> tuple[str, list[str]] | None:
    """In a process Lightning started for DDP, the exact job the parent runs; else None."""
    if "LOCAL_RANK" in os.environ and os.environ.get(DDP_TASK_ENV):
        flags = json.loads(os.environ.get(DDP_FLAGS_ENV, "[]"))
        return os.environ[DDP_TASK_ENV], [*flags, *json.loads(os.environ.get(DDP_ARGS_ENV, "[]"))]
    return None


def _pass_config_flags_to_ddp(flags: list[str]) -> None:
    """Record this command's -cd/-cn/-cp for the processes DDP starts (absolute, as their cwd may differ)."""
    passed = []
    for short, long in _CONFIG_FLAGS:
        value = _flag_value(flags, (short, long))
        if value is not None:
            passed += [short, os.path.abspath(value) if short != "-cn" else value]
    if passed:
        os.environ[DDP_FLAGS_ENV] = json.dumps(passed)
    else:
        os.environ.pop(DDP_FLAGS_ENV, None)


def _fail(message: str, code: int = 1) -> int:
    print(f"genrun: error: {message}", file=sys.stderr)
    return code


def entry() -> int:
    """The `genrun` console script and `python -m genrun`: `main` as a process of its own, which holds off
    Python's full garbage collections while it loads its libraries (genrun.collector)."""
    from genrun.collector import hold_full_collections

    hold_full_collections()
    return main()


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
        if args and args[0] in ("-sc", "--shell-completion"):  # completion of the task names comes first
            return _shell_completion(None, args)
        if not args or args[0] in ("-h", "--help", "help"):
            print(usage())
            return 0
        task, args = args[0], args[1:]
        if task not in TASKS:
            print(f"genrun: unknown task {task!r} (choose from {', '.join(TASKS)})\n", file=sys.stderr)
            print(usage(), file=sys.stderr)
            return 2
        if task == "report":  # reads files only: no Hydra, no torch
            from genrun.collector import libraries_loaded
            from genrun.report import main as report_main

            libraries_loaded(task)
            return report_main(args)
    from genrun.allocator import keep_freed_memory

    keep_freed_memory()  # before torch allocates anything: CPU tensors reuse freed pages
    from genrun.errors import GenrunError
    from genrun.overrides import check_overrides, knob_overrides, model_knob_overrides
    from genrun.resume import resume_overrides

    flags, overrides = split_args(args)
    if not child and task in ("sample", "evaluate") and {"-h", "--help"} & set(flags):
        from genrun.knob_help import knob_help

        try:
            print(knob_help(task, overrides))
        except BrokenPipeError:  # `genrun sample --help | head`
            sys.stderr.close()
        return 0
    if not child and _flag_value(flags, ("-sc", "--shell-completion")) is not None:
        return _shell_completion(task, args)
    clash = _clashing_commands(flags)
    if clash:
        return _fail(clash)
    multirun = bool({"-m", "--multirun"} & set(flags))
    resumed = None
    try:
        config_dir = _config_dir(flags)
        if not child and task == "train":
            overrides = model_knob_overrides(overrides)
            overrides, resumed = resume_overrides(overrides, multirun=multirun, config_dir=config_dir)
        if not child and task in ("sample", "evaluate"):
            overrides = knob_overrides(task, overrides)
        if not child and not _NO_CHECK_FLAGS & {f.split("=")[0] for f in flags}:
            overrides = check_overrides(task, overrides, multirun=multirun, config_dir=config_dir,
                                        config_name=_flag_value(flags, ("-cn", "--config-name")))
    except GenrunError as err:
        return _fail(str(err))
    if not child:
        _pass_config_flags_to_ddp(flags)
    if resumed is None:
        return _run_hydra(task, flags + overrides)
    return _resume(resumed, task, flags + overrides)


def _config_dir(flags: list[str]) -> str | None:
    """The --config-dir of this command (Hydra adds it to the search path after genrun's configs)."""
    from genrun.errors import GenrunError

    value = _flag_value(flags, ("-cd", "--config-dir"))
    if value is not None and not os.path.isdir(value):
        raise GenrunError(f"--config-dir {value}: no such directory")
    return value


def _shell_completion(task: str | None, args: list[str]) -> int:
    """`-sc install=bash` prints Hydra's completion script for `genrun`; the script asks `genrun -sc
    query=bash` with the line typed so far in COMP_LINE. genrun completes the task name itself, then hands
    Hydra the line without the task, so Hydra completes that task's overrides."""
    command = _flag_value(args, ("-sc", "--shell-completion")) or ""
    if not command.startswith("query="):
        return _run_hydra(task or "train", ["-sc", command], program="genrun")
    line = os.environ.get("COMP_LINE", "")
    found = re.match(r"(\s*\S+\s+)(\S+)(\s.*)?$", line, re.DOTALL)
    if not found or found.group(3) is None:  # the task itself is being typed
        typed = found.group(2) if found else ""
        sep = "\n" if command == "query=fish" else " "
        print(sep.join(name for name in TASKS if name.startswith(typed)))
        return 0
    if found.group(2) not in TASKS or found.group(2) == "report":
        return 0  # nothing to offer: the shell falls back to file names
    os.environ["COMP_LINE"] = found.group(1) + found.group(3).lstrip()
    return _run_hydra(found.group(2), ["-sc", command], program="genrun")


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


def _run_hydra(task: str, args: list[str], program: str | None = None) -> int:
    """Run Hydra's main for `task` with `args` as its command line (`program` as sys.argv[0] if given: the
    completion script names the command it completes after it)."""
    import hydra

    from genrun import resolvers

    resolvers.register()
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")

    def task_function(cfg):
        from genrun.tasks import run_task

        return run_task(task, cfg)

    entry = hydra.main(config_path=str(config_dir()), config_name=task, version_base="1.3")(task_function)
    saved_argv = sys.argv
    sys.argv = [program or saved_argv[0], *args]
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
    sys.exit(entry())
