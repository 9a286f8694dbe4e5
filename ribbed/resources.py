"""The CPU cores and the memory this process can really use, and how a run shares the cores by default.

``os.cpu_count()`` counts the machine's cores, but a process may be confined to fewer: by its
CPU affinity (``taskset``, a cpuset, a container's ``--cpuset-cpus``) and by a CPU bandwidth
quota (a container's ``--cpus``: cgroup v2 ``cpu.max``, cgroup v1 ``cpu.cfs_quota_us`` over
``cpu.cfs_period_us``).  Threads beyond those cores do not run side by side: they take turns,
and torch's worker threads spin while they wait for each other.  On two cores, a run whose
torch used two threads next to the log's writer process took about 7 times as long as with one
thread (30 to 40 times while another process was busy).  So the defaults of a run come from the cores
counted here, and never ask for more than there are:

- one core for the log's writer process when there are two or more (one core: the writer is a
  thread of the run, see :mod:`ribbed.log.run_log`), the others for torch's intra-op threads;
- one inter-op thread (ribbed runs no parallel torch graphs: the pool would only wait);
- Ray's CPUs and shard count on a machine it starts itself.

The split does not depend on whether the run logs, so a run computes the same bits with its
log on or off.  An explicit ``backend.threads`` wins, and a replay uses the counts its log
recorded.

Memory is counted the same way: what the kernel says new allocations can take without
swapping (``MemAvailable`` in ``/proc/meminfo``), capped by the memory limit of the process's
cgroup and its ancestors (v2 ``memory.max`` less ``memory.current``, v1
``memory.limit_in_bytes`` less ``memory.usage_in_bytes``), plus what the process holds already.
A scenario whose size estimate (:mod:`ribbed.scenarios.size`) does not fit is refused before
anything is built: on a shared machine a run that swaps or is killed by the kernel takes the
others down with it.

This module imports nothing heavy (it sits below every other layer of ribbed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CGROUP_ROOT", "MEMINFO", "PROC_CGROUP", "CorePlan", "MemoryLimit", "affinity_cores", "available_cores",
           "available_memory", "cgroup_cpu_limit", "cgroup_memory_room", "meminfo_available", "own_rss", "plan_cores"]

#: Where the cgroup file systems are mounted (v2: one tree; v1: one folder per controller).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The cgroups this process belongs to, one ``id:controllers:path`` line per hierarchy.
PROC_CGROUP = Path("/proc/self/cgroup")
#: The folders a v1 ``cpu`` controller is mounted at, by distribution.
_V1_FOLDERS = ("cpu,cpuacct", "cpu", "cpuacct,cpu")
#: The kernel's memory counters (``MemAvailable``: what can be allocated without swapping).
MEMINFO = Path("/proc/meminfo")
#: This process's own counters (``VmRSS``: its resident memory).
PROC_STATUS = Path("/proc/self/status")
#: A v1 memory limit at or above this is "no limit" (the kernel writes 2^63 rounded down to a page).
_V1_UNLIMITED = 2**62


def affinity_cores() -> int:
    """The cores the scheduler may run this process on (its affinity mask), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this system (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP) -> float | None:
    """This process's CPU bandwidth quota in cores (``1.5``: 150 ms of CPU time per 100 ms), the
    tightest of its cgroup and the cgroup's ancestors, v2 or v1; None when there is none, or no
    cgroup file system to read (not Linux)."""
    entries = _cgroups(membership)
    if entries is None:
        return None
    limits: list[float] = []
    for hierarchy, controllers, path in entries:
        if hierarchy == "0" and controllers == "":  # cgroup v2: <root>/<path>/cpu.max holds "QUOTA PERIOD"
            for folder in _folders(root, path):
                limits += _quota(folder / "cpu.max", None)
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us and cpu.cfs_period_us
            for mount in _V1_FOLDERS:
                if (root / mount).is_dir():
                    for folder in _folders(root / mount, path):
                        limits += _quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
                    break
    return min(limits) if limits else None


def _cgroups(membership: Path) -> list[tuple[str, str, str]] | None:
    """This process's cgroups as ``(hierarchy, controllers, path)``, one per line of
    ``/proc/self/cgroup`` (v2: hierarchy ``0`` and no controllers); None where it cannot be read."""
    try:
        lines = membership.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    entries = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        entries.append((hierarchy, controllers, path))
    return entries


def _folders(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and its ancestors up to the mount.  In a
    container with its own cgroup namespace the mount is the process's own cgroup (and ``path``
    is ``/`` or does not exist under it): then the mount alone."""
    relative = path.strip("/")
    folder = mount / relative if relative else mount
    if not folder.is_dir():
        return [mount]
    folders = [folder]
    while folder != mount:
        folder = folder.parent
        folders.append(folder)
    return folders


def _quota(quota_file: Path, period_file: Path | None) -> list[float]:
    """The limit one cgroup folder sets, in cores: ``[]`` when it sets none (``max``, ``-1``, no
    such file, or a file that cannot be read)."""
    try:
        if period_file is None:
            quota, _, period = quota_file.read_text(encoding="utf-8").strip().partition(" ")
        else:
            quota, period = quota_file.read_text(encoding="utf-8").strip(), period_file.read_text(encoding="utf-8")
        quota_us, period_us = int(quota), int(period or 100_000)
    except (OSError, ValueError):  # "max" (v2), or nothing to read
        return []
    return [quota_us / period_us] if quota_us > 0 and period_us > 0 else []


def available_cores() -> int:
    """The cores this process can use at once: its affinity, capped by a cgroup CPU quota
    (rounded down: a quota of 1.5 cores does not run two busy threads side by side); at least 1."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return cores


@dataclass(frozen=True)
class CorePlan:
    """How a run shares ``cores`` by default (see the module docstring)."""

    cores: int
    torch_threads: int
    interop_threads: int
    #: Whether the log's writer gets a core of its own (a writer process); else it is a thread.
    writer_process: bool


def plan_cores(cores: int | None = None) -> CorePlan:
    """The default split of ``cores`` (default: :func:`available_cores`): with 1 core, 1 torch
    thread and a writer thread; with n >= 2, the writer process and n - 1 torch threads."""
    cores = available_cores() if cores is None else max(1, int(cores))
    return CorePlan(cores=cores, torch_threads=max(1, cores - 1), interop_threads=1, writer_process=cores >= 2)


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryLimit:
    """How many bytes a run may use, and where that number comes from: ``source`` reads after the
    number in messages ("8 GiB *available on this machine (MemAvailable in /proc/meminfo)*")."""

    bytes: int
    source: str


def meminfo_available(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes: the kernel's estimate of what can be
    allocated without swapping (free memory and the caches it can drop); None where there is
    no such file (not Linux) or no such line (kernels before 3.14)."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(":")
            if key == "MemAvailable":
                number, _, unit = value.strip().partition(" ")
                return int(number) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def cgroup_memory_room(root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP) -> int | None:
    """The bytes this process's cgroups still let it allocate: the smallest of limit minus
    usage over its cgroup and the cgroup's ancestors, v2 or v1; None when no cgroup sets a limit
    (or there is no cgroup file system to read)."""
    entries = _cgroups(membership)
    if entries is None:
        return None
    rooms: list[int] = []
    for hierarchy, controllers, path in entries:
        if hierarchy == "0" and controllers == "":  # v2: memory.max ("max" or bytes), memory.current
            for folder in _folders(root, path):
                rooms += _room(folder / "memory.max", folder / "memory.current")
        elif "memory" in controllers.split(","):  # v1: memory.limit_in_bytes, memory.usage_in_bytes
            if (root / "memory").is_dir():
                for folder in _folders(root / "memory", path):
                    rooms += _room(folder / "memory.limit_in_bytes", folder / "memory.usage_in_bytes")
    return max(0, min(rooms)) if rooms else None


def _room(limit_file: Path, usage_file: Path) -> list[int]:
    """What one cgroup folder leaves: ``[]`` when it sets no limit (``max``, a v1 limit of about
    2^63, no such file)."""
    try:
        limit = int(limit_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):  # "max" (v2), or nothing to read
        return []
    if limit >= _V1_UNLIMITED:
        return []
    try:
        usage = int(usage_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        usage = 0
    return [limit - usage]


def _sysconf_available() -> int | None:
    """Free physical pages times the page size (no caches counted): the fallback without /proc."""
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def own_rss(status: Path = PROC_STATUS) -> int:
    """This process's resident memory in bytes (``VmRSS``); 0 when it cannot be read."""
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return 0
    return 0


def available_memory() -> MemoryLimit | None:
    """The bytes a run in this process can reach without swapping: what the process holds
    already (a run's estimate counts the libraries it has loaded) plus ``MemAvailable``, capped by
    what a cgroup memory limit leaves; else plus the free physical memory (``os.sysconf``).  None
    when none of these can be read (then no bound is applied)."""
    found: list[tuple[int, str]] = []
    meminfo = meminfo_available()
    if meminfo is not None:
        found.append((meminfo, "available on this machine (MemAvailable in /proc/meminfo)"))
    room = cgroup_memory_room()
    if room is not None:
        found.append((room, "left by this process's cgroup memory limit"))
    if not found:
        free = _sysconf_available()
        if free is not None:
            found.append((free, "free on this machine"))
    if not found:
        return None
    value, source = min(found)
    return MemoryLimit(value + own_rss(), source)
