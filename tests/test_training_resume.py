"""A training child killed after its second snapshot resumes on retry and ends like an uninterrupted run."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import training_ready_run
from posesweep import stages
from posesweep.runner import run_posesweep

CONF = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
        "max_iterations": 200, "snapshot_interval": 50, "allow_random_init": True}


@pytest.mark.slow
def test_killed_training_resumes_from_its_newest_snapshot(tiny_cohort, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run = training_ready_run(tiny_cohort, tmp_path / "data", CONF, "manual__resume")
    layout = run.layout
    train_dir = next((layout.project_dir / "dlc-models").rglob("train"))
    original_cfg = (train_dir / "pose_cfg.yaml").read_text()

    child = subprocess.Popen([sys.executable, "-m", "posesweep.cli", *run.command("train", 12)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (train_dir / "snapshot-100.index").exists():
        assert child.poll() is None and time.monotonic() < deadline, "training ended before its second snapshot"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (layout.training_dir(12) / "training.json").exists()
    assert not (train_dir / "snapshot-200.index").exists()

    run_posesweep(run.command("train", 12))  # the task's retry

    record = stages.train(run, 12)
    assert record["snapshot_iterations"] == [50, 100, 150, 200]
    assert record["resumed_from_iteration"] in (100, 150)
    rows = [line.split(",") for line in (train_dir / "learning_stats.csv").read_text().splitlines()]
    assert [int(r[0]) for r in rows] == list(range(10, 201, 10))  # unbroken history, no iteration twice
    assert {float(r[2]) for r in rows} == {0.005}  # schedule continued (DLC's first step lasts to 10k)
    assert (train_dir / "pose_cfg.yaml").read_text() == original_cfg
    assert yaml.safe_load(original_cfg)["init_weights"].endswith("random_init.ckpt")
    # every snapshot, from before and after the kill, was scored by the training processes
    parts = [layout.snapshot_errors_file(12, it) for it in (50, 100, 150, 200)]
    assert all(part.exists() for part in parts)
    stamps = [part.stat().st_mtime_ns for part in parts]
    stages.evaluate(run, 12)
    assert [part.stat().st_mtime_ns for part in parts] == stamps  # nothing scored twice
    assert layout.evaluation_file(12).exists()

    # the task log of prepare-training and the retry: posesweep's progress, once, and none of DeepLabCut's chatter
    lines = [r.getMessage() for r in caplog.records if r.name == "posesweep.runner"]
    assert any(line.startswith("[frame set 12] iteration 200/200 loss") for line in lines)
    assert any(line.startswith("[frame set 12] scored snapshot") for line in lines)
    chatter = ("Training parameter", "Starting training", "overwritten as", "Batch Size is", "Loading ImageNet",
               "Config:", "NumExpr", "You passed a split", "Happy training", "'all_joints'")
    assert not [line for line in lines if any(word in line for word in chatter)]
    own = {line.split(": ", 1)[1] for line in lines if line.startswith(("INFO posesweep.", "WARNING posesweep."))}
    assert own and not own & set(lines)  # no record printed a second time by DeepLabCut's own console handler


@pytest.mark.slow
def test_prepare_training_killed_between_deeplabcuts_write_and_its_own_edits_redoes_the_shuffle(tiny_cohort, tmp_path):
    """pose_cfg.yaml exists as DeepLabCut wrote it, without posesweep's edits: the retry must not take it as done."""
    run = training_ready_run(tiny_cohort, tmp_path / "data", CONF, "manual__prepare")
    train_dir = next((run.layout.project_dir / "dlc-models").rglob("train"))
    edited = yaml.safe_load((train_dir / "pose_cfg.yaml").read_text())
    assert edited["min_input_size"] == 32 and edited["init_weights"].endswith("random_init.ckpt")
    # the state a kill leaves after DeepLabCut's write and before posesweep's edits
    (train_dir / "posesweep_dataset.done").unlink()
    (train_dir / "pose_cfg.yaml").write_text(yaml.safe_dump({**edited, "min_input_size": 64, "batch_size": 8}))
    run_posesweep(run.command("prepare-training"))  # the retry
    again = yaml.safe_load((train_dir / "pose_cfg.yaml").read_text())
    assert again["min_input_size"] == 32 and again["batch_size"] == CONF.get("batch_size", 1)
    assert (train_dir / "posesweep_dataset.done").exists()


@pytest.mark.slow
def test_a_real_training_that_diverges_fails_without_retry_and_says_what_to_do(tiny_cohort, tmp_path):
    """DeepLabCut trained with an absurd learning rate: the loss turns NaN, the child stops at once and the task's
    error is an input error (no retry) with the iteration and what to change."""
    from posesweep.errors import PosesweepError

    run = training_ready_run(tiny_cohort, tmp_path / "data", CONF, "manual__diverge")
    train_dir = next((run.layout.project_dir / "dlc-models").rglob("train"))
    cfg = yaml.safe_load((train_dir / "pose_cfg.yaml").read_text())
    cfg["multi_step"] = [[1.0e4, 10_000]]  # the lab edited the schedule: this learning rate cannot converge
    (train_dir / "pose_cfg.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(PosesweepError) as diverged:
        run_posesweep(run.command("train", 12))
    error = diverged.value
    assert error.kind == "TrainingDivergedError" and not error.retryable
    paragraph = error.explain()
    assert "training diverged: frame set 12: the loss became nan" in paragraph.lower()
    assert "lower the learning rate" in paragraph and "A retry cannot help" in paragraph
    assert not (run.layout.training_dir(12) / "training.json").exists()
    assert not (train_dir / "snapshot-200.index").exists()  # stopped at once, not after all its iterations
