"""Peak memory of a process and all its descendants, each page counted once.

Adding one process's peak RSS to its children's counts twice every page they
share (a forked child starts as a copy-on-write image of its parent). Here a
thread samples the process tree every 20 ms and sums each process's PSS
(proportional set size, from ``/proc/<pid>/smaps_rollup``: a page shared by n
processes counts 1/n in each), so the total counts every page once. The peak of
that sum is reported. Linux only.

Reading a process's PSS walks its page tables, under the lock its own memory mappings need: about 27 ms for a
PyTorch training process of 2.5 GB on the 2-core machine. Sampled every 20 ms regardless, the sampler read without
pause, took one of the two cores and made the training it measured about twice as slow (2.2-2.4 s per step alone,
4.5-5.1 s measured; a process of more memory, such as DeepLabCut's, lost more). So the sampler waits
``1 / MAX_SAMPLER_SHARE - 1`` times as long as its last read took (at least ``SAMPLE_SECONDS``): it reads for at
most that share of one core, and a peak held for less than the wait can be missed (a training's memory is its
steady state; a 250-frame clip's extraction of 240 MB is sampled every few tens of milliseconds).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.02
MAX_SAMPLER_SHARE = 0.05  # of one core's time, spent reading the process tree's memory


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
            read_from = time.perf_counter()
            peak[0] = max(peak[0], tree_pss_mb(child.pid))
            done.wait(max(SAMPLE_SECONDS, (time.perf_counter() - read_from) * (1 / MAX_SAMPLER_SHARE - 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    return result, time.perf_counter() - started, peak[0]
