"""One writer per training folder: a second trainer (a retry while the first still runs) is refused by name.

An advisory ``flock`` on ``<folder>/.writer.lock``; the kernel releases it when the holder dies, however it dies,
so a killed trainer never leaves the folder locked. The file says who holds it. A writer may wait a while for it
(``wait_s``): a training stopped with its task saves a resume point and ends within seconds, and the task's retry
should go on from that point rather than fail.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import WriterBusyError

LOCK_FILE = ".writer.lock"
LOCK_POLL_S = 0.5


def _holder(path: Path) -> str:
    return path.read_text().strip() or "a process that did not say who it is"


@contextmanager
def exclusive_writer(folder: Path, what: str, wait_s: float = 0.0,
                     waiting: Callable[[str], None] = print) -> Iterator[None]:
    """Hold ``folder``'s writer lock while the block runs; where another process holds it, wait up to ``wait_s``
    (saying so once through ``waiting``), then refuse with ``WriterBusyError`` (retryable) naming the holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline, said = time.monotonic() + wait_s, False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                if not said:
                    waiting(f"{what} is being written by another process ({_holder(path)}), likely a training "
                            f"stopped with its task and saving its resume point: waiting up to {wait_s:.0f} s")
                    said = True
                time.sleep(LOCK_POLL_S)
    except BlockingIOError:
        holder = _holder(path)
        os.close(fd)
        raise WriterBusyError(f"{what} is already being written by another process", file=folder,
                              found=f"held by {holder}",
                              fix="wait until that process ends (the task is retried); if it should not run, stop "
                                  "it, and its lock goes with it") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
