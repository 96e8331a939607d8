"""An existing DeepLabCut project as a cohort: what a lab's copy of its project may look like, and what it is told."""

import shutil

import pytest

from posesweep.cohort import load_cohort, unmatched_videos
from posesweep.errors import CohortError


def _failure(project) -> str:
    with pytest.raises(CohortError) as failure:
        load_cohort(project)
    assert not failure.value.retryable
    return str(failure.value)


def test_labels_of_another_scorer_than_config_yaml_names_are_named_with_the_fix(reaching_project):
    config = reaching_project / "config.yaml"
    config.write_text(config.read_text().replace("scorer: Mackenzie", "scorer: Jane"))
    paragraph = _failure(reaching_project)
    assert "no labels by the project's scorer 'Jane'" in paragraph and f"File: {config}" in paragraph
    assert "Found: scorer: Jane; label files of 'Mackenzie'" in paragraph
    assert "set scorer: in config.yaml to the name in the label files' names ('Mackenzie'" in paragraph


def test_a_config_yaml_that_is_not_yaml_names_the_line(reaching_project):
    config = reaching_project / "config.yaml"
    config.write_text(config.read_text().replace("bodyparts:\n- Hand", "bodyparts:\n- Hand\n  - : [", 1))
    paragraph = _failure(reaching_project)
    assert "config.yaml is not valid YAML" in paragraph and f"File: {config}" in paragraph and "line" in paragraph


@pytest.mark.parametrize("edit, told", [
    (("project_path: WILL BE AUTOMATICALLY UPDATED BY DEMO CODE", 'project_path: "C:\\Users\\Lab\\Reaching"'),
     "What to do: on line 7, a backslash inside double quotes starts an escape in YAML (\\U, \\s ...): write a "
     "Windows path in single quotes ('C:\\Users\\...') or without quotes, as DeepLabCut writes it"),
    (("- Hand", "\t- Hand"), "What to do: YAML indents with spaces only: replace the tab on line 14 with spaces"),
    (("scorer: Mackenzie\n", ""), "What to do: add the project's scorer to config.yaml (as DeepLabCut wrote it when "
                                  "the project was created): `scorer: Mackenzie`, the name in its label files "
                                  "(CollectedData_Mackenzie.h5)"),
    (("bodyparts:\n- Hand\n- Finger1\n- Tongue\n- Joystick1\n- Joystick2\n", "bodyparts:\n"),
     "(as DeepLabCut wrote it when the project was created): the landmarks its label files hold, in their order: "
     "bodyparts: [Hand, Finger1, Tongue, Joystick1, Joystick2]"),
])
def test_a_config_yaml_a_lab_edited_by_hand_is_told_the_line_that_mends_it(reaching_project, edit, told):
    """The slips of a hand edit: a Windows path in double quotes (YAML reads \\U as an escape), a tab to indent, an
    entry deleted. Before: YAML's own message, or "add the project's scorer", where the label files name it."""
    config = reaching_project / "config.yaml"
    assert edit[0] in config.read_text()
    config.write_text(config.read_text().replace(*edit, 1))
    assert told in _failure(reaching_project)


def test_a_folder_labeled_only_by_someone_else_is_left_out_and_named(reaching_project):
    labeled_data = reaching_project / "labeled-data"
    other = labeled_data / "reachingvideo2"
    other.mkdir()
    shutil.copy(labeled_data / "reachingvideo1" / "CollectedData_Mackenzie.csv", other / "CollectedData_Jane.csv")
    (labeled_data / "reachingvideo1_labeled").mkdir()  # what DeepLabCut's check_labels leaves: not a video
    cohort = load_cohort(reaching_project)
    assert [folder.name for folder in cohort.videos] == ["reachingvideo1"]
    assert unmatched_videos(cohort)["labeled-data folders left out (no CollectedData_Mackenzie file)"] == \
        ["reachingvideo2 (holds CollectedData_Jane.csv: another labeler's; to study them, rename the file to "
         "CollectedData_Mackenzie.csv, and they are read as Mackenzie's)"]


def test_a_folder_holding_only_a_networks_predictions_is_told_to_refine_them_first(reaching_project):
    """After an outlier round (deeplabcut.extract_outlier_frames), a labeled-data folder holds machinelabels-iter0.h5:
    a network's predictions, not labels. Such a folder, and a project with no other, were told to label with the
    GUI or that no scorer was found; now they are told to refine the predictions."""
    labeled_data = reaching_project / "labeled-data"
    outliers = labeled_data / "reachingvideo2"
    outliers.mkdir()
    shutil.copy(labeled_data / "reachingvideo1" / "CollectedData_Mackenzie.h5", outliers / "machinelabels-iter0.h5")
    assert unmatched_videos(load_cohort(reaching_project))[
        "labeled-data folders left out (no CollectedData_Mackenzie file)"] == [
        "reachingvideo2 (holds machinelabels-iter0.h5: a network's predictions for the frames DeepLabCut's "
        "extract_outlier_frames picked, not labels: correct them in deeplabcut.refine_labels and save (its GUI "
        "writes CollectedData_Mackenzie.h5))"]
    shutil.rmtree(labeled_data / "reachingvideo1")
    paragraph = _failure(reaching_project)
    assert "Found: scorer: Mackenzie; label files of no scorer" in paragraph
    assert "machinelabels files in reachingvideo2" in paragraph
    assert "What to do: the machinelabels files are a network's predictions" in paragraph


@pytest.mark.parametrize("layout, expected", [
    ({"P01.mp4": "", "P02.MOV": ""}, ["the videos are not in the cohort's videos/ folder",
                                      "Found: 2 video(s) in the cohort folder itself: P01.mp4, P02.MOV",
                                      "What to do: move them into {cohort}/videos/"]),
    ({"videos/P01/front.mp4": "", "videos/P02/front.mp4": ""}, [
        "the cohort has no videos", "Found: videos in subfolders, which are not read: P01/front.mp4, P02/front.mp4",
        "named after the participant"]),
    ({"videos/P01.braw": "x" * 1000, "videos/0_notes.txt": "x"}, [  # the example converts the video, not notes
        "Found: other files only: 0_notes.txt, P01.braw",
        "Allowed: one video per participant in {cohort}/videos, as .mp4",
        "ffmpeg -i P01.braw -c:v libx264 -pix_fmt yuv420p P01.mp4"]),
    ({"labeled-data/P01/img001.png": ""}, ["part of a DeepLabCut project", "Found: labeled-data/ but no config.yaml",
                                           "copy the project's config.yaml into {cohort}"]),
    ({"videos/P01.mp4": "", "videos/P01.avi": "", "videos/P02.mp4": ""}, [
        "several videos share a name", "Found: P01.avi and P01.mp4", "remove or rename the others"]),
    ({"readme.txt": ""}, ["the cohort has no videos/ folder", "Found: in the folder: readme.txt"]),
    ({"Videos/P01.mp4": ""}, ["the cohort has no videos/ folder", "Found: in the folder: Videos",  # from Windows
                              "What to do: rename Videos/ to videos/ (this machine tells the cases apart"]),
    ({"config.yaml": "", "Labeled-Data/P01/img001.png": ""}, [
        "part of a DeepLabCut project", "Found: config.yaml but no labeled-data/ (Labeled-Data differs in case alone)",
        "What to do: rename Labeled-Data to labeled-data"]),
], ids=["videos-beside-videos-folder", "videos-in-subfolders", "unreadable-format", "half-a-project",
        "same-name-twice", "no-videos-folder", "videos-folder-in-another-case", "labeled-data-in-another-case"])
def test_a_cohort_folder_laid_out_otherwise_is_told_what_was_found_and_where_the_files_go(tmp_path, layout,
                                                                                          expected):
    cohort = tmp_path / "cohorts" / "knee"
    for name, text in layout.items():
        (cohort / name).parent.mkdir(parents=True, exist_ok=True)
        (cohort / name).write_text(text)
    paragraph = _failure(cohort)
    for part in expected:
        assert part.format(cohort=cohort) in paragraph


def test_video_links_into_a_share_not_mounted_here_are_named_not_dropped(tmp_path):
    videos = tmp_path / "cohorts" / "knee" / "videos"
    videos.mkdir(parents=True)
    (videos / "P01.mp4").write_bytes(b"")
    (videos / "P02.mp4").symlink_to("/mnt/nas/knee/P02.mp4")  # the share is not mounted on this machine
    paragraph = _failure(videos.parent)
    assert "1 video link(s) in videos/ lead to no file on this machine" in paragraph
    assert f"File: {videos}" in paragraph and "Found: P02.mp4 -> /mnt/nas/knee/P02.mp4" in paragraph
    assert "mount the share" in paragraph


def test_kinematic_landmarks_in_cohort_json_are_checked_against_the_cohorts_landmarks(tmp_path):
    import json

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    (cohort / "videos" / "P01.mp4").write_bytes(b"")
    bodyparts = ["RASIS", "LASIS", "RKneeLat", "LKneeLat", "RMall", "LMall"]
    named = {"right_hip": "RASIS", "right_knee": "RKneeLat", "right_ankle": "RMall", "left_hip": "LASIS",
             "left_knee": "LKneeLat", "left_ankle": "LMall"}
    manifest = cohort / "cohort.json"
    manifest.write_text(json.dumps({"bodyparts": bodyparts, "kinematic_landmarks": named}))
    assert load_cohort(cohort).kinematic_landmarks == named

    manifest.write_text(json.dumps({"bodyparts": bodyparts, "kinematic_landmarks": {
        **named, "left_knee": "LKneelat", "left_ankle": "RMall"}}))  # misspelt, and one landmark twice
    paragraph = _failure(cohort)
    assert "kinematic_landmarks does not name the hip, knee and ankle the knee angles need" in paragraph
    assert f"File: {manifest}" in paragraph
    assert "Found: left_knee: 'LKneelat' is not one of the landmarks; 'RMall' is named for several roles" in paragraph
    assert "Allowed: each of right_hip, right_knee, right_ankle, left_hip, left_knee, left_ankle (or one side's " \
           "three, for a one-legged task) mapped to a different one of the landmarks RASIS, LASIS, RKneeLat, " \
           "LKneeLat, RMall, LMall" in paragraph
    manifest.write_text(json.dumps({"bodyparts": bodyparts, "kinematic_landmarks": {
        role: name for role, name in named.items() if role != "left_ankle"}}))
    assert "Found: no left_ankle" in _failure(cohort)  # half a side
    right_leg = {role: name for role, name in named.items() if role.startswith("right_")}
    manifest.write_text(json.dumps({"bodyparts": bodyparts, "kinematic_landmarks": right_leg}))
    assert load_cohort(cohort).kinematic_landmarks == right_leg  # a one-legged task
    manifest.write_text(json.dumps({"bodyparts": bodyparts, "kinematic_landmarks": {}}))
    assert "Found: no right_hip; no right_knee" in _failure(cohort)


def test_the_camera_view_in_cohort_json_is_front_back_side_or_refused(tmp_path):
    import json

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    (cohort / "videos" / "P01.mp4").write_bytes(b"")
    assert (load_cohort(cohort).camera_view, load_cohort(cohort).camera_view_declared) == ("front", False)
    for view in ("back", "side", "front"):
        (cohort / "cohort.json").write_text(json.dumps({"camera_view": view}))
        assert (load_cohort(cohort).camera_view, load_cohort(cohort).camera_view_declared) == (view, True)
    (cohort / "cohort.json").write_text(json.dumps({"camera_view": "posterior"}))
    paragraph = _failure(cohort)
    assert "camera_view is not one of the views posesweep knows" in paragraph and "Found: 'posterior'" in paragraph
    assert '"back": the camera is behind the participant' in paragraph


def test_bodyparts_listing_a_landmark_twice_or_written_as_a_text_are_refused_naming_the_file_and_places(
        tmp_path, reaching_project):
    """A landmark listed twice passed validation and then failed prepare_training with a traceback of DeepLabCut's
    project check (and was retried); bodyparts written as a text was read letter by letter."""
    import json

    import yaml

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    (cohort / "videos" / "P01.mp4").write_bytes(b"")
    for bodyparts, said in ((["knee", "ankle", "knee"], "Found: knee at places 1 and 3"),
                            ("knee, ankle", "Found: bodyparts: 'knee, ankle'"),
                            (["knee", None, "ankle"], "Found: an empty name at place 2")):
        (cohort / "cohort.json").write_text(json.dumps({"bodyparts": bodyparts}))
        paragraph = _failure(cohort)
        assert f"File: {cohort / 'cohort.json'}" in paragraph and said in paragraph, paragraph
    (cohort / "cohort.json").write_text(json.dumps({"bodyparts": ["knee", "ankle"]}))
    assert load_cohort(cohort).bodyparts == ("knee", "ankle")

    config = yaml.safe_load((reaching_project / "config.yaml").read_text())
    (reaching_project / "config.yaml").write_text(yaml.safe_dump({**config, "bodyparts": config["bodyparts"] +
                                                                   ["Hand"]}))
    paragraph = _failure(reaching_project)
    assert "bodyparts names a landmark twice" in paragraph and "Found: Hand at places 1 and 6" in paragraph
    assert f"File: {reaching_project / 'config.yaml'}" in paragraph and "keep one of each in config.yaml's" in paragraph


def test_side_view_videos_in_cohort_json_name_the_side_cameras_videos_or_are_refused(tmp_path):
    import json

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    for name in ("P01_front", "P01_side", "P02_front", "P02_side"):
        (cohort / "videos" / f"{name}.mp4").write_bytes(b"")
    (cohort / "cohort.json").write_text(json.dumps({"side_view_videos": "_side$"}))
    loaded = load_cohort(cohort)
    stems = [video.stem for video in loaded.videos]
    assert loaded.side_view_videos(stems) == ["P01_side", "P02_side"] and loaded.camera_view_declared
    assert load_cohort(cohort).side_view_videos(["P01_front"]) == []
    for pattern, said in (("_lateral$", "Found: '_lateral$' in none of P01_front, P01_side, P02_front, P02_side"),
                          ("(side", "side_view_videos is not a regular expression"),
                          ("", "side_view_videos must be a non-empty string")):
        (cohort / "cohort.json").write_text(json.dumps({"side_view_videos": pattern}))
        paragraph = _failure(cohort)
        assert said in paragraph and f"File: {cohort / 'cohort.json'}" in paragraph
    (cohort / "cohort.json").write_text(json.dumps({"camera_view": "side"}))  # a side camera only: every video
    assert load_cohort(cohort).side_view_videos(stems) == sorted(stems)


def test_back_view_videos_in_cohort_json_name_the_videos_filmed_from_behind_or_are_refused(tmp_path):
    """A lab films each landing from the front and from behind: the videos from behind are named by a pattern; one
    that finds none, one that also names a side camera's videos and one beside a camera_view other than the front
    are refused, each saying what to change."""
    import json

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    for name in ("P01_front", "P01_back", "P02_front", "P02_back", "P02_side"):
        (cohort / "videos" / f"{name}.mp4").write_bytes(b"")
    (cohort / "cohort.json").write_text(json.dumps({"back_view_videos": "_back$", "side_view_videos": "_side$"}))
    loaded = load_cohort(cohort)
    stems = [video.stem for video in loaded.videos]
    assert loaded.back_view_videos(stems) == ["P01_back", "P02_back"] and loaded.camera_view == "front"
    assert loaded.side_view_videos(stems) == ["P02_side"] and loaded.camera_view_declared
    for manifest, said in (({"back_view_videos": "_rear$"}, "back_view_videos finds no video"),
                           ({"back_view_videos": "^P02_", "side_view_videos": "_side$"},
                            "side_view_videos and back_view_videos both name a video"),
                           ({"back_view_videos": "_back$", "camera_view": "back"},
                            "Found: \"camera_view\": \"back\" and \"back_view_videos\": '_back$'")):
        (cohort / "cohort.json").write_text(json.dumps(manifest))
        paragraph = _failure(cohort)
        assert said in paragraph and f"File: {cohort / 'cohort.json'}" in paragraph, paragraph
    (cohort / "cohort.json").write_text(json.dumps({"back_view_videos": "^P02_", "side_view_videos": "_side$"}))
    assert "both find P02_side" in _failure(cohort)


def test_back_view_videos_in_an_imported_deeplabcut_project_name_its_labeled_data_folders(reaching_project):
    """In a DeepLabCut project the videos are its labeled-data folders: the pattern is matched against their names,
    and one that finds none names the folders there."""
    import json

    shutil.copytree(reaching_project / "labeled-data" / "reachingvideo1",
                    reaching_project / "labeled-data" / "reachingvideo1_back")
    (reaching_project / "cohort.json").write_text(json.dumps({"back_view_videos": "_back$"}))
    loaded = load_cohort(reaching_project)
    assert loaded.kind == "dlc_project" and loaded.camera_view_declared
    assert loaded.back_view_videos([folder.name for folder in loaded.videos]) == ["reachingvideo1_back"]
    (reaching_project / "cohort.json").write_text(json.dumps({"back_view_videos": "_rear$"}))
    paragraph = _failure(reaching_project)
    assert "back_view_videos finds no video" in paragraph and "reachingvideo1, reachingvideo1_back" in paragraph
    assert f"File: {reaching_project / 'cohort.json'}" in paragraph


def test_an_imported_projects_own_training_settings_that_the_run_replaces_are_named_at_prepare_run(
        reaching_project, tmp_path, caplog):
    """A lab's DeepLabCut 3 project says engine: pytorch; the study trains with its own parameters (the paper's
    engine by default), and prepare_run's log says which of the project's settings it does not follow."""
    import logging

    from posesweep import stages

    root = tmp_path / "data"
    project = shutil.copytree(reaching_project, root / "cohorts" / "reach")  # TrainingFraction 0.95, resnet_50
    conf = {"cohort": "reach", "frame_set_sizes": [20], "train_fraction": 0.95, "max_iterations": 100,
            "snapshot_interval": 50, "allow_random_init": True, "max_missing_label_fraction": 0.8}
    caplog.set_level(logging.INFO)
    stages.prepare_run(root, conf, "manual__as_the_project")
    assert "trains otherwise than this run" not in caplog.text  # DeepLabCut 2's project: no engine, so TF
    (project / "config.yaml").write_text((project / "config.yaml").read_text() + "engine: pytorch\n")
    caplog.clear()
    stages.prepare_run(root, {**conf, "train_fraction": 0.8, "network": "resnet_101"}, "manual__otherwise")
    [line] = [r.getMessage() for r in caplog.records if "trains otherwise than this run" in r.getMessage()]
    assert ("engine: pytorch (this run: tensorflow); default_net_type: resnet_50 (this run: resnet_101); "
            "TrainingFraction: 0.95 (this run: 0.8); the run's parameters decide") in line


def test_a_projects_video_sets_and_labeled_data_folders_that_differ_are_logged_with_what_each_means(
        reaching_project, tmp_path, caplog):
    """The Reaching project's video_sets names a placeholder, not reachingvideo1. A video listed and never labelled
    (a lab adds its analysis videos to video_sets) costs the study nothing: said, not warned; a labelled folder that
    video_sets leaves out is studied, though DeepLabCut's own create_training_dataset would leave it out: warned."""
    import logging

    from posesweep import stages
    from posesweep.cohort import FOLDERS_NOT_IN_VIDEO_SETS, VIDEO_SETS_WITHOUT_A_VIDEO
    from posesweep.run import Run

    root = tmp_path / "data"
    shutil.copytree(reaching_project, root / "cohorts" / "reach")
    stages.prepare_run(root, {"cohort": "reach", "frame_set_sizes": [20], "max_iterations": 100,
                              "snapshot_interval": 50, "allow_random_init": True, "max_missing_label_fraction": 0.8},
                       "manual__mismatched")
    caplog.set_level(logging.INFO)
    summary = stages.extract_cohort_frames(Run.open({"data_root": str(root), "cohort": "reach",
                                                     "run_name": "manual__mismatched"}))
    assert summary["frames_per_video"] == {"reachingvideo1": 55}  # the folder video_sets leaves out: studied
    said = {r.getMessage(): r.levelname for r in caplog.records if r.name == "posesweep.stages"}
    assert said[f"{VIDEO_SETS_WITHOUT_A_VIDEO}: WILL BE AUTOMATICALLY UPDATED BY DEMO CODE"] == "INFO"
    assert said[f"{FOLDERS_NOT_IN_VIDEO_SETS}: reachingvideo1"] == "WARNING"


def test_an_imported_project_with_fewer_labeled_frames_than_the_paper_is_told_the_frame_set_sizes_it_can_have(
        reaching_project, tmp_path):
    """The trigger form's defaults are the paper's 200-800 frames; a lab's project of 55 labeled frames is told the
    same design scaled to what it has. On this CPU without pretrained weights its first run has more problems
    (250,000 iterations take weeks here; no initial weights; the Tongue, out of sight in 73% of the frames, would
    fail validate_labels seconds into the next run): all four come in one paragraph, each with its fix, and the
    parameters they suggest together make a run prepare_run accepts and whose labels pass validation."""
    from posesweep import stages
    from posesweep.errors import InputError

    root = tmp_path / "data"
    shutil.copytree(reaching_project, root / "cohorts" / "reach")
    with pytest.raises(InputError) as refused:
        stages.prepare_run(root, {"cohort": "reach"}, "manual__paper_sizes")
    paragraph = refused.value.explain()
    assert paragraph.startswith("the study cannot run on this input: 4 problems, each with what to do")
    assert "Found: frame_set_sizes=[200, 400, 600, 800]" in paragraph
    assert "at most 55 frames (the images in the project's labeled-data folders)" in paragraph
    assert "training would take more than a day on this machine's CPU" in paragraph
    assert "no initial weights: no ImageNet-pretrained resnet_50 checkpoint on this machine" in paragraph
    assert "the labels would fail validation: landmark Tongue missing in more of the project's labeled" in paragraph
    assert "Found: Tongue missing in 72.7% of the 55 labeled frames" in paragraph
    assert f"File: {root / 'cohorts' / 'reach' / 'labeled-data' / 'reachingvideo1'}" in paragraph
    assert refused.value.parameters == {"frame_set_sizes": [14, 28, 41, 55], "max_missing_label_fraction": 0.73,
                                        "max_iterations": 9100, "snapshot_interval": 910, "allow_random_init": True}
    assert "frame_set_sizes=[14, 28, 41, 55], max_missing_label_fraction=0.73" in paragraph.split("What to do:")[-1]
    assert not refused.value.retryable
    run = stages.prepare_run(root, {"cohort": "reach", **refused.value.parameters}, "manual__proposed")
    assert run.study.frame_set_sizes == (14, 28, 41, 55)
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    assert stages.validate_label_table(run)["success"]  # Great Expectations' suite reads the same share
    tighter = {"cohort": "reach", **refused.value.parameters, "max_missing_label_fraction": 0.72}
    with pytest.raises(InputError, match="Tongue missing in 72.7%"):
        stages.prepare_run(root, tighter, "manual__tighter")
    stages.prepare_run(root, {**tighter, "invalid_labels": "exclude_frames"}, "manual__excluding")  # no failure


def test_a_video_cohort_with_too_few_frames_is_told_the_frames_per_video_or_sizes_it_can_have(tiny_cohort, tmp_path):
    """Three participants at 10 frames each cannot fill a frame set of 40: the paragraph gives both ways in the
    cohort's own numbers, and each is a run prepare_run accepts."""
    from posesweep import stages
    from posesweep.errors import StudyConfigError

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "tiny")
    conf = {"cohort": "tiny", "frames_per_video": 10, "frame_set_sizes": [20, 40], "max_iterations": 100,
            "snapshot_interval": 50, "allow_random_init": True}
    with pytest.raises(StudyConfigError) as refused:
        stages.prepare_run(root, conf, "manual__too_few")
    fix = refused.value.explain().split("What to do:")[1]
    assert "frame_set_sizes=[15, 30]" in fix and "frames_per_video=14 for these 3 videos" in fix
    assert refused.value.parameters == {"frame_set_sizes": [15, 30]}  # make study prints the new run with it
    stages.prepare_run(root, {**conf, **refused.value.parameters}, "manual__fewer_frames_per_set")
    stages.prepare_run(root, {**conf, "frames_per_video": 14}, "manual__more_frames_per_video")


def test_videos_shorter_than_frames_per_video_are_named_at_prepare_run_with_what_fits(tiny_cohort, tmp_path):
    """A clip shorter than frames_per_video failed extract_frames after every other video had been decoded; the
    fix, a run parameter, is now said at prepare_run, and the frame sets are checked against the frames that
    setting gives. A suggestion to raise frames_per_video never goes past the shortest video's frames."""
    from posesweep import stages
    from posesweep.errors import InputError, StudyConfigError

    root = shutil.copytree(tiny_cohort, tmp_path / "data")  # 3 videos of 60 frames
    conf = {"cohort": "tiny", "frames_per_video": 80, "frame_set_sizes": [40, 200], "max_iterations": 20,
            "snapshot_interval": 10, "allow_random_init": True}
    with pytest.raises(InputError) as refused:
        stages.prepare_run(root, conf, "manual__long_picks")
    paragraph = refused.value.explain()
    assert "3 of 3 videos have fewer frames than frames_per_video asks for" in paragraph
    assert "Found: P001.mp4: 60 frames; P002.mp4: 60 frames; P003.mp4: 60 frames (frames_per_video=80)" in paragraph
    assert "at most 180 frames (3 videos x frames_per_video=60)" in paragraph  # as the suggested setting gives
    assert refused.value.parameters == {"frames_per_video": 60, "frame_set_sizes": [36, 180]}
    run = stages.prepare_run(root, {**conf, **refused.value.parameters}, "manual__as_suggested")
    assert stages.extract_cohort_frames(run)["total_frames"] == 180
    # bad_video_policy=exclude leaves short videos out at extract_frames, as asked: only the frames left count
    (root / "cohorts" / "tiny" / "videos" / "P003.mp4").write_bytes(b"")  # and an empty one
    excluding = {**conf, "frames_per_video": 40, "frame_set_sizes": [20, 80], "bad_video_policy": "exclude"}
    assert stages.prepare_run(root, excluding, "manual__excluding").study.bad_video_policy == "exclude"
    with pytest.raises(StudyConfigError) as left_out:
        stages.prepare_run(root, {**excluding, "frame_set_sizes": [20, 120]}, "manual__excluding_too_many")
    assert ("at most 80 frames (2 videos x frames_per_video=40, the other 1 unreadable or too short: "
            "bad_video_policy=exclude leaves them out)") in str(left_out.value)
    with pytest.raises(InputError) as too_many:  # and the empty video named, with the setting that leaves it out
        stages.prepare_run(root, {**conf, "frames_per_video": 20, "frame_set_sizes": [100, 400]}, "manual__more")
    assert "1 of 3 videos cannot be opened" in too_many.value.explain()
    assert ("at most 40 frames (2 videos x frames_per_video=20, the other 1 unreadable or too short: "
            "bad_video_policy=exclude leaves them out)") in too_many.value.explain()  # as the setting suggested gives
    assert "raise frames_per_video (at most 60, the shortest video's frames: 120 frames in all)" in \
        too_many.value.explain()
    assert too_many.value.parameters == {"bad_video_policy": "exclude", "frame_set_sizes": [10, 40]}


def test_by_participant_without_a_participant_pattern_warns_where_videos_look_like_one_persons_trials(
        tiny_cohort, tmp_path, caplog):
    """P01_trial1 and P01_trial2 held out as two participants would put one person in training and in test: with
    split_mode by_participant and no participant_pattern, prepare_run's log names the videos and the setting."""
    import json
    import logging

    from posesweep import stages
    from posesweep.cohort import videos_sharing_a_name

    assert videos_sharing_a_name(["P01_trial1", "P01_trial2", "P02_trial1", "P03", "sub-4 run 1", "sub-4 run 2"]) == {
        "P01": ["P01_trial1", "P01_trial2"], "sub-4 run": ["sub-4 run 1", "sub-4 run 2"]}
    root = shutil.copytree(tiny_cohort, tmp_path / "data")
    videos = root / "cohorts" / "tiny" / "videos"
    for old, new in (("P001", "P01_trial1"), ("P002", "P01_trial2"), ("P003", "P02_trial1")):
        (videos / f"{old}.mp4").rename(videos / f"{new}.mp4")
    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "split_mode": "by_participant",
            "max_iterations": 20, "snapshot_interval": 10, "allow_random_init": True}
    caplog.set_level(logging.WARNING, logger="posesweep.stages")
    stages.prepare_run(root, conf, "manual__trials")
    [warning] = [r.getMessage() for r in caplog.records if "look like one person's trials" in r.getMessage()]
    assert "P01_trial1, P01_trial2. If they are" in warning and "P02_trial1" not in warning
    assert f"in {videos.parent / 'cohort.json'}, e.g. \"participant_pattern\"" in warning
    caplog.clear()
    stages.prepare_run(root, {**conf, "split_mode": "paper"}, "manual__frames")  # frames split, not people
    manifest = videos.parent / "cohort.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "participant_pattern": "^(P\\d+)_"}))
    stages.prepare_run(root, conf, "manual__people")  # the pattern says whose each video is
    assert "look like one person's trials" not in caplog.text


def test_renamed_landmarks_in_cohort_json_map_earlier_names_to_landmarks_there_are_now(tmp_path):
    """A typo in the map would carry nothing, or carry a landmark's labels under another: refused, saying which."""
    import json

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    (cohort / "videos" / "P01.mp4").write_bytes(b"")
    bodyparts = ["hip_right", "right_knee", "right_ankle"]
    (cohort / "cohort.json").write_text(json.dumps({"bodyparts": bodyparts,
                                                    "renamed_landmarks": {"right_hip": "hip_right"}}))
    assert load_cohort(cohort).renamed_landmarks == {"right_hip": "hip_right"}
    for renames, said in (({"right_hip": "hip_rigth"}, "'hip_rigth' is not one of the landmarks"),
                          ({"right_knee": "hip_right"}, "'right_knee' is still one of the landmarks"),
                          ({"r_hip": "hip_right", "rhip": "hip_right"}, "'hip_right' is the new name of several"),
                          (["right_hip", "hip_right"], "renamed_landmarks must map each earlier name")):
        (cohort / "cohort.json").write_text(json.dumps({"bodyparts": bodyparts, "renamed_landmarks": renames}))
        paragraph = _failure(cohort)
        assert said in paragraph and f"File: {cohort / 'cohort.json'}" in paragraph, paragraph
        assert "hip_right, right_knee, right_ankle" in paragraph


def test_a_misspelt_setting_in_cohort_json_is_named_with_the_setting_meant_and_notes_are_left_alone(tmp_path):
    """A misspelt participant_pattern was ignored without a word, and a person's trials split between training
    and test; a misspelt landing_square left the errors in px. Notes are a lab's own."""
    import json

    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    (cohort / "videos" / "P01_trial1.mp4").write_bytes(b"")
    (cohort / "cohort.json").write_text(json.dumps({"participant-pattern": "^(P\\d+)_", "camera_view": "front",
                                                    "landingsquare": {}}))
    paragraph = _failure(cohort)
    assert "cohort.json has a setting posesweep does not know" in paragraph
    assert ("Found: 'participant-pattern' (did you mean 'participant_pattern'?), 'landingsquare' (did you mean "
            "'landing_square'?)") in paragraph and "camera_view" not in paragraph.split("Allowed")[0]
    (cohort / "cohort.json").write_text(json.dumps({"participant_pattern": "^(P\\d+)_", "notes": "pilot, 2026",
                                                    "_comment": "cameras re-aimed on day 2"}))
    assert load_cohort(cohort).participant_of("P01_trial1") == "P01"


@pytest.mark.parametrize("written, told", [
    ('{\n  "camera_view": "front",\n  "scorer": "anna",\n}\n', "Found: Expecting property name enclosed in double "
     "quotes: line 4 column 1 (char 48)\n  What to do: remove the comma after the last entry there"),
    ("{'camera_view': 'front'}", "What to do: write names and texts in double quotes"),
    ('{"camera_view": "front", // filmed from in front\n "scorer": "anna"}', "What to do: take the comment out"),
    ('{"camera_view": "front" "scorer": "anna"}', "What to do: correct the file"),
])
def test_cohort_json_edited_by_hand_is_told_what_in_it_json_does_not_allow(tmp_path, written, told):
    """A trailing comma, single quotes, a comment: what people write in a settings file and JSON refuses. The
    parser's sentence names the line; the fix says which of them it is."""
    cohort = tmp_path / "cohorts" / "knee"
    (cohort / "videos").mkdir(parents=True)
    (cohort / "videos" / "P01.mp4").write_bytes(b"")
    (cohort / "cohort.json").write_text(written)
    paragraph = _failure(cohort)
    assert "cohort.json is not valid JSON" in paragraph and f"File: {cohort / 'cohort.json'}" in paragraph
    assert told in paragraph, paragraph


def test_a_cohort_name_that_is_not_a_folder_lists_the_cohorts_there(tmp_path):
    for name in ("knee_2025", "knee_2026"):
        (tmp_path / "cohorts" / name).mkdir(parents=True)
    paragraph = _failure(tmp_path / "cohorts" / "knee-2026")
    assert "there is no cohort folder 'knee-2026'" in paragraph and "Found: cohorts there: knee_2025, knee_2026" \
        in paragraph


def test_a_participant_pattern_names_each_videos_participant_and_a_wrong_one_is_refused(tmp_path):
    import json

    cohort_dir = tmp_path / "cohorts" / "landings"
    (cohort_dir / "videos").mkdir(parents=True)
    for name in ("P01_trial1.mp4", "P01_trial2.mp4", "P02_trial1.mp4"):
        (cohort_dir / "videos" / name).write_text("")
    manifest = cohort_dir / "cohort.json"
    assert load_cohort(cohort_dir).participant_of("P01_trial2") == "P01_trial2"  # no pattern: a video is a person
    manifest.write_text(json.dumps({"participant_pattern": "^(P\\d+)_"}))
    cohort = load_cohort(cohort_dir)
    assert [cohort.participant_of(v.stem) for v in cohort.videos] == ["P01", "P01", "P02"]
    manifest.write_text(json.dumps({"participant_pattern": "^P\\d+"}))  # no group: the match
    assert load_cohort(cohort_dir).participant_of("P02_trial1") == "P02"

    manifest.write_text(json.dumps({"participant_pattern": "^(S\\d+)_"}))
    paragraph = _failure(cohort_dir)
    assert "does not name a participant in every video's name" in paragraph and f"File: {manifest}" in paragraph
    assert "'^(S\\\\d+)_' finds nothing in P01_trial1, P01_trial2, P02_trial1" in paragraph
    example = paragraph.split('Allowed: "participant_pattern": ')[1].split(" (P07")[0]  # as cohort.json spells it
    assert json.loads(f'{{"pattern": {example}}}')["pattern"] == "^(P\\d+)_"
    manifest.write_text(json.dumps({"participant_pattern": "^(P\\d+_"}))
    assert "participant_pattern is not a regular expression" in _failure(cohort_dir)


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4060)  # what macOS writes as ._<name>


def test_a_project_and_a_video_cohort_copied_from_a_mac_are_read_without_the_hidden_companions(reaching_project,
                                                                                                tiny_cohort, tmp_path):
    """A copy from a Mac to a share or a USB drive leaves a ._<name> beside every file (and a .DS_Store where
    Finder looked): read as an image or a video, one of them failed the whole project as 'not a readable image'."""
    from posesweep import stages

    root = tmp_path / "data"
    (root / "cohorts").mkdir(parents=True)
    project = shutil.copytree(reaching_project, root / "cohorts" / "reach")
    folder = project / "labeled-data" / "reachingvideo1"
    for path in [*folder.iterdir(), project / "config.yaml", folder]:
        (path.parent / f"._{path.name}").write_bytes(APPLE_DOUBLE)
    (folder / ".DS_Store").write_bytes(b"Bud1")
    conf = {"cohort": "reach", "frame_set_sizes": [20], "train_fraction": 0.8, "max_iterations": 100,
            "snapshot_interval": 50, "max_missing_label_fraction": 0.8, "allow_random_init": True}
    run = stages.prepare_run(root, conf, "manual__mac")
    assert [folder.name for folder in run.cohort.videos] == ["reachingvideo1"]
    assert stages.extract_cohort_frames(run)["total_frames"] == 55  # its labelled images, none of the ._ ones
    assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
    assert not list((run.layout.project_dir / "labeled-data" / "reachingvideo1").glob("._*"))

    videos = shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "tiny") / "videos"
    for video in list(videos.glob("*.mp4")):
        (videos / f"._{video.name}").write_bytes(APPLE_DOUBLE)
    assert [video.name for video in load_cohort(videos.parent).videos] == ["P001.mp4", "P002.mp4", "P003.mp4"]
    assert unmatched_videos(load_cohort(project)) == unmatched_videos(load_cohort(reaching_project))


def test_a_project_saved_on_windows_is_read_whatever_its_encoding(reaching_project):
    """DeepLabCut on Windows writes config.yaml in the system's code page (its write_config opens the file without
    an encoding), so a project under C:\\Users\\Müller holds a byte UTF-8 cannot read; Notepad saves cohort.json
    with a byte-order mark. Both stopped the run before: a traceback, and 'not valid JSON' about a file that is."""
    config = reaching_project / "config.yaml"
    windows_path = "C:\\Users\\Müller\\Desktop\\Reaching-Mackenzie-2018-08-30"
    text = config.read_text().replace("WILL BE AUTOMATICALLY UPDATED BY DEMO CODE", windows_path)
    config.write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    (reaching_project / "cohort.json").write_bytes('{"camera_view": "side", "notes": "Kamera seitlich, Müller"}'
                                                   .encode("utf-8-sig"))
    cohort = load_cohort(reaching_project)
    assert cohort.bodyparts == ("Hand", "Finger1", "Tongue", "Joystick1", "Joystick2") and cohort.scorer == "Mackenzie"
    assert cohort.camera_view == "side" and cohort.camera_view_declared
    from posesweep.cohort import read_project_config
    assert read_project_config(reaching_project)["project_path"] == windows_path


def test_videos_in_subfolders_beside_the_cohorts_videos_are_named_as_not_studied(tiny_cohort, tmp_path, caplog):
    """A lab that keeps a second session under videos/session2/ lost those participants without a word: the videos
    in videos/ itself were studied, the subfolder's never looked at. prepare_run's log now names them."""
    import logging

    from posesweep import stages

    root = shutil.copytree(tiny_cohort, tmp_path / "data")
    videos = root / "cohorts" / "tiny" / "videos"
    (videos / "session2").mkdir()
    shutil.copy(videos / "P001.mp4", videos / "session2" / "P001.mp4")
    (videos / "session2" / "notes.txt").write_text("second visit")
    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "max_iterations": 20,
            "snapshot_interval": 10, "allow_random_init": True}
    caplog.set_level(logging.WARNING, logger="posesweep.stages")
    run = stages.prepare_run(root, conf, "manual__sessions")
    assert [video.name for video in run.cohort.videos] == ["P001.mp4", "P002.mp4", "P003.mp4"]
    [warning] = [r.getMessage() for r in caplog.records if "subfolders" in r.getMessage()]
    assert f"1 video(s) in subfolders of {videos} are not studied" in warning and ": session2/P001.mp4." in warning
    assert "move them into videos/ with names of their own" in warning


@pytest.mark.parametrize("frames_as", ["tiff", "not_copied"])
def test_a_project_without_frames_deeplabcut_reads_is_told_what_its_folders_hold_and_what_to_do(
        reaching_project, tmp_path, frames_as):
    """A project whose frames are TIFFs (a high-speed camera's export, a conversion script) or whose images were not
    copied with its labels (a project shared without them, its images kept out of Git) was told only "no readable
    image in the project's labeled-data folders", naming the cohort: now what the folders hold, and the fix."""
    from posesweep import stages
    import cv2

    root = tmp_path / "data"
    project = shutil.copytree(reaching_project, root / "cohorts" / "reach")
    for image in (project / "labeled-data" / "reachingvideo1").glob("*.png"):
        if frames_as == "tiff":
            cv2.imwrite(str(image.with_suffix(".tif")), cv2.imread(str(image)))
        image.unlink()
    with pytest.raises(CohortError) as refused:
        stages.prepare_run(root, {"cohort": "reach", "frame_set_sizes": [20, 40], "allow_random_init": True},
                           "manual__no_frames")
    paragraph = refused.value.explain()
    assert f"File: {project / 'labeled-data'}" in paragraph
    assert "Allowed: frames as .png, .jpg or .jpeg files beside the label file that names them" in paragraph
    if frames_as == "tiff":
        assert "hold no frame in a format DeepLabCut projects use" in paragraph
        assert "Found: 55 other file(s) (.tif), e.g. labeled-data/reachingvideo1/img" in paragraph
        assert 'for f in *.tif; do ffmpeg -v error -i "$f" "${f%.*}.png"; done' in paragraph
    else:
        assert "hold no frame images: the frames were not copied with the labels" in paragraph
        assert ("Found: only label files (2: labeled-data/reachingvideo1/CollectedData_Mackenzie.csv, "
                "labeled-data/reachingvideo1/CollectedData_Mackenzie.h5)") in paragraph
        assert "copy each labeled-data/<video>/ folder in whole" in paragraph
