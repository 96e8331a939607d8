"""A disk that fills while a study runs: one paragraph naming the disk, instead of a traceback and a retry.

``prepare_run`` refuses a study whose outputs do not fit the free disk (``budget``), but the disk is often shared:
others fill it while networks train for hours. The write that fails then raises ``OSError`` (errno ENOSPC, or
EDQUOT where a user's quota ran out) from Python, or a library's own error carrying the system's message
(TensorFlow's checkpoint saver, HDF5). Either becomes a ``DiskFullError``: the file it was writing, the room left
on its file system, and what to do; no automatic retry, which would meet the same full disk 30 s later.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from .errors import DiskFullError

NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_ROOM_MESSAGES = ("No space left on device", "Disk quota exceeded")
# a path in a library's message: "... /data/runs/x/snapshot-10.data-00000-of-00001.tempstate123; No space left"
_PATH_IN_MESSAGE = re.compile(r"(/[^\s;:'\"]+/[^\s;:'\"]+)")


def _text_says_no_room(text: str, data_root: str | Path | None) -> DiskFullError | None:
    """From a library's message: the path on the line that says there is no room (a traceback's lines above it
    name other files)."""
    for line in reversed(text.splitlines()):
        if any(message in line for message in NO_ROOM_MESSAGES):
            found = _PATH_IN_MESSAGE.search(line)
            return no_room_left(found.group(1) if found else None, NO_ROOM_MESSAGES[1] in line, data_root)
    return None


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = _existing(path.resolve())
    while not os.path.ismount(path):
        path = path.parent
    return path


def no_room_left(path: str | Path | None, quota: bool, data_root: str | Path | None = None) -> DiskFullError:
    """The paragraph for a write to ``path`` (else the data root) that found no room on its file system."""
    where = Path(path) if path else Path(data_root) if data_root else Path.cwd()
    disk = _mount_point(where)
    usage = shutil.disk_usage(disk)
    folder = where if where.is_dir() or not path else where.parent  # a file's name is often a temporary one
    what = (f"the disk quota ran out while writing in {folder}" if quota
            else f"the disk holding {folder} has no room left")
    return DiskFullError(
        what, file=where, found=f"{usage.free / 1e9:.2f} GB free of {usage.total / 1e9:.1f} GB on the file system "
                                f"mounted at {disk}" + (" (and this user's quota reached)" if quota else ""),
        allowed="room for the rest of the study's outputs (prepare_run states the whole study's need)",
        fix=f"free space on {disk}" + (" or raise the quota" if quota else "") + ", or move the data root "
            "(POSESWEEP_DATA_ROOT) to a larger disk")


def disk_full_from(error: BaseException, data_root: str | Path | None = None) -> DiskFullError | None:
    """A ``DiskFullError`` where ``error`` (or what caused it) is a write that found no room; else None."""
    for cause in _chain(error):
        if isinstance(cause, DiskFullError):
            return cause
        if isinstance(cause, OSError) and cause.errno in NO_ROOM_ERRNOS:
            return no_room_left(cause.filename, cause.errno == errno.EDQUOT, data_root)
        if (said := _text_says_no_room(str(cause), data_root)) is not None:
            return said
    return None


def disk_full_in_output(lines: list[str], data_root: str | Path | None = None) -> DiskFullError | None:
    """The same, from the last lines a child printed before it crashed (a library that aborted the process)."""
    return _text_says_no_room("\n".join(lines), data_root)
