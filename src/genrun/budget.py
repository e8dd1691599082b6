"""Up-front refusals for work that cannot finish: disk, time and memory estimates, each in one line naming the key.

A count that would fill the disk, outgrow the RAM or outlast the time limit is refused before the long work
starts and before any output file is opened, with the estimate and what it was measured against. A typo such
as one zero too many then costs seconds instead of a full disk, a killed machine or a lost night.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genrun.errors import GenrunError


@dataclass(frozen=True)
class Budget:
    """What a long job may use.

    `what` is the setting its size comes from, as the user would type it (`num_samples=100000000`), so every
    refusal names the key to change; `max_minutes` None means no time limit; `unit` names what is counted.
    """

    what: str
    max_minutes: float | None = None
    unit: str = "images"

    def check_disk(self, nbytes: int, where: Path, what_bytes: str = "samples") -> None:
        free = free_bytes(where)
        if nbytes > free:
            raise GenrunError(f"{self.what}: ~{human_bytes(nbytes)} of {what_bytes} on disk but {human_bytes(free)} "
                              f"free at {where}")

    def check_time(self, seconds: float, measured: str) -> None:
        """`measured` says where the estimate comes from, e.g. 'the measured 8,900 images/s'."""
        if self.max_minutes is not None and seconds > 60 * self.max_minutes:
            raise GenrunError(f"{self.what}: ~{human_duration(seconds)} at {measured}; the limit is "
                              f"max_minutes={self.max_minutes:g} (raise it, or ask for fewer)")

    def check_rate(self, items: int, rate: float) -> None:
        """The time check for `items` still to make at `rate` items per second."""
        self.check_time(items / rate, f"the measured {human_rate(rate)} {self.unit}/s")

    def check_memory(self, nbytes: int, purpose: str) -> None:
        available = available_memory()
        if available is not None and nbytes > available:
            raise GenrunError(f"{self.what}: ~{human_bytes(nbytes)} of {purpose} in memory but "
                              f"{human_bytes(available)} available (ask for fewer)")


def check_max_minutes(value) -> float | None:
    """The `max_minutes` setting as a number of minutes (None: no limit); zero or less is refused."""
    if value is None:
        return None
    if float(value) <= 0:
        raise GenrunError(f"max_minutes={value}: must be positive (or null for no limit)")
    return float(value)


def timed(work: Callable[[], object]) -> tuple[object, float]:
    """(what `work` returned, seconds it took)."""
    started = time.perf_counter()
    result = work()
    return result, max(time.perf_counter() - started, 1e-9)


def free_bytes(path: Path) -> int:
    """Free space on the file system that `path` is (or will be) on: its nearest existing ancestor's."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: the kernel's MemAvailable, lowered to the room
    left under a cgroup (container) limit when there is one; None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def human_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
