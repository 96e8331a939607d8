"""Stops the servers a process started when that process dies without stopping them.

``airflow standalone`` and PostgreSQL run in sessions of their own (so a Ctrl-C in the
terminal reaches only what should handle it); a test run killed from outside (its
process group, SIGKILL) never reaches the code that stops them, and they ran on,
holding ports, memory and a temporary folder. ``airflow_local.Reaper`` starts this file as a
watcher in a session of its own, on the read end of a pipe whose write end only
its owner holds. The owner writes what to stop as it starts it:

    airflow <pid>      a process group led by <pid>: SIGINT to <pid> (standalone stops its workers), SIGKILL
                       to the group if it has not ended within a minute
    postgres <pgdata>  the PostgreSQL server of that data folder: SIGINT to its postmaster (fast shutdown),
                       SIGQUIT if it has not ended within a minute

and ``done`` once it has stopped them itself. End of file without ``done`` means the
owner died: the watcher stops everything it was told of, newest first, and exits.
Processes are remembered when named (pid and start time, through psutil), so a pid
reused after its process ended is never signalled.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

GRACE_S = 60.0


def _postmaster(pgdata: Path) -> psutil.Process | None:
    try:
        return psutil.Process(int((pgdata / "postmaster.pid").read_text().splitlines()[0]))
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return None


def _stop(process: psutil.Process, last_resort) -> None:
    """SIGINT, then ``last_resort(process)`` if it has not ended within the grace period."""
    try:
        process.send_signal(signal.SIGINT)
    except psutil.NoSuchProcess:
        return
    if psutil.wait_procs([process], timeout=GRACE_S)[1]:
        last_resort(process)


def _kill_group(leader: psutil.Process) -> None:
    try:
        os.killpg(leader.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _quit(postmaster: psutil.Process) -> None:  # PostgreSQL's immediate shutdown
    try:
        postmaster.send_signal(signal.SIGQUIT)
    except psutil.NoSuchProcess:
        pass


def watch(lines) -> list[str]:
    """Read the owner's lines until ``done`` or end of file; on end of file stop what was named. What was done."""
    named: list[tuple[str, psutil.Process]] = []
    for line in lines:
        kind, _, value = line.strip().partition(" ")
        if kind == "done":
            return []
        try:
            if kind == "airflow":
                named.append((kind, psutil.Process(int(value))))
            elif kind == "postgres" and (postmaster := _postmaster(Path(value))) is not None:
                named.append((kind, postmaster))
        except psutil.NoSuchProcess:
            pass
    stopped = []
    for kind, process in reversed(named):  # Airflow before the database it uses
        _stop(process, _kill_group if kind == "airflow" else _quit)
        stopped.append(f"{kind} {process.pid}")
    return stopped


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the owner
    for what in watch(sys.stdin):
        print(f"reaper: the process that started {what} died without stopping it: stopped", file=sys.stderr)
