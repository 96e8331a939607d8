import logging
import sys
import time

import pytest

from posesweep.runner import TrainerCommandError, run_watched


def test_child_output_is_streamed_into_the_log(caplog):
    with caplog.at_level(logging.INFO):
        run_watched([sys.executable, "-c", "print('iteration 10'); print('iteration 20')"], 30)
    assert "iteration 10" in caplog.text and "iteration 20" in caplog.text


def test_a_failing_child_raises_with_its_last_lines():
    with pytest.raises(TrainerCommandError, match=r"exit code 3(.|\n)*loss is nan"):
        run_watched([sys.executable, "-c", "import sys; print('loss is nan'); sys.exit(3)"], 30)


def test_a_stalled_child_is_killed_by_the_watchdog():
    started = time.monotonic()
    with pytest.raises(TrainerCommandError, match="stalled"):
        run_watched([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(120)"], 2)
    assert time.monotonic() - started < 30
