"""The local backend's child process: output streamed, how it ended mapped to an error that knows if a retry helps."""

import logging
import sys
import time

import pytest

from posesweep.errors import InputError, PosesweepError
from posesweep.runner import TrainerCommandError, run_watched


def test_child_output_is_streamed_into_the_log_without_tensorflow_noise(caplog):
    noise = "E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to register cuDNN factory"
    with caplog.at_level(logging.INFO):
        run_watched([sys.executable, "-c", f"print('iteration 10'); print({noise!r}); print('iteration 20')"], 30)
    assert "iteration 10" in caplog.text and "iteration 20" in caplog.text
    streamed = [r.getMessage() for r in caplog.records if not r.getMessage().startswith("running:")]
    assert streamed == ["iteration 10", "iteration 20"]


def test_a_child_that_crashes_without_saying_why_is_retryable_with_its_last_lines():
    with pytest.raises(TrainerCommandError, match=r"exited with status 1(.|\n)*boom") as raised:
        run_watched([sys.executable, "-c", "import sys; print('boom'); sys.exit(1)"], 30)
    assert raised.value.retryable


def test_a_child_killed_by_sigkill_is_a_transient_failure():
    with pytest.raises(TrainerCommandError, match="killed by SIGKILL") as raised:
        run_watched([sys.executable, "-c", "import os, signal; print('x', flush=True); os.kill(os.getpid(), 9)"], 30)
    assert raised.value.retryable


def test_an_input_error_reported_by_the_child_comes_back_with_its_paragraph_and_no_retry():
    child = ("import sys; from posesweep.training import TrainingDivergedError\n"
             "e = TrainingDivergedError('frame set 10: the loss became nan at iteration 30', found='loss nan', "
             "allowed='a finite loss', fix='check the labels')\n"
             "print(e.to_line()); sys.exit(e.exit_code)")
    with pytest.raises(PosesweepError) as raised:
        run_watched([sys.executable, "-c", child], 30)
    error = raised.value
    assert not error.retryable and error.kind == "TrainingDivergedError"
    paragraph = error.explain()
    assert "training diverged: frame set 10: the loss became nan at iteration 30" in paragraph
    assert "Found: loss nan" in paragraph and "What to do: check the labels" in paragraph
    assert "A retry cannot help" in paragraph
    assert not isinstance(error, InputError) or not error.retryable


def test_a_stalled_child_is_killed_by_the_watchdog():
    started = time.monotonic()
    with pytest.raises(TrainerCommandError, match="stalled") as raised:
        run_watched([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(120)"], 2)
    assert time.monotonic() - started < 30 and raised.value.retryable
