"""Who started this process: torchrun, srun, a submitit job, or nobody; what that means for the run.

Every process of one distributed launch runs the whole `genrun train` command. They must agree on one run
directory (Hydra's run id has a timestamp and a process id in it, which differ between processes), only
rank 0 may write the run's files, and the Trainer's `devices` x `num_nodes` must match the processes that
were started. A requeued or restarted job finds its run directory again and continues from its last
checkpoint. Imports neither torch nor Lightning: the run-directory resolver reads it before Hydra starts.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from genrun.errors import GenrunError

# Set to name the run directory of a launch yourself (all processes must see the same value).
RUN_ID_ENV = "GENRUN_RUN_ID"

log = logging.getLogger("genrun")


@dataclass(frozen=True)
class Launch:
    """The processes started together with this one. `launcher` is None for a plain command."""

    launcher: str | None = None  # "torchrun", "srun" or "submitit"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    nodes: int = 1
    restarted: bool = False  # a requeued SLURM job or a torchrun restart: continue the run it left

    @property
    def is_zero(self) -> bool:
        return self.rank == 0


def _int(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _slurm_job_id() -> str | None:
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _is_torchrun() -> bool:
    # Lightning's TorchElasticEnvironment asks for the same variables.
    return all(k in os.environ for k in ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"))


def _is_srun() -> bool:
    """Several tasks started by srun (one task needs no agreement; `srun --pty bash` is not a launch)."""
    env = os.environ
    return ("SLURM_STEP_ID" in env and _int("SLURM_NTASKS", 1) > 1
            and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"))


def detect() -> Launch:
    """The launch this process belongs to, read from the environment its launcher set."""
    env = os.environ
    restarted_slurm = _int("SLURM_RESTART_COUNT") > 0
    if env.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
        per_node = max(1, job.num_tasks // max(1, job.num_nodes))
        return Launch("submitit", job.global_rank, job.local_rank, job.num_tasks, per_node, job.num_nodes,
                      restarted_slurm)
    if _is_torchrun():
        world, per_node = _int("WORLD_SIZE", 1), max(1, _int("LOCAL_WORLD_SIZE", 1))
        return Launch("torchrun", _int("RANK"), _int("LOCAL_RANK"), world, per_node, max(1, world // per_node),
                      _int("TORCHELASTIC_RESTART_COUNT") > 0)
    if _is_srun():
        world, nodes = _int("SLURM_NTASKS", 1), max(1, _int("SLURM_JOB_NUM_NODES", _int("SLURM_NNODES", 1)))
        return Launch("srun", _int("SLURM_PROCID"), _int("SLURM_LOCALID"), world, max(1, world // nodes), nodes,
                      restarted_slurm)
    return Launch()


def _process_start(pid: int) -> str | None:
    """When process `pid` started, as a run id's timestamp (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22 of the whole line: start time in clock ticks after boot
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return f"{datetime.fromtimestamp(boot + ticks / os.sysconf('SC_CLK_TCK')):%Y-%m-%d_%H-%M-%S}"
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def shared_run_id() -> str | None:
    """A run id every process of this launch computes alike (and a requeued job again), else None.

    torchrun on one node: its agent process (our parent) with its start time; over several nodes the
    rendezvous id, which every node is given. srun: the job and step ids, which a requeued job repeats.
    A submitit job needs none: its run directory was resolved once where the sweep was launched.
    """
    env = os.environ
    if env.get(RUN_ID_ENV):
        return env[RUN_ID_ENV]
    if env.get("SUBMITIT_EXECUTOR"):
        return None
    if _is_torchrun():
        rendezvous = env.get("TORCHELASTIC_RUN_ID", "none")
        if _int("WORLD_SIZE", 1) > _int("LOCAL_WORLD_SIZE", 1) and rendezvous not in ("", "none"):
            return f"torchrun-{rendezvous}"
        parent = os.getppid()
        started = _process_start(parent)
        return f"{started}_torchrun{parent}" if started else f"torchrun{parent}"
    if _is_srun():
        return f"slurm{_slurm_job_id()}.{env['SLURM_STEP_ID']}"
    return None


def _manual_multi_node() -> bool:
    """Lightning's own multi-node launch: the user starts each node with NODE_RANK and MASTER_ADDR set."""
    return "NODE_RANK" in os.environ and "MASTER_ADDR" in os.environ


def _as_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def prepare(trainer_cfg) -> Launch:
    """Check the trainer against the launch, fit it to one where it was left at one process, and export the
    torch distributed environment a submitit job lacks (Lightning would otherwise start its own processes
    inside each task: hydra issue 2231). Raises GenrunError naming the setting that cannot work."""
    from omegaconf import open_dict

    launch = detect()
    devices, nodes = _as_int(trainer_cfg.get("devices")), _as_int(trainer_cfg.get("num_nodes", 1)) or 1
    if launch.launcher is None:
        if nodes > 1 and not _manual_multi_node():
            raise GenrunError(f"trainer.num_nodes={nodes}: no cluster environment found (SLURM, torchrun, a "
                              "submitit job); start one process per device on each node with srun or torchrun, "
                              "or use -m hydra/launcher=submitit_slurm")
        return launch
    if devices == 1 and nodes == 1 and launch.world_size > 1:
        # One process per device was started for us: follow the launcher.
        with open_dict(trainer_cfg):
            trainer_cfg.devices, trainer_cfg.num_nodes = launch.local_world_size, launch.nodes
            if trainer_cfg.get("strategy") in (None, "auto"):
                trainer_cfg.strategy = "ddp"
        devices, nodes = launch.local_world_size, launch.nodes
    if devices is not None and (devices != launch.local_world_size or nodes != launch.nodes):
        raise GenrunError(f"trainer.devices={devices} trainer.num_nodes={nodes}: {launch.launcher} started "
                          f"{launch.nodes} node(s) x {launch.local_world_size} process(es); set "
                          f"trainer.devices={launch.local_world_size} trainer.num_nodes={launch.nodes}")
    if launch.launcher == "submitit" and launch.world_size > 1:
        import submitit

        # Lightning picks the devices by local rank; hiding the others would leave it one.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return launch


def thread_budget(threads, hydra_launcher, launch: Launch) -> int | None:
    """Threads for torch in this process: `threads` when set; else the cores shared out among the jobs a
    joblib launcher runs side by side, or among the processes of a launch on this node; else None."""
    if threads:
        return int(threads)
    share = 1
    target = str((hydra_launcher or {}).get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = int((hydra_launcher or {}).get("n_jobs") or -1)
        share = max(1, n_jobs if n_jobs > 0 else os.cpu_count() or 1)
    share *= max(1, launch.local_world_size)
    if share == 1:
        return None
    return max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
               // share)


def apply_threads(count: int | None) -> None:
    """torch's intra-op threads, and the OpenMP/MKL variables for anything this process starts."""
    if not count:
        return
    import torch

    torch.set_num_threads(count)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(count)
    log.info(f"torch threads: {count}", extra={"console": False})


def worker_log(run_dir: Path, task: str, rank: int) -> None:
    """Send a rank > 0 process's log to `<task>_rank<r>.log` instead of the run's own log file."""
    root = logging.getLogger()
    own = Path(run_dir) / f"{task}_rank{rank}.log"
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == Path(run_dir):
            replacement = logging.FileHandler(own)
            replacement.setFormatter(handler.formatter)
            replacement.setLevel(handler.level)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(replacement)


def requeue(launch: Launch, signum: int, previous_handlers: dict) -> str | None:
    """Put the job back in the queue after a time-limit signal; a sentence saying so, or None.

    SIGTERM is left to the scheduler (a preempted SLURM job is requeued by SLURM; a cancelled one must
    stay cancelled). A submitit job is requeued by submitit's own handler, which this calls (it exits).
    """
    import signal

    if signum == signal.SIGTERM or not launch.is_zero:
        return None
    if launch.launcher == "submitit":
        import submitit

        usr = submitit.JobEnvironment._usr_sig()
        handler = previous_handlers.get(usr)
        if callable(handler):
            handler(usr, None)  # checkpoints the submission, requeues, and exits
        return None
    job = _slurm_job_id()
    if not job:
        return None
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"requeueing SLURM job {job} failed ({err})"
    if done.returncode != 0:
        return f"requeueing SLURM job {job} failed: {done.stderr.strip()[:200]}"
    return f"SLURM job {job} requeued; it continues from the last checkpoint"
