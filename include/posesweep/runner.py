"""The local training backend: a ``posesweep`` CLI command in a child process, with a watchdog.

DeepLabCut training hangs instead of exiting when its data-loader thread dies;
the watchdog kills the child when it prints nothing for ``stall_timeout_s``.
Every line the child prints goes to the caller's logger (the Airflow task log),
except TensorFlow's start-up noise. How the child ended decides what is raised:
an error it reported (``POSESWEEP_ERROR`` line) comes back as the same kind of
error, so a diverged training or missing weights fail at once; a child the
kernel's out-of-memory killer ended (a kill counted in its own memory cgroup) says
so, with its peak memory and the limit it ran under (``host_memory``: an input error
where it held nearly all of it itself); a child killed from outside otherwise (SIGKILL: a lost worker) or
stalled is a ``TransientError``, and the task's retry resumes from the newest
snapshot or resume point. A stop asked of this process (SIGTERM, an interruption) is passed on to the child as
SIGTERM: a training saves a resume point and ends (``resume_points``), SIGKILL only after ``STOP_GRACE_SECONDS``.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .disk import disk_full_in_output
from .errors import PosesweepError, TrainerCommandError, error_from_line
from .gpus import machine_gpus, one_gpu
from .host_memory import killed_for_memory, memory_cgroup, memory_limit, oom_kill_count
from .resume_points import STOP_GRACE_SECONDS, STOP_REQUESTED
from .settings import Settings

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
SCRATCH_PREFIX = "posesweep-child-"  # + the parent's pid: a child's temporary folder

# TensorFlow's C++ start-up lines that are no failure (a machine without CUDA libraries, a child shown no GPU):
# nothing a lab can act on
NOISE = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|oneDNN custom operations|"
                   r"failed call to cuInit: CUDA_ERROR_NO_DEVICE|"  # a child shown no GPU (cpu_only) on a GPU machine
                   r"cpu_feature_guard|rebuild TensorFlow with the appropriate compiler flags|"
                   r"AVX2 AVX512F|To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS")


# a line of the child's own logging (``cli``: "LEVEL name: message"): its warnings stay warnings in the task log
CHILD_LOG_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) (?=[\w.]+: )")


def _as_logged(line: str) -> tuple[int, str]:
    """The level and text a child's line is logged with: a record of the child's own logging at its level, without
    the level word (the task log shows the level: it read "[warning] WARNING posesweep.training: ..."); any other
    line at INFO, as it is."""
    found = CHILD_LOG_LINE.match(line)
    return (getattr(logging, found.group(1)), line[found.end():]) if found else (logging.INFO, line)


def run_posesweep(args: list[str], stall_timeout_s: float | None = None, logger: logging.Logger = log,
                  on_one_gpu: str | None = None, cpu_only: bool = False) -> None:
    """Run ``posesweep <args>`` with this interpreter, streaming its output into ``logger``; ``on_one_gpu`` (who
    it is, for the log) gives the child a GPU of its own where the machine has GPUs (``gpus``); ``cpu_only`` shows
    it none (TensorFlow would otherwise map the memory of every GPU, under the trainings running there)."""
    command = [sys.executable, "-m", "posesweep.cli", *args]
    if on_one_gpu is None:
        return run_watched(command, stall_timeout_s, logger, {"CUDA_VISIBLE_DEVICES": ""} if cpu_only else None)
    with one_gpu(machine_gpus(Settings.from_env().gpus), on_one_gpu, logger) as gpu_env:
        run_watched(command, stall_timeout_s, logger, gpu_env)


def run_watched(command: list[str], stall_timeout_s: float | None = None, logger: logging.Logger = log,
                env: dict[str, str] | None = None) -> None:
    """Run ``command`` as a watched child, with ``env`` added to this process's environment."""
    stall_timeout_s = stall_timeout_s or Settings.from_env().stall_timeout_s
    remove_scratch_of_ended_parents()
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    try:
        _run_watched(command, stall_timeout_s, logger, scratch, env or {})
    finally:  # what the child left in its temporary folder, however it ended
        shutil.rmtree(scratch, ignore_errors=True)


def remove_scratch_of_ended_parents() -> None:
    """Remove the children's temporary folders whose parent no longer runs: a worker killed outright (the
    out-of-memory killer's SIGKILL) never reaches ``run_watched``'s ``finally``. A folder whose parent's pid now
    belongs to another process is left (it is removed once that one ends); another user's is never touched."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        try:
            owned = folder.stat().st_uid == os.getuid()
        except OSError:  # removed meanwhile
            continue
        if pid.isdigit() and owned and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _run_watched(command: list[str], stall_timeout_s: float, logger: logging.Logger, scratch: str,
                 extra_env: dict[str, str]) -> None:
    """``run_watched`` with the child's temporary files in ``scratch``: TensorFlow's autograph writes a source file
    per converted function there and deletes them only at a normal interpreter exit, which a child ending by
    ``os._exit`` (an error, see ``cli.main``) or killed by the watchdog never reaches. torch.compile's cache
    has a lasting folder of its own (worth keeping between networks and retries)."""
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1", "GX_ANALYTICS_ENABLED": "false",
           "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": scratch}
    inductor_cache = os.path.join(tempfile.gettempdir(), f"posesweep-torchinductor-{os.getuid()}")
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", inductor_cache)
    logger.info("running: %s", " ".join(command))
    cgroup = memory_cgroup(os.getpid())  # the child's, inherited: the container's or pod's limit and kill count
    oom_kills_before = oom_kill_count(cgroup)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                             bufsize=1, start_new_session=True, preexec_fn=_dies_with(os.getpid()))
    tail: collections.deque[str] = collections.deque(maxlen=30)
    reported: list[PosesweepError] = []
    last_output = [time.monotonic()]

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip()
            last_output[0] = time.monotonic()
            error = error_from_line(line)
            if error is not None:
                reported.append(error)
            elif line and not NOISE.search(line):
                tail.append(line)
                logger.log(*_as_logged(line))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stalled = False
    try:
        with _sigterm_noted():
            while (usage := _reaped(child, os.WNOHANG)) is None:
                if STOP_REQUESTED.is_set():  # SIGTERM here: passed on, and a trainer saves a resume point first
                    usage = _stopped(child, "asked to stop (SIGTERM)", logger)
                    break
                if time.monotonic() - last_output[0] > stall_timeout_s:
                    stalled = True
                    logger.warning("no output for %.0f s: killing the stalled child (pid %d)", stall_timeout_s,
                                   child.pid)
                    os.killpg(child.pid, signal.SIGKILL)
                    usage = _reaped(child, 0)
                    break
                time.sleep(0.2)
    except BaseException as interrupted:  # task killed or interrupted: never leave an orphan training process
        if child.returncode is None:
            _stopped(child, f"interrupted ({type(interrupted).__name__})", logger)
            reader.join(timeout=5)  # its last lines (the resume point it saved) into the log before the task ends
        raise
    reader.join(timeout=5)
    if reported:
        raise reported[-1]
    oom_kills_after = oom_kill_count(cgroup)
    if (not stalled and child.returncode == -signal.SIGKILL and oom_kills_before is not None
            and oom_kills_after is not None and oom_kills_after > oom_kills_before):
        error = killed_for_memory(usage.ru_maxrss * 1024, memory_limit(cgroup), _short(command))
        error.details = ["its last output:", *tail]
        raise error
    if not stalled and child.returncode != 0 and (full := disk_full_in_output(list(tail))) is not None:
        raise full  # a library that ended the process itself on a full disk, past cli.main's paragraph
    if stalled or child.returncode != 0:
        how = _how_it_ended(child.returncode, stalled, stall_timeout_s, oom_kills_after is not None)
        raise TrainerCommandError(f"the child process {how}",
                                  details=[f"command: {' '.join(command)}", "its last output:", *tail])


@contextlib.contextmanager
def _sigterm_noted():
    """While a child runs: SIGTERM to this process (Airflow's on a cleared or timed-out task, Kubernetes' to a
    pod's ``posesweep watch``, which as a container's first process would otherwise ignore it) sets
    ``STOP_REQUESTED``, which the loop passes on to the child; a handler there before (Airflow's) runs as well.
    Only the main thread can set handlers: elsewhere nothing changes."""
    STOP_REQUESTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)

    def noted(signum, frame) -> None:
        STOP_REQUESTED.set()
        if callable(before):
            before(signum, frame)

    signal.signal(signal.SIGTERM, noted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _stopped(child: subprocess.Popen, why: str, logger: logging.Logger):
    """End the child as a stop asks: SIGTERM (a training saves a resume point and ends), SIGKILL where it has
    not ended within ``STOP_GRACE_SECONDS``. Its resource usage, as ``_reaped``."""
    logger.warning("%s: passing it on to the child (pid %d), which saves a resume point if it trains; killed in "
                   "%.0f s if it has not ended", why, child.pid, STOP_GRACE_SECONDS)
    os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while (usage := _reaped(child, os.WNOHANG)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if usage is None:
        os.killpg(child.pid, signal.SIGKILL)
        usage = _reaped(child, 0)
    return usage


def _reaped(child: subprocess.Popen, options: int):
    """The ended child's resource usage (``ru_maxrss``: its peak resident memory), reaped here so that the
    kernel's account of it is not lost to ``Popen.wait``; None while it runs."""
    pid, status, usage = os.wait4(child.pid, options)
    if not pid:
        return None
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage


def _short(command: list[str]) -> str:
    """``posesweep train --frame-set-size 800 ...`` rather than the interpreter's path and ``-m``."""
    if "posesweep.cli" in command:
        return " ".join(["posesweep", *command[command.index("posesweep.cli") + 1:]])
    return " ".join(command)


def _dies_with(parent_pid: int):
    """In the child, before it runs: the kernel SIGTERMs it when its parent dies, however the parent dies (OOM
    killer, lost worker, Airflow's SIGKILL of a cleared task 5 s after its SIGTERM), so a trainer never outlives its
    task by more than ``STOP_GRACE_SECONDS``: a training saves a resume point and ends (its own alarm ends it then
    at the latest: ``resume_points.stop_on_sigterm``), any other command ends at once. It never races the task's
    retry: the retry waits on the training folder's writer lock (``locks.exclusive_writer``)."""
    if not sys.platform.startswith("linux"):
        return None

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before the signal was set
            os._exit(1)

    return set_parent_death_signal


def _how_it_ended(returncode: int, stalled: bool, stall_timeout_s: float, oom_counted: bool) -> str:
    if stalled:
        return f"stalled (no output for {stall_timeout_s:.0f} s) and was killed"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if name != "SIGKILL":
            return f"was killed by {name}"
        return f"was killed by {name}" + (" (from outside: the kernel recorded no out-of-memory kill in its "
                                          "cgroup meanwhile)"
                                          if oom_counted else " (out of memory, or its worker was lost)")
    return f"exited with status {returncode}"
