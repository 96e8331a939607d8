"""A disk that fills while the study runs (others share it): one paragraph naming the disk, no retry into the same
full disk, and the run goes on once there is room. A real small file system (tmpfs) fills for real; mounting one
needs root (as CI here has), else these tests fail saying so."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from posesweep import stages
from posesweep.disk import disk_full_from
from posesweep.errors import ChildReportedError, DiskFullError, PosesweepError
from posesweep.runner import run_posesweep

CONF = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "train_fraction": 0.8,
        "max_iterations": 40, "snapshot_interval": 20, "allow_random_init": True}


@pytest.fixture
def small_disk(tmp_path):
    """A 1.3 GB file system of its own, for a data root that can be filled."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.fail(f"this test mounts a small file system to fill, and could not ({mounted.stderr.strip()}): it "
                    f"needs root (a container: --privileged), or deselect it with -k 'not full_disk'")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """A file taking all of the disk's room but ``leave_bytes``."""
    filler = disk / "someone-elses-data.bin"
    free = shutil.disk_usage(disk).free + (filler.stat().st_size if filler.exists() else 0)
    with open(filler, "wb") as out:
        os.posix_fallocate(out.fileno(), 0, max(0, free - leave_bytes))
    return filler


@pytest.mark.slow
def test_a_full_disk_stops_the_stage_that_meets_it_naming_the_disk_and_the_run_goes_on_once_there_is_room(
        tiny_cohort, small_disk, monkeypatch):
    root = Path(shutil.copytree(tiny_cohort, small_disk / "data"))
    run = stages.prepare_run(root, CONF, "manual__full_disk")  # the whole study fits when it starts

    filler = _fill(small_disk, leave_bytes=16 * 1024)  # others fill the shared disk
    monkeypatch.setenv("POSESWEEP_DATA_ROOT", str(root))
    spec = importlib.util.spec_from_file_location("study_full_disk", REPO / "dags" / "dlc_training_study.py")
    dag_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_module)
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as failed:  # an Airflow task's body, as the DAG wraps it
        dag_module.explained(stages.extract_cohort_frames)(run)
    paragraph = str(failed.value)
    assert paragraph.startswith("the disk is full: the disk holding ")
    assert f"GB free of 1.3 GB on the file system mounted at {small_disk}" in paragraph
    assert f"What to do: free space on {small_disk}, or move the data root (POSESWEEP_DATA_ROOT)" in paragraph
    assert "No retry helps until this is mended; then clear the failed task" in paragraph
    assert isinstance(disk_full_from(failed.value.__cause__), DiskFullError)  # the OSError it came from

    filler.unlink()  # room again: the same stage, cleared, goes on
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    assert stages.validate_label_table(run)["success"]
    stages.make_frame_sets(run)

    _fill(small_disk, leave_bytes=2 * 2**20)  # full again before the initial weights (94 MB) are written
    with pytest.raises(PosesweepError) as child_failed:  # TensorFlow's saver in the child: its own error's text
        run_posesweep(run.command("prepare-training"))
    error = child_failed.value
    assert isinstance(error, ChildReportedError) and error.kind == "DiskFullError"  # said by the child itself
    assert error.title == "the disk is full" and not error.retryable
    assert f"the disk holding {run.layout.run_dir / 'weights'} has no room left" in error.explain()
    assert f"on the file system mounted at {small_disk}" in error.explain()

    filler.unlink()
    run_posesweep(run.command("prepare-training"))  # the task cleared: it goes on, from nothing half written
    assert (run.layout.run_dir / "weights" / "initial_weights.json").exists()

    # the run cleared from its start: prepare_run counts what the run has already written as room it has
    from posesweep.budget import estimate, written_bytes
    from posesweep.errors import StudyConfigError
    from posesweep.input_checks import available_frames, frame_size_px

    need = estimate(run.study, frame_size_px(run.cohort), available_frames(run.cohort, run.study),
                    "local", 0.0).disk_bytes
    written = written_bytes([run.layout.run_dir, run.layout.frames_cache(run.study.frames_per_video,
                                                                         run.study.seed)])
    assert written > 94e6  # the initial weights at least
    _fill(small_disk, leave_bytes=int(need - written + 10e6))
    stages.prepare_run(root, CONF, "manual__full_disk")
    _fill(small_disk, leave_bytes=int(need - written - 10e6))
    with pytest.raises(StudyConfigError, match="GB of the study's outputs already written"):
        stages.prepare_run(root, CONF, "manual__full_disk")
