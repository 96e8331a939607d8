"""The local training backend: a ``posesweep`` CLI command in a child process, with a watchdog.

DeepLabCut training hangs instead of exiting when its data-loader thread dies;
the watchdog kills the child when it prints nothing for ``stall_timeout_s`` and
fails with the last lines it printed. Every line the child prints goes to the
caller's logger (the Airflow task log).
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

STALL_TIMEOUT_ENV = "POSESWEEP_STALL_TIMEOUT_S"


class TrainerCommandError(RuntimeError):
    """The child command failed, stalled or was killed."""


def run_posesweep(args: list[str], stall_timeout_s: float | None = None, logger: logging.Logger = log) -> None:
    """Run ``posesweep <args>`` with this interpreter, streaming its output into ``logger``."""
    run_watched([sys.executable, "-m", "posesweep.cli", *args], stall_timeout_s, logger)


def run_watched(command: list[str], stall_timeout_s: float | None = None, logger: logging.Logger = log) -> None:
    stall_timeout_s = stall_timeout_s or float(os.environ.get(STALL_TIMEOUT_ENV, 900))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GX_ANALYTICS_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    logger.info("running: %s", " ".join(command))
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                             bufsize=1, start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=30)
    last_output = [time.monotonic()]

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip()
            last_output[0] = time.monotonic()
            if line:
                tail.append(line)
                logger.info("%s", line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stalled = False
    try:
        while child.poll() is None:
            if time.monotonic() - last_output[0] > stall_timeout_s:
                stalled = True
                logger.error("no output for %.0f s: killing the stalled child (pid %d)", stall_timeout_s, child.pid)
                os.killpg(child.pid, 9)
                break
            time.sleep(0.5)
    except BaseException:  # task killed or interrupted: never leave an orphan training process
        os.killpg(child.pid, 9)
        raise
    child.wait()
    reader.join(timeout=5)
    if stalled or child.returncode != 0:
        reason = f"stalled (no output for {stall_timeout_s:.0f} s)" if stalled else f"exit code {child.returncode}"
        raise TrainerCommandError(f"{' '.join(command)} failed: {reason}. Last output:\n" + "\n".join(tail))
