"""A study run again with the same seed on the same machine trains the same networks: the numbers a lab publishes
come back when it reruns (frames and splits follow the seed; so does training, on the CPU)."""

import pandas as pd
import pytest

from conftest import training_ready_run
from posesweep import stages
from posesweep.runner import run_posesweep

CONF = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
        "max_iterations": 20, "snapshot_interval": 10, "allow_random_init": True}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["tensorflow", "pytorch"])
def test_a_rerun_with_the_same_seed_trains_the_same_network(tiny_cohort, tmp_path, engine):
    """DeepLabCut's TensorFlow training drew its heads' initial weights, frame picks and augmentation unseeded
    (two runs of the demo gave its 40-frame network 11.8 and 8.5 px): every snapshot's scored errors now agree."""
    errors = []
    for rerun in ("first", "second"):
        run = training_ready_run(tiny_cohort, tmp_path / rerun, {**CONF, "engine": engine}, f"manual__{rerun}")
        run_posesweep(run.command("train", 12))
        stages.evaluate(run, 12)
        errors.append([pd.read_csv(run.layout.snapshot_errors_file(12, it)) for it in (10, 20)])
    for first, second in zip(*errors):
        assert first["error_px"].notna().any()
        pd.testing.assert_frame_equal(first, second)
