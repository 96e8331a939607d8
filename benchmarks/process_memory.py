"""Peak memory of a process and all its descendants, each page counted once.

Adding one process's peak RSS to its children's counts twice every page they
share (a forked child starts as a copy-on-write image of its parent). Here a
thread samples the process tree every 20 ms and sums each process's PSS
(proportional set size, from ``/proc/<pid>/smaps_rollup``: a page shared by n
processes counts 1/n in each), so the total counts every page once. The peak of
that sum is reported. Linux only.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.02


def _children(pid: int) -> list[int]:
    """Child pids of every thread of ``pid``; none once it has ended (it may end while this reads)."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_pss_mb(root: int) -> float:
    """Summed PSS of ``root`` and every descendant, in MB."""
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _pss_kb(pid)
        stack += _children(pid)
    return total / 1024


def run_measured(argv: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``argv``; return (its completed process with stdout/stderr, wall seconds, peak tree PSS in MB)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_mb(child.pid))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    return result, time.perf_counter() - started, peak[0]
