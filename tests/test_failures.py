"""Failures as a lab meets them, in real dag.test() runs: input errors fail their task on the first try with one
paragraph naming the lab's file, the value found, the value allowed and what to do; a killed trainer is retried."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO
from posesweep.labels import read_collected_data, write_collected_data

TINY = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "train_fraction": 0.8,
        "max_iterations": 40, "snapshot_interval": 20, "allow_random_init": True}
REACHING = {"cohort": "reach", "frame_set_sizes": [20, 40], "train_fraction": 0.8, "max_iterations": 40,
            "snapshot_interval": 20, "allow_random_init": True, "max_missing_label_fraction": 0.9}
# the stages after label validation, marked successful without running where a test is about the stages before
AFTER_VALIDATION = "prepare_training|train_network|evaluate_snapshots|statistics_and_report"


def _study(monkeypatch, data_root: Path):
    monkeypatch.setenv("POSESWEEP_DATA_ROOT", str(data_root))
    spec = importlib.util.spec_from_file_location(f"study_{data_root.name}", REPO / "dags" / "dlc_training_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(monkeypatch, data_root: Path, conf: dict, mark_success_pattern: str | None = None):
    module = _study(monkeypatch, data_root)
    dag_run = module.study_dag.test(run_conf=conf, mark_success_pattern=mark_success_pattern)
    tis = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
    return dag_run, tis, module.FAILURES


def _failed_once(tis, failures, task_id: str) -> str:
    """The task failed on its first try and was not retried; returns its paragraph."""
    failed = [ti for (tid, _), ti in tis.items() if tid == task_id]
    assert failed and all(str(ti.state) == "failed" for ti in failed), {k: str(v.state) for k, v in tis.items()}
    assert all(ti.try_number == 1 for ti in failed)  # no retry
    paragraphs = [f for f in failures if f.startswith(f"task {task_id}")]
    assert len(paragraphs) == len(failed)
    assert "A retry cannot help" in paragraphs[0]
    return paragraphs[0]


@pytest.fixture
def tiny_root(tiny_cohort, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_cohort, tmp_path / "data"))


@pytest.fixture
def reaching_root(tmp_path) -> Path:
    """A lab's real DeepLabCut project dropped in as a cohort."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "dlc-reaching", root / "cohorts" / "reach")
    return root


def _lab_labels(root: Path) -> Path:
    return root / "cohorts" / "reach" / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"


@pytest.mark.slow
def test_invalid_parameters_fail_prepare_run_at_once(airflow_db, tiny_root, monkeypatch):
    dag_run, tis, failures = _run(monkeypatch, tiny_root, {**TINY, "max_iterations": 100, "snapshot_interval": 30})
    paragraph = _failed_once(tis, failures, "prepare_run")
    assert "snapshot_interval=30 does not divide max_iterations=100" in paragraph
    assert "What to do: change these values in the trigger form" in paragraph


@pytest.mark.slow
def test_a_cohort_without_videos_fails_at_once_naming_the_folder(airflow_db, tiny_root, monkeypatch):
    (tiny_root / "cohorts" / "empty" / "videos").mkdir(parents=True)
    dag_run, tis, failures = _run(monkeypatch, tiny_root, {**TINY, "cohort": "empty"})
    paragraph = _failed_once(tis, failures, "prepare_run")
    assert str(tiny_root / "cohorts" / "empty" / "videos") in paragraph and ".mp4" in paragraph


@pytest.mark.slow
def test_a_broken_video_under_policy_fail_fails_at_once_naming_it(airflow_db, tiny_root, monkeypatch):
    video = tiny_root / "cohorts" / "tiny" / "videos" / "P002.mp4"
    video.write_bytes(video.read_bytes()[:2000])  # truncated while copying: it does not open
    dag_run, tis, failures = _run(monkeypatch, tiny_root, TINY)
    paragraph = _failed_once(tis, failures, "prepare_run")  # before any video is decoded
    assert "1 of 3 videos cannot be opened" in paragraph and "(2.0 kB: a copy cut short" in paragraph
    assert str(video) in paragraph and "bad_video_policy=exclude" in paragraph
    assert paragraph.parameters == {"bad_video_policy": "exclude"}  # make study prints the new run's command with it


@pytest.mark.slow
def test_a_label_outside_the_image_fails_validation_at_once_naming_the_labs_file(airflow_db, reaching_root,
                                                                                 monkeypatch):
    lab_file = _lab_labels(reaching_root)
    labels = read_collected_data(lab_file)
    image = labels.index[3][2]
    labels.loc[labels.index[3], (labels.columns[0][0], "Hand", "x")] = 900.0  # the frames are 832 px wide
    write_collected_data(labels, lab_file.parent.parent, "reachingvideo1", "Mackenzie")
    dag_run, tis, failures = _run(monkeypatch, reaching_root, REACHING, AFTER_VALIDATION)
    paragraph = _failed_once(tis, failures, "validate_labels")
    assert f"File: {lab_file}" in paragraph
    assert f"{image}, Hand: found x = 900 px, allowed x < 832 px (the image width)" in paragraph
    assert "What to do: correct these labels in DeepLabCut's labeling GUI" in paragraph
    assert str(tis[("build_frame_sets", -1)].state) == "upstream_failed"
    assert paragraph.parameters == {}  # a label outside the image: no setting gets past it


@pytest.mark.slow
def test_a_missing_image_and_a_missing_bodypart_fail_validation_at_once(airflow_db, reaching_root, monkeypatch):
    folder = _lab_labels(reaching_root).parent
    (folder / "img020.png").unlink()
    config = reaching_root / "cohorts" / "reach" / "config.yaml"
    config.write_text(config.read_text().replace("- Joystick2\n", "- Joystick2\n- Elbow\n", 1))
    dag_run, tis, failures = _run(monkeypatch, reaching_root, REACHING, AFTER_VALIDATION)
    paragraph = _failed_once(tis, failures, "validate_labels")
    assert f"File: {folder / 'CollectedData_Mackenzie.h5'}" in paragraph
    assert "img020.png: found no img020.png in " in paragraph
    assert "bodyparts without a label in any frame:\n      found no labels for Elbow" in paragraph
    assert (f"Landmark names: the bodyparts in {config} list Elbow, which no frame has a label of: label it in "
            f"DeepLabCut's labeling GUI") in paragraph and "or take it out of the bodyparts" in paragraph
    assert "out of sight" not in paragraph  # never labelled at all: a name, not occlusion; no setting proposed
    assert paragraph.parameters == {}


@pytest.mark.slow
def test_a_truncated_h5_is_read_from_its_intact_csv_and_the_run_goes_on(airflow_db, reaching_root, monkeypatch,
                                                                       caplog):
    lab_file = _lab_labels(reaching_root)
    lab_file.write_bytes(lab_file.read_bytes()[:3000])
    dag_run, tis, failures = _run(monkeypatch, reaching_root, REACHING, AFTER_VALIDATION)
    assert str(tis[("validate_labels", -1)].state) == "success" and failures == []
    assert str(tis[("build_frame_sets", -1)].state) == "success"
    assert f"{lab_file} cannot be read" in caplog.text and "using DeepLabCut's copy" in caplog.text


@pytest.mark.slow
def test_unreadable_h5_and_csv_fail_at_once_naming_both(airflow_db, reaching_root, monkeypatch):
    lab_file = _lab_labels(reaching_root)
    lab_file.write_bytes(lab_file.read_bytes()[:3000])
    lab_file.with_suffix(".csv").write_text("scorer,Mackenzie\nnot,a,label,table\n")
    dag_run, tis, failures = _run(monkeypatch, reaching_root, REACHING, AFTER_VALIDATION)
    failed = [task for (task, _), ti in tis.items() if str(ti.state) == "failed"]
    assert len(failed) == 1
    paragraph = _failed_once(tis, failures, failed[0])
    assert f"File: {lab_file} and {lab_file.with_suffix('.csv')}" in paragraph
    assert "save the labels again from DeepLabCut's labeling GUI" in paragraph


@pytest.mark.slow
def test_missing_initial_weights_fail_prepare_run_at_once(airflow_db, tiny_root, monkeypatch):
    """On the local backend the weights are this machine's: looked for before any frame is extracted (a video
    cohort's labelling can take days before the networks' initial weights were asked for)."""
    monkeypatch.delenv("POSESWEEP_PRETRAINED_CHECKPOINT", raising=False)
    dag_run, tis, failures = _run(monkeypatch, tiny_root, {**TINY, "allow_random_init": False})
    paragraph = _failed_once(tis, failures, "prepare_run")
    assert str(tis[("extract_frames", -1)].state) == "upstream_failed"
    assert "no initial weights" in paragraph and "POSESWEEP_PRETRAINED_CHECKPOINT" in paragraph
    assert "allow_random_init=true" in paragraph
    assert paragraph.parameters == {"allow_random_init": True}  # through the child's error line: the setting


@pytest.mark.slow
def test_a_training_child_killed_with_sigkill_is_retried_and_the_run_succeeds(airflow_db, tiny_root, monkeypatch):
    """The OOM killer's signal: the task's retry resumes the network from its newest snapshot."""
    import psutil

    conf = {**TINY, "frame_set_sizes": [12], "max_iterations": 200, "snapshot_interval": 50}
    killed: list[int] = []

    def kill_the_trainer_after_its_first_snapshot() -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and not killed:
            if any(tiny_root.glob("runs/tiny/*/project/dlc-models/**/train/snapshot-50.index")):
                for process in psutil.Process().children(recursive=True):  # this test's only: never another run's
                    with contextlib.suppress(psutil.NoSuchProcess):
                        if "posesweep.cli" in process.cmdline() and "train" in process.cmdline():
                            os.kill(process.pid, signal.SIGKILL)
                            killed.append(process.pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_trainer_after_its_first_snapshot, daemon=True)
    killer.start()
    dag_run, tis, failures = _run(monkeypatch, tiny_root, conf)
    killer.join(timeout=1)
    assert killed, "the trainer was never seen"
    assert str(dag_run.state) == "success", failures
    train = tis[("train_network", 0)]
    assert str(train.state) == "success" and train.try_number == 2
    assert len(failures) == 1 and "killed by SIGKILL" in failures[0] and "The task is retried" in failures[0]
