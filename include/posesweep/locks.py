"""One writer per training folder: a second trainer (a retry while the first still runs) is refused by name.

An advisory ``flock`` on ``<folder>/.writer.lock``; the kernel releases it when the holder dies, however it dies,
so a killed trainer never leaves the folder locked. The file says who holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import WriterBusyError

LOCK_FILE = ".writer.lock"


@contextmanager
def exclusive_writer(folder: Path, what: str) -> Iterator[None]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text().strip() or "a process that did not say who it is"
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
