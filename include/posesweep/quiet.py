"""DeepLabCut's console chatter kept out of the task log, which should read as posesweep's progress.

Two kinds reach a trainer's stdout: other libraries' INFO logging (DeepLabCut logs its whole
pose configuration, numexpr its thread count), which ``OwnInfoOnly`` drops at the handler
(their warnings and errors still pass); and DeepLabCut's ``print()`` calls ("Training
parameter:", the configuration again, "Loading ImageNet-pretrained resnet_50" even when the
weights are random, "Happy training!"), which ``library_prints_silenced`` sends to the DEBUG
logger ``deeplabcut.print`` while one of its calls runs. DeepLabCut's TensorFlow trainer would also
add a console handler of its own to the root logger on every call, printing every record a second
time, unfiltered: ``logging_setup_skipped``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from typing import Iterator, TextIO

PRINTS = logging.getLogger("deeplabcut.print")
# Libraries whose INFO lines describe their own workings, not the study ("NumExpr defaulting to 2 threads", two
# hundred of GX's "Skipping registering function ..."), in the tasks that run in Airflow's own process
# (prepare_run, validate_labels, ...), where OwnInfoOnly is not on the handler. Their warnings still pass.
CHATTY_LIBRARIES = ("great_expectations", "numexpr")


def opencv_ffmpeg_silenced() -> None:
    """OpenCV's own ffmpeg writes its decoders' complaints straight to stderr, i.e. into the task log: an AV1 video,
    which it cannot decode without hardware support, gives "Missing Sequence Header" once per frame. posesweep
    decodes with its own ffmpeg and says what fails, so OpenCV's are left out (an operator's own
    ``OPENCV_FFMPEG_LOGLEVEL`` is kept). OpenCV reads the setting once, at its first video: set at import."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def library_info_silenced() -> None:
    """Raise the chatty libraries' loggers to WARNING, and any of their module loggers that set itself lower on
    import (GX's ``data_context.types.base`` sets INFO): call again after importing such a library."""
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.split(".")[0] in CHATTY_LIBRARIES and isinstance(logger, logging.Logger) \
                and logging.NOTSET < logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


class OwnInfoOnly(logging.Filter):
    """A handler filter: posesweep's records from INFO up, every other library's from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] == "posesweep"


class _CallerPrints(io.TextIOBase):
    """sys.stdout while a library call runs: the calling thread's prints go to the DEBUG logger; other threads'
    (posesweep's snapshot scorer beside the trainer) reach the console."""

    def __init__(self, console: TextIO, caller: threading.Thread):
        super().__init__()
        self.console, self.caller = console, caller

    def write(self, text: str) -> int:
        if threading.current_thread() is not self.caller:
            return self.console.write(text)
        if text.strip():
            PRINTS.debug(text.rstrip())
        return len(text)

    def flush(self) -> None:
        self.console.flush()


@contextlib.contextmanager
def library_prints_silenced() -> Iterator[TextIO]:
    """Inside, this thread's prints are DeepLabCut's chatter; yields the console for posesweep's own lines."""
    console = sys.stdout
    with contextlib.redirect_stdout(_CallerPrints(console, threading.current_thread())):
        yield console


@contextlib.contextmanager
def logging_setup_skipped(module) -> Iterator[None]:
    """Inside, ``module.setup_logging`` (DeepLabCut's TensorFlow trainer calls it first: a second console handler on
    the root logger, and a log.txt in the working directory) does nothing; this process's logging is set up
    already (``posesweep.cli``)."""
    original = module.setup_logging
    module.setup_logging = lambda: None
    try:
        yield
    finally:
        module.setup_logging = original
