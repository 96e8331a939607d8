"""A training child killed after its second snapshot resumes on retry and ends like an uninterrupted run."""

import logging
import os
import re
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


@pytest.fixture(autouse=True)
def children_keep_their_temporary_files_in_pytests_folder(tmp_path_factory, monkeypatch):
    """The training children these tests start and SIGKILL themselves (not through the runner, which gives each
    child its own temporary folder) leave TensorFlow's autograph files behind: in pytest's folder, not in /tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("children-tmp")))


@pytest.mark.slow
def test_killed_training_resumes_from_its_newest_snapshot(tiny_cohort, tmp_path, caplog, monkeypatch):
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

    monkeypatch.setenv("POSESWEEP_GPUS", "0")  # the retry's child is given a GPU, on this machine without any
    run_posesweep(run.command("train", 12), on_one_gpu="frame set 12's training")  # the task's retry

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
    assert any("[frame set 12] this training was given GPU 0 (CUDA_VISIBLE_DEVICES) but tensorflow sees no GPU: it "
               "trains on the CPU" in line and "tensorflow[and-cuda]" in line for line in lines)
    chatter = ("Training parameter", "Starting training", "overwritten as", "Batch Size is", "Loading ImageNet",
               "Config:", "NumExpr", "You passed a split", "Happy training", "'all_joints'")
    assert not [line for line in lines if any(word in line for word in chatter)]
    own = {line.split(": ", 1)[1] for line in lines if line.startswith("posesweep.")}
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
def test_frames_larger_than_deeplabcuts_max_input_size_are_trained_on_not_refused(tmp_path):
    """DeepLabCut's TensorFlow loader refuses a batch whose scaled frame has more than max_input_size squared
    pixels (1500: 2.25 megapixels) and stops training after ten refusals in a row, telling the lab to edit a
    pose_cfg.yaml posesweep writes. A 2560x1440 camera's frames at the largest training scale (0.8 x 1.25) have
    3.7: the lab's training stopped at once, or hours in. prepare-training now sets it to what the frames need."""
    import numpy as np
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.pose_estimation_tensorflow.datasets import PoseDatasetFactory

    from posesweep.synthetic import SynthOptions, generate_cohort

    cohort = tmp_path / "cohort"
    generate_cohort(cohort / "cohorts" / "tiny", SynthOptions(participants=2, duration_s=1.0, width_px=2560,
                                                              height_px=1440, seed=3))
    run = training_ready_run(cohort, tmp_path / "data", {**CONF, "frames_per_video": 6, "frame_set_sizes": [12]},
                             "manual__qhd")
    [train_cfg] = (run.layout.project_dir / "dlc-models").rglob("train/pose_cfg.yaml")
    assert yaml.safe_load(train_cfg.read_text())["max_input_size"] == 1920  # 1920 x 1920 = 2560 x 1440 pixels

    def batches_drawn(max_input_size: int) -> int:
        cfg = load_config(str(train_cfg))
        cfg["max_input_size"] = max_input_size
        dataset, drawn = PoseDatasetFactory.create(cfg), 0
        np.random.seed(0)  # the scale of each batch is drawn with numpy's global generator
        try:
            for _ in range(12):
                dataset.next_batch()
                drawn += 1
        except ValueError as refused:
            assert "may be too large" in str(refused)
        return drawn

    assert batches_drawn(1920) == 12
    assert batches_drawn(1500) < 12  # DeepLabCut's default: the training would have stopped here


@pytest.mark.slow
def test_a_real_training_that_diverges_fails_without_retry_and_says_what_to_do(tiny_cohort, tmp_path):
    """DeepLabCut trained with an absurd learning rate: the loss turns NaN, the child stops at once and the task's
    error is an input error (no retry) with the iteration and what to change: from random weights (this run's),
    first DeepLabCut 3's PyTorch engine, as a parameter the command line's new run takes up."""
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
    assert "from random weights" in paragraph and "What to do: trigger with engine=pytorch" in paragraph
    assert error.parameters == {"engine": "pytorch"}
    assert not (run.layout.training_dir(12) / "training.json").exists()
    assert not (train_dir / "snapshot-200.index").exists()  # stopped at once, not after all its iterations


@pytest.mark.slow
def test_a_tensorflow_training_killed_between_snapshots_goes_on_from_its_resume_point(tiny_cohort, tmp_path):
    """DeepLabCut's TensorFlow loop, killed between two snapshots, goes on from its newest resume point (saved
    every POSESWEEP_RESUME_POINT_SECONDS; 0 here: at every progress line), not from the snapshot before it; the
    points are gone once the training is done and nothing scores them."""
    from posesweep.resume_points import TF_RESUME_FOLDER

    conf = {**CONF, "max_iterations": 100}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__tf_resume_point")
    layout = run.layout
    train_dir = next((layout.project_dir / "dlc-models").rglob("train"))
    command = [sys.executable, "-m", "posesweep.cli", *run.command("train", 12)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "POSESWEEP_RESUME_POINT_SECONDS": "0"})

    def points() -> list[int]:  # complete ones: their folder is renamed into place once written
        return sorted(int(m.group(1)) for p in train_dir.glob("posesweep-resume-*")
                      if (m := TF_RESUME_FOLDER.fullmatch(p.name)))

    deadline = time.monotonic() + 600
    while not [it for it in points() if it > 50]:
        assert child.poll() is None and time.monotonic() < deadline, "training ended before a resume point"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    [resumed_at] = points()  # one kept: each new point replaces the one before
    assert 50 < resumed_at < 100 and resumed_at % 10 == 0  # a progress line's iteration, past the snapshot
    assert (train_dir / "snapshot-50.index").exists() and not (train_dir / "snapshot-100.index").exists()
    kept = {p.name: p.read_bytes() for p in train_dir.glob("snapshot-50.*")}

    retry = subprocess.run(command, capture_output=True, text=True, timeout=600)  # the default interval: 10 min
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert (f"resuming from the resume point at iteration {resumed_at} (1 of 2 snapshots complete); "
            f"learning-rate schedule continued") in retry.stdout
    trained = [int(m.group(1)) for m in re.finditer(r"iteration (\d+)/100 loss", retry.stdout)]
    assert trained and min(trained) == resumed_at + 10  # not from the snapshot: nothing trained twice
    assert not points() and not list(train_dir.glob("posesweep-resume-*"))  # gone with the snapshot after them
    assert {p.name: p.read_bytes() for p in train_dir.glob("snapshot-50.*")} == kept
    record = stages.train(run, 12)
    assert record["resumed_from_iteration"] == resumed_at and record["snapshot_iterations"] == [50, 100]
    rows = [int(line.split(",")[0]) for line in (train_dir / "learning_stats.csv").read_text().splitlines()]
    assert rows == list(range(10, 101, 10))  # no iteration twice and none lost: the point's own row came first
    assert sorted(p.name for p in layout.evaluation_dir.rglob("snapshot-*.csv")) == ["snapshot-100.csv",
                                                                                   "snapshot-50.csv"]


def test_a_tensorflow_resume_point_counts_only_when_complete_past_the_newest_snapshot_and_before_the_end(tmp_path):
    """A half-written point (its folder not yet renamed into place), one from before the newest snapshot (killed
    between DeepLabCut's snapshot and the point's removal) and one at the end are passed over; the newest of the
    rest is the one to go on from, and the others are removed."""
    from posesweep.resume_points import remove_tensorflow_resume_points, tensorflow_resume_point

    def point(folder: str, iteration: int) -> None:
        (tmp_path / folder).mkdir()
        for suffix in (".index", ".data-00000-of-00001"):
            (tmp_path / folder / f"snapshot-{iteration}{suffix}").write_bytes(b"x")

    assert tensorflow_resume_point(tmp_path, 50, 200) is None  # none saved
    point("posesweep-resume-40", 40)
    point("posesweep-resume-70", 70)
    point("posesweep-resume-90.partial", 90)
    point("posesweep-resume-200", 200)
    assert tensorflow_resume_point(tmp_path, 50, 200) == (70, tmp_path / "posesweep-resume-70" / "snapshot-70")
    assert tensorflow_resume_point(tmp_path, 70, 200) is None  # the snapshot is as new
    (tmp_path / "posesweep-resume-70" / "snapshot-70.index").unlink()
    assert tensorflow_resume_point(tmp_path, 50, 200) is None  # incomplete
    remove_tensorflow_resume_points(tmp_path, keep=40)
    assert [p.name for p in tmp_path.iterdir()] == ["posesweep-resume-40"]


@pytest.mark.slow
def test_a_tensorflow_training_told_to_stop_saves_a_resume_point_at_its_next_progress_line(tiny_cohort, tmp_path):
    """SIGTERM to ``posesweep watch`` (a preempted pod) reaches DeepLabCut's TensorFlow loop: at its next progress
    line it saves a resume point whatever the interval (the default 10 minutes here) and ends, retryable; the
    retry goes on from there."""
    from posesweep.errors import error_from_line

    conf = {**CONF, "max_iterations": 150}  # the stop comes long before the end
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__tf_stopped")
    train_dir = next((run.layout.project_dir / "dlc-models").rglob("train"))
    watch = subprocess.Popen([sys.executable, "-m", "posesweep.cli", "watch", *run.command("train", 12)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (train_dir / "snapshot-50.index").exists():
        assert watch.poll() is None and time.monotonic() < deadline, "training ended before its first snapshot"
        time.sleep(0.2)
    os.kill(watch.pid, signal.SIGTERM)
    out, _ = watch.communicate(timeout=120)
    assert watch.returncode == 75, out[-3000:]
    [error] = [e for e in map(error_from_line, out.splitlines()) if e is not None]
    assert error.kind == "TrainingStoppedError" and error.retryable, error.explain()
    stopped_at = int(re.search(r"stopped on request \(SIGTERM\) at iteration (\d+)", error.what).group(1))
    assert 50 < stopped_at < 150 and stopped_at % 10 == 0 and stopped_at != 100, stopped_at  # a progress line
    assert f"resume point saved at iteration {stopped_at}" in out

    retry = subprocess.run([sys.executable, "-m", "posesweep.cli", *run.command("train", 12)], capture_output=True,
                           text=True, timeout=600)
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert f"resuming from the resume point at iteration {stopped_at}" in retry.stdout
    record = stages.train(run, 12)
    assert record["resumed_from_iteration"] == stopped_at and record["snapshot_iterations"] == [50, 100, 150]
    assert not list(train_dir.glob("posesweep-resume-*"))
    rows = [int(line.split(",")[0]) for line in (train_dir / "learning_stats.csv").read_text().splitlines()]
    assert rows == list(range(10, 151, 10))  # the stopped iteration's row too: the point is saved after it


@pytest.mark.slow
def test_a_tensorflow_training_whose_task_is_killed_saves_its_resume_point_and_the_retry_waits_for_it(tiny_cohort,
                                                                                                   tmp_path):
    """Airflow's supervisor SIGKILLs a cleared task 5 s after its SIGTERM (the OOM killer or a lost worker: at
    once), before a TensorFlow training reaches its next progress line. The kernel then SIGTERMs the training: it
    saves a resume point, its output going to a file in its folder as its task's pipe is gone, and ends within
    the grace; the retry waits for the folder's lock and goes on from that point."""
    import psutil

    from posesweep.locks import LOCK_FILE, exclusive_writer
    from posesweep.resume_points import OUTPUT_AFTER_TASK, STOP_GRACE_SECONDS

    conf = {**CONF, "max_iterations": 150}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__tf_task_killed")
    train_dir = next((run.layout.project_dir / "dlc-models").rglob("train"))
    folder = run.layout.training_dir(12)
    task = subprocess.Popen([sys.executable, "-m", "posesweep.cli", "watch", *run.command("train", 12)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (train_dir / "snapshot-50.index").exists():
        assert task.poll() is None and time.monotonic() < deadline, "training ended before its first snapshot"
        time.sleep(0.2)
    [training] = psutil.Process(task.pid).children()
    assert f"pid {training.pid} " in (folder / LOCK_FILE).read_text()  # the training holds its folder
    os.kill(task.pid, signal.SIGKILL)  # no SIGTERM reaches the training from its task: only the kernel's
    task.wait()
    notes: list[str] = []
    with exclusive_writer(folder, "the network of frame set 12", wait_s=STOP_GRACE_SECONDS + 15,
                          waiting=notes.append):  # the retry's wait
        assert not training.is_running() or training.status() == psutil.STATUS_ZOMBIE
    output = (folder / OUTPUT_AFTER_TASK).read_text()
    saved = re.search(r"resume point saved at iteration (\d+)", output)
    assert saved and "TrainingStoppedError" in output, output[-3000:]
    stopped_at = int(saved.group(1))
    assert 50 < stopped_at < 150, stopped_at

    retry = subprocess.run([sys.executable, "-m", "posesweep.cli", *run.command("train", 12)], capture_output=True,
                           text=True, timeout=600)
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert f"resuming from the resume point at iteration {stopped_at}" in retry.stdout
    assert "the previous try's training went on after its task had ended; its last lines" in retry.stdout
    assert f"  | [frame set 12] resume point saved at iteration {stopped_at}" in retry.stdout  # in its task log
    assert (f"  | ended: the training was stopped before its end: frame set 12: stopped on request (SIGTERM) at "
            f"iteration {stopped_at}") in retry.stdout
    assert not (folder / OUTPUT_AFTER_TASK).exists() and len(list(folder.glob("output-after-its-task-ended-*")))
    assert stages.train(run, 12)["snapshot_iterations"] == [50, 100, 150]
