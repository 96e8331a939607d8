"""Whether the kernel's out-of-memory killer ended a child process, and whether a retry can help.

A training or scoring process that needs more memory than its machine, container or pod allows is SIGKILLed by
the kernel. Its parent sees only "killed by SIGKILL", the same as a lost worker, and the task retried the same
work into the same wall. The kernel counts its out-of-memory kills per memory cgroup, of the processes in it (the
``oom_kill`` of cgroup v2's ``memory.events``, v1's ``memory.oom_control``; since Linux 4.13): the count of the
child's own cgroup (the worker's container or pod, the runner's session) is the one that tells, since a kill
anywhere else on a shared machine says nothing about this child; the machine-wide count (``/proc/vmstat``) only
where the cgroup keeps none (the root of a v2 hierarchy, a kernel before 4.13). ``wait4`` gives the child's peak
resident memory; the child's memory cgroup gives the limit it ran under (a pod's ``POSESWEEP_K8S_MEMORY``, a
container's ``--memory``), else the machine's RAM.

The rule matches the GPU's (``gpu_memory``): where the child alone held (nearly) the whole limit,
the same work fails again, an input error; where other processes held more than a quarter of it (several
trainings at once on one worker), a retry once they end may fit, a transient one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import HostMemoryTakenError, HostMemoryTooSmallError, PosesweepError

OTHERS_SHARE = 0.25  # others holding more than this share of the limit make the shortage theirs
GIB = 2**30
CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 2**62  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


@dataclass(frozen=True)
class MemoryLimit:
    """The most memory a process may hold, in bytes, and what sets it."""

    bytes: int
    source: str  # "this machine's RAM" or "the memory limit of cgroup <path>"


def oom_kill_count(cgroup: str | None = None) -> int | None:
    """How many processes of the memory cgroup ``cgroup`` (as ``memory_cgroup`` names it) the kernel's
    out-of-memory killer has ended, whichever limit ran out; of the whole machine since boot where the cgroup is
    the machine's root or keeps no count; None where the kernel does not say."""
    count = _cgroup_oom_kill_count(cgroup) if cgroup else None
    return count if count is not None else _field(Path("/proc/vmstat"), "oom_kill")


def _cgroup_oom_kill_count(cgroup: str) -> int | None:
    """The cgroup's own ``oom_kill`` count (v2 ``memory.events``, counting its descendants too; v1
    ``memory.oom_control``); None for the root of a v2 hierarchy (which has no such file) and an old kernel.
    A container without a cgroup namespace sees its cgroup's full path in ``/proc``, but its own cgroup mounted
    as the root: where the path is not there, the mount is the cgroup."""
    version, path = cgroup.split(":", 1)
    mount = _cgroup_mount(version)
    folder = mount.joinpath(*[p for p in path.split("/") if p])
    if not folder.is_dir():
        folder = mount
    return _field(folder / ("memory.oom_control" if version == "v1" else "memory.events"), "oom_kill")


def _field(path: Path, name: str) -> int | None:
    """The value of ``name`` in a kernel file of ``name value`` lines."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _cgroup_mount(version: str) -> Path:
    """Where the hierarchy of the memory controller (v1) or the unified one (v2, also in a hybrid layout) is."""
    if version == "v1":
        return CGROUP_ROOT / "memory"
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT / "unified"  # hybrid layout: v2 mounted beside v1's controllers
    return CGROUP_ROOT


def memory_cgroup(pid: int) -> str | None:
    """The process's memory cgroup as ``/proc/<pid>/cgroup`` names it (v1 ``memory`` controller, else v2)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return "v1:" + path
        if controllers == "":
            unified = "v2:" + path
    return unified


def _ram_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise OSError("/proc/meminfo has no MemTotal")


def _cgroup_limit(folder: Path, version: str) -> int | None:
    name = "memory.limit_in_bytes" if version == "v1" else "memory.max"
    try:
        text = (folder / name).read_text().strip()
    except OSError:
        return None
    if text == "max" or not text.isdigit() or int(text) >= NO_LIMIT:
        return None
    return int(text)


def memory_limit(cgroup: str | None) -> MemoryLimit:
    """The tightest of the machine's RAM and the memory limits of the cgroup and the cgroups above it."""
    best = MemoryLimit(_ram_bytes(), "this machine's RAM")
    if not cgroup:
        return best
    version, path = cgroup.split(":", 1)
    mount = _cgroup_mount(version)
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        limit = _cgroup_limit(mount.joinpath(*parts[:depth]), version)
        if limit is not None and limit < best.bytes:
            best = MemoryLimit(limit, f"the memory limit of cgroup /{'/'.join(parts[:depth])}")
    return best


def killed_for_memory(peak_bytes: int, limit: MemoryLimit, command: str) -> PosesweepError:
    """The error for a child the out-of-memory killer ended: an input error where it alone held (nearly) the
    whole limit, a transient one where other processes held more than a quarter of it."""
    what = f"the out-of-memory killer ended `{command}`: it needed more memory than it could get"
    found = f"its peak resident memory {peak_bytes / GIB:.1f} GiB of {limit.bytes / GIB:.1f} GiB ({limit.source})"
    if peak_bytes < (1 - OTHERS_SHARE) * limit.bytes:
        return HostMemoryTakenError(
            what, found=f"{found}: other processes held the rest",
            allowed="the memory to this process (or room beside the others)",
            fix="run fewer trainings at once on this worker (POSESWEEP_GPU_POOL_SLOTS, the Airflow pool "
                "POSESWEEP_GPU_POOL) or stop what else uses its memory; the task is retried")
    return HostMemoryTooSmallError(
        what, found=f"{found}: it held nearly all of it itself",
        allowed=f"work that fits in {limit.bytes / GIB:.1f} GiB",
        fix="give it more memory (a worker with more RAM; on Kubernetes a higher POSESWEEP_K8S_MEMORY), or make "
            "the work smaller: a lower batch_size, or the videos downscaled before the study (each halving of "
            "width and height quarters the frames' memory)")
