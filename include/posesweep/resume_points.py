"""Resume points: a training's state between two snapshots, so that a killed or preempted training loses minutes.

The study's snapshots are 25k iterations apart (15 minutes on an H200, hours on a lab's smaller GPU); a training
killed between two went back to the newest. Both engines save a resume point every
``POSESWEEP_RESUME_POINT_SECONDS`` (``RESUME_POINT_SECONDS`` by default; 0: at every progress line) at a progress
line. It is not a snapshot: nothing scores it, and it is gone once the next snapshot exists. The PyTorch engine
keeps one file of weights and optimizer state (``torch_engine.trainer``). The TensorFlow engine trains in
DeepLabCut's own loop; ``TensorflowResumePoints`` saves from inside it what DeepLabCut's snapshots hold (the
variables that exist when DeepLabCut opens its session: the network's, not the optimizer's momentum, which
DeepLabCut's own resume from a snapshot starts afresh too), as a checkpoint DeepLabCut resumes from like a
snapshot: ``<train>/posesweep-resume-<iteration>/snapshot-<iteration>``, its folder renamed into place once
complete.

A training asked to stop (SIGTERM: a spot node preempted, a pod evicted, a task cleared, marked failed or timed out)
saves a resume point at its next iteration (PyTorch) or progress line (TensorFlow) whatever the interval, and ends
with ``TrainingStoppedError`` (retryable): the retry loses nothing. ``runner`` passes SIGTERM on to its child and
waits ``STOP_GRACE_SECONDS`` for it before SIGKILL; a pod is given that long and more to end. Where the task's
process dies first (Airflow's SIGKILL 5 s after its SIGTERM), the kernel's SIGTERM stops the training the same way
(``stop_on_sigterm``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from .errors import TrainingStoppedError, error_from_line

log = logging.getLogger(__name__)

RESUME_POINT_SECONDS = 600.0
STOP_GRACE_SECONDS = 45.0  # a stopped training's time to reach its next progress line and save (GPU: seconds)
STOP_REQUESTED = threading.Event()  # set by SIGTERM in a training process (``stop_on_sigterm``)
TF_RESUME_FOLDER = re.compile(r"posesweep-resume-(\d+)")
TF_PARTIAL_SUFFIX = ".partial"
OUTPUT_AFTER_TASK = "output-after-its-task-ended.log"  # a training's output once its task's process has died


def stop_on_sigterm(output_after_task: Path | None = None) -> None:
    """In a training process: SIGTERM asks the training to save a resume point and stop, not to end at once.

    The training may outlive its task's process: Airflow's task supervisor SIGKILLs a cleared or failed-marked
    task 5 s after its SIGTERM, before a TensorFlow training reaches its next progress line; the kernel then
    SIGTERMs the training (``runner._dies_with``). It goes on to save, its output (its task's pipe gone) appended
    to ``output_after_task``, and its own alarm ends it ``STOP_GRACE_SECONDS`` after the first SIGTERM wherever it
    is; the folder's writer lock keeps the task's retry waiting until then (``locks.exclusive_writer``)."""
    def asked_to_stop(signum, frame) -> None:
        if not STOP_REQUESTED.is_set():
            signal.alarm(math.ceil(STOP_GRACE_SECONDS))  # SIGALRM's default action ends the process
        STOP_REQUESTED.set()

    signal.signal(signal.SIGTERM, asked_to_stop)
    if output_after_task is not None:
        sys.stdout = _OutputAfterTask(sys.stdout, output_after_task)
        sys.stderr = _OutputAfterTask(sys.stderr, output_after_task)


def told_of_output_after_task(train_folder: Path, lines: int = 6) -> None:
    """In the next training of the folder (the task's retry): the last lines a training wrote after its task had
    died (``stop_on_sigterm``) printed into this task's log; the file is kept under a name with its time."""
    left = Path(train_folder) / OUTPUT_AFTER_TASK
    try:
        text, written = left.read_text(errors="replace"), left.stat().st_mtime
    except FileNotFoundError:
        return
    kept = left.with_name(f"{left.stem}-{time.strftime('%Y%m%dT%H%M%S', time.localtime(written))}{left.suffix}")
    left.rename(kept)
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    print(f"the previous try's training went on after its task had ended; its last lines ({kept}):", flush=True)
    for line in tail:
        error = error_from_line(line)  # its ending, as a sentence rather than the line meant for its runner
        print(f"  | {line if error is None else f'ended: {error.title}: {error.what}'}", flush=True)


class _OutputAfterTask:
    """A standard stream whose reader may die first: once a write finds the pipe broken, the process's stdout and
    stderr (file descriptors 1 and 2, so every writer's, TensorFlow's too) are appended to ``path`` instead."""

    def __init__(self, stream, path: Path):
        self._stream, self._path = stream, Path(path)

    def _divert(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for target in (1, 2):
            os.dup2(fd, target)
        os.close(fd)

    def _guarded(self, act, *args):
        try:
            return act(*args)
        except BrokenPipeError:
            self._divert()
            with contextlib.suppress(OSError, ValueError):
                return act(*args)

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text) or len(text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def stopped(frame_set_size: int, iteration: int) -> TrainingStoppedError:
    """The error a training ends with once it has saved its resume point on request."""
    return TrainingStoppedError(f"frame set {frame_set_size}: stopped on request (SIGTERM) at iteration {iteration}",
                                found="SIGTERM: a preempted or evicted pod, or a task cleared, marked failed or "
                                      "timed out", fix=f"nothing: the retry goes on from iteration {iteration}, "
                                                       f"saved before the training ended")


def resume_point_seconds() -> float:
    """Seconds between resume points: ``POSESWEEP_RESUME_POINT_SECONDS``, else ``RESUME_POINT_SECONDS``."""
    value = os.environ.get("POSESWEEP_RESUME_POINT_SECONDS", "")
    try:
        return max(0.0, float(value)) if value else RESUME_POINT_SECONDS
    except ValueError:
        log.warning("POSESWEEP_RESUME_POINT_SECONDS=%r is not a number of seconds; using %g", value,
                    RESUME_POINT_SECONDS)
        return RESUME_POINT_SECONDS


def _tf_checkpoint(train_dir: Path, iteration: int) -> Path:
    """The checkpoint prefix of a TensorFlow resume point: named like a snapshot, as DeepLabCut reads the iteration
    to go on from out of its ``init_weights``' name."""
    return Path(train_dir) / f"posesweep-resume-{iteration}" / f"snapshot-{iteration}"


def tensorflow_resume_point(train_dir: Path, newest_snapshot: int, max_iterations: int) -> tuple[int, Path] | None:
    """The iteration and checkpoint prefix to go on from: the newest complete resume point saved after the newest
    snapshot and before the end, else None."""
    found = []
    for folder in Path(train_dir).glob("posesweep-resume-*"):
        match = TF_RESUME_FOLDER.fullmatch(folder.name)
        if match and newest_snapshot < int(match.group(1)) < max_iterations:
            prefix = _tf_checkpoint(train_dir, int(match.group(1)))
            if Path(f"{prefix}.index").is_file() and Path(f"{prefix}.data-00000-of-00001").is_file():
                found.append((int(match.group(1)), prefix))
    return max(found, default=None)


def remove_tensorflow_resume_points(train_dir: Path, keep: int | None = None) -> None:
    """Every TensorFlow resume point in ``train_dir`` but the one at iteration ``keep``, half-written ones too."""
    for folder in Path(train_dir).glob("posesweep-resume-*"):
        if folder.name != f"posesweep-resume-{keep}":
            shutil.rmtree(folder, ignore_errors=True)


class TensorflowResumePoints:
    """Resume points of DeepLabCut's TensorFlow training, saved from inside its loop.

    ``session_caught`` catches the session DeepLabCut opens in this thread (a snapshot scorer beside it opens
    its own in another) and makes a saver of the variables there are then; ``at_progress`` is called at each
    progress line with a finite loss and marks a point due where ``every_s`` seconds have passed since the last
    point, the newest snapshot or the start. The point is saved (and a stop raised) at the session's next run:
    DeepLabCut writes the line's learning-stats row between the two, so the row is in the history a resumed
    training keeps, and the variables are still those of the line's iteration.
    """

    def __init__(self, train_dir: Path, snapshot_iterations: list[int], every_s: float, frame_set_size: int):
        self.train_dir, self.every_s = Path(train_dir), every_s
        self.frame_set_size, self.prefix = frame_set_size, f"[frame set {frame_set_size}]"
        self.snapshot_iterations = set(snapshot_iterations)  # DeepLabCut saves one there itself
        self.session = self.saver = None
        self.due: int | None = None  # the progress line's iteration whose point the session's next run saves
        self.console = sys.stdout  # made before DeepLabCut's prints are silenced: its lines still reach the log
        self.last_saved_s = time.monotonic()
        self.newest_snapshot = self._newest_snapshot()

    def _newest_snapshot(self) -> int:
        from .training import snapshot_iterations_in  # (the engine's module imports this one)

        return max(snapshot_iterations_in(self.train_dir), default=0)

    @contextlib.contextmanager
    def session_caught(self, tf) -> Iterator[None]:
        """While DeepLabCut's training runs: ``tf.compat.v1.Session`` replaced by one that remembers itself."""
        original, points, thread = tf.compat.v1.Session, self, threading.get_ident()

        class CaughtSession(original):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                if threading.get_ident() == thread and points.session is None:
                    points.session = self
                    with self.graph.as_default():
                        points.saver = tf.compat.v1.train.Saver(max_to_keep=None)

            def run(self, *args, **kwargs):
                if self is points.session and points.due is not None:
                    iteration, points.due = points.due, None  # (the saver's own runs come back here)
                    points.save(iteration)
                return super().run(*args, **kwargs)

        tf.compat.v1.Session = CaughtSession
        try:
            yield
        finally:
            tf.compat.v1.Session = original

    def at_progress(self, iteration: int) -> None:
        """Mark a resume point due where it is time to, or where the training was asked to stop (then raise
        ``TrainingStoppedError`` out of DeepLabCut's loop, at once where nothing can be saved)."""
        newest = self._newest_snapshot()
        if newest > self.newest_snapshot:  # DeepLabCut saved a snapshot since: it is newer than any point
            self.newest_snapshot, self.last_saved_s = newest, time.monotonic()
            remove_tensorflow_resume_points(self.train_dir)
        if iteration in self.snapshot_iterations or iteration <= newest:
            return  # DeepLabCut saves this iteration's snapshot right after the line: a stop waits for the next
        stop = STOP_REQUESTED.is_set()
        if self.saver is None and stop:
            raise stopped(self.frame_set_size, newest)
        if self.saver is not None and (time.monotonic() - self.last_saved_s >= self.every_s or stop):
            self.due = iteration

    def save(self, iteration: int) -> None:
        """Save the resume point of ``iteration`` (the session's variables are that iteration's); raise
        ``TrainingStoppedError`` after it where the training was asked to stop."""
        final = _tf_checkpoint(self.train_dir, iteration)
        partial = final.parent.with_name(final.parent.name + TF_PARTIAL_SUFFIX)
        for stale in (partial, final.parent):
            shutil.rmtree(stale, ignore_errors=True)
        self.saver.save(self.session, str(partial / final.name), write_meta_graph=False, write_state=False)
        os.replace(partial, final.parent)
        remove_tensorflow_resume_points(self.train_dir, keep=iteration)
        self.last_saved_s = time.monotonic()
        print(f"{self.prefix} resume point saved at iteration {iteration} (a killed training goes on from here)",
              flush=True, file=self.console)
        if STOP_REQUESTED.is_set():
            raise stopped(self.frame_set_size, iteration)
