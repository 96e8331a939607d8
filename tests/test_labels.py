import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conftest
from posesweep import stages
from posesweep.cohort import CohortError
from posesweep.labels import (TIDY_COLUMNS, LabelFileError, read_collected_data, read_label_table, tidy_from_collected,
                             write_label_table)
from posesweep.config import FRONTAL_BODYPARTS
from posesweep.validation import LabelValidationError, frontal_check_roles, validate_labels

PAPER_ROLES, _ = frontal_check_roles(FRONTAL_BODYPARTS, None)

SMALL = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "train_fraction": 0.8,
         "max_iterations": 20, "snapshot_interval": 10, "allow_random_init": True}


@pytest.fixture
def labeled_run(tiny_cohort, tmp_path):
    return conftest.labeled_run(tiny_cohort, tmp_path / "data", SMALL, "manual__labels")


def test_labels_are_written_in_deeplabcut_format_and_deeplabcut_reads_them(labeled_run):
    from deeplabcut.generate_training_dataset.trainingsetmanipulation import merge_annotateddatasets
    from deeplabcut.utils import auxiliaryfunctions

    layout = labeled_run.layout
    cfg = auxiliaryfunctions.read_config(str(layout.project_dir / "config.yaml"))
    (layout.run_dir / "dlc-check").mkdir()
    merged = merge_annotateddatasets(cfg, layout.run_dir / "dlc-check")
    assert merged.shape == (18, 20)  # 3 videos x 6 frames; 10 landmarks x (x, y)
    assert list(merged.columns.get_level_values("bodyparts").unique()) == cfg["bodyparts"]
    table = pd.read_csv(layout.labels_file)
    assert list(table.columns) == TIDY_COLUMNS and len(table) == 18 * 10
    assert set(table["image_width_px"]) == {160} and table[["x_px", "y_px"]].notna().all().all()


def test_the_real_reaching_project_imports_and_passes_the_generic_suite(reaching_project, tmp_path, caplog):
    labeled = reaching_project / "labeled-data"
    frame = read_collected_data(labeled / "reachingvideo1" / "CollectedData_Mackenzie.h5")
    table = tidy_from_collected(frame, labeled)
    assert len(table) == 55 * 5  # 57 images, 55 of them labeled
    assert set(table["landmark"]) == {"Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"}
    import cv2

    for image, sizes in table.groupby("image")[["image_width_px", "image_height_px"]].first().iterrows():
        height, width = cv2.imread(str(labeled / "reachingvideo1" / image)).shape[:2]
        assert (sizes["image_width_px"], sizes["image_height_px"]) == (width, height), image
    assert table["x_px"].isna().any()  # real projects have missing labels
    assert table.loc[table["image"] == "img005.png", "frame_index"].eq(5).all()  # DeepLabCut's img<index>.png

    with caplog.at_level(logging.INFO):
        summary = validate_labels(table, ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"], 0.9,
                                  tmp_path / "validation", images_root=labeled)
    assert summary["success"] and summary["labeled_frames"] == 55
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations")]
    assert chatter == []  # GX's own INFO lines ("Loading 'datasources'", ...) stay out of the task log
    assert (tmp_path / "validation" / "data_docs" / "index.html").exists()

    # at the default 10%: the tongue, out only now and then, is left unlabelled in 40 of 55 frames, as it should be;
    # the failure says so and gives the setting (excluding the frames would leave 15)
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"], 0.1,
                        tmp_path / "at-the-default", images_root=labeled)
    message = failure.value.explain()
    assert "landmark Tongue missing in 73% of the labeled frames, at most 10% allowed" in message
    assert ("If Tongue is out of sight in those frames (behind the body, outside the image), leaving it unlabelled "
            "there is right") in message
    assert "trigger the run with max_missing_label_fraction=0.73 (the largest share found, 72.7%)" in message
    assert validate_labels(table, ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"], 0.73,
                           tmp_path / "as-advised", images_root=labeled)["success"]

    renamed = frame.rename(index={"img005.png": "cam1_0042.png"}, level=2)  # another tool's name: index unknown
    (labeled / "reachingvideo1" / "img005.png").rename(labeled / "reachingvideo1" / "cam1_0042.png")
    assert tidy_from_collected(renamed, labeled).query("image == 'cam1_0042.png'")["frame_index"].eq(-1).all()


def test_a_label_outside_the_image_and_a_half_labeled_landmark_fail_with_the_frames_named(labeled_run, tmp_path):
    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    out_of_frame = table.index[(table["video"] == "P002") & (table["landmark"] == "left_knee")][0]
    table.loc[out_of_frame, "x_px"] = 400.0
    knee = table.index[(table["landmark"] == "right_knee")][:9]
    table.loc[knee, ["x_px", "y_px"]] = np.nan
    placeholder = table.index[(table["video"] == "P002") & (table["landmark"] == "left_ankle")][1]
    table.loc[placeholder, ["x_px", "y_px"]] = 0.0  # a converted COCO keypoint not labelled
    on_the_edge = table.index[(table["video"] == "P002") & (table["landmark"] == "right_ankle")][1]
    table.loc[on_the_edge, "x_px"] = 0.0  # at the image's left edge, not at its corner: a position
    lab_file = "/lab/cohort/labeled-data/P002/CollectedData_labeler.h5"
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, list(table["landmark"].unique()), 0.1, tmp_path / "v", {"P002": lab_file})
    message = failure.value.explain()
    image = table.loc[out_of_frame, "image"]
    # the lab's own file, the frame and landmark, the value found and the value allowed, and what to do
    assert f"{image}, left_knee: found x = 400 px, allowed x < 160 px (the image width)" in message
    assert f"File: {lab_file}" in message
    assert "landmark right_knee missing in 50% of the labeled frames, at most 10% allowed" in message
    assert "If right_knee is out of sight" in message and "max_missing_label_fraction=0.5 " in message
    assert ("label at the image's corner (0, 0): the placeholder a converted label file (COCO-style keypoints, "
            "visibility 0) holds for a landmark not labelled") in message
    assert (f"{table.loc[placeholder, 'image']}, left_ankle: found x = 0 px, y = 0 px, allowed the landmark's "
            f"position, or no label (empty) where it cannot be seen") in message
    assert f"{table.loc[on_the_edge, 'image']}, right_ankle" not in message
    assert "What to do: correct these labels in DeepLabCut's labeling GUI" in message
    assert "invalid_labels=exclude_frames" in message and not failure.value.retryable
    assert (tmp_path / "v" / "validation_result.json").exists()
    assert (tmp_path / "v" / "data_docs" / "index.html").exists()  # written before the failure


def test_wrong_landmark_set_fails_naming_both_names_and_where_the_bodyparts_are(labeled_run, tmp_path, caplog):
    """GX's own check for this (ExpectColumnDistinctValuesToEqualSet) failed as it should, and then GX's Data Docs
    renderer logged an ERROR with a traceback into the task log (a KeyError of its own) above posesweep's message."""
    table = pd.read_csv(labeled_run.layout.labels_file)
    table["landmark"] = table["landmark"].replace({"left_hip": "L_hip"})
    cohort_json = tmp_path / "cohort.json"
    caplog.set_level(logging.WARNING)
    with pytest.raises(LabelValidationError, match="landmark names differ from the cohort's bodyparts(.|\n)*"
                                                   "found landmarks L_hip not among the bodyparts, allowed .*left_hip"
                       ) as failed:
        validate_labels(table, sorted(set(table["landmark"]) - {"L_hip"} | {"left_hip"}), 0.1, tmp_path / "r",
                        landmarks_file=cohort_json)
    assert [r.getMessage()[:80] for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (f"What to do: the labels name L_hip where the bodyparts in {cohort_json} list left_hip: if they are one "
            f"landmark, write L_hip for left_hip there") in failed.value.explain()
    assert "found no labels for left_hip" in failed.value.explain()
    assert "missing in 100%" not in failed.value.explain()  # the same said frame by frame


def test_labels_failing_every_check_at_once_are_told_each_and_no_library_logs_an_error(labeled_run, tmp_path, caplog):
    """Great Expectations renders its Data Docs as a check fails; where its renderer cannot draw a result it logs an
    ERROR and a traceback (it did for a landmark name not among the bodyparts), which would sit in the task log
    above the lab's paragraph. Every check failing at once: each is told, and nothing logs an ERROR."""
    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    frames = table[["video", "image"]].drop_duplicates().to_numpy()
    row = lambda n, landmark: table.index[(table["video"] == frames[n][0]) & (table["image"] == frames[n][1])
                                          & (table["landmark"] == landmark)][0]
    table.loc[row(0, "left_knee"), "x_px"] = 400.0  # outside the image
    table.loc[row(1, "left_knee"), "y_px"] = -3.0  # above the image
    table.loc[row(1, "right_knee"), "x_px"] = -0.3  # the first pixel's left half: inside the image
    table.loc[row(2, "left_ankle"), ["x_px", "y_px"]] = 0.0  # the (0, 0) placeholder
    table.loc[row(3, "left_hip"), "landmark"] = "L_hip"  # a name not among the bodyparts
    knees = table[["x_px", "y_px"]].loc[[row(4, "left_knee"), row(4, "right_knee")]].to_numpy()
    table.loc[[row(4, "left_knee"), row(4, "right_knee")], ["x_px", "y_px"]] = knees[::-1]  # sides swapped
    table = pd.concat([table, table.loc[[row(5, "left_hip")]].assign(x_px=lambda t: t["x_px"] + 3)],
                      ignore_index=True)  # a frame labelled twice, as read from its label file
    table = table[table["landmark"] != "right_lateral_foot"]  # a bodypart without a label
    (layout.project_dir / "labeled-data" / frames[6][0] / frames[6][1]).unlink()  # a missing image
    bodyparts = sorted(set(table["landmark"]) - {"L_hip"} | {"right_lateral_foot"})
    caplog.set_level(logging.WARNING)
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, bodyparts, 0.1, tmp_path / "v", images_root=layout.project_dir / "labeled-data",
                        roles=frontal_check_roles(bodyparts, None)[0])
    message = failure.value.explain()
    for told in ("label outside the image (x)", "label outside the image (y below its first pixel)",
                 "label at the image's corner (0, 0)",
                 "landmark names differ from the cohort's bodyparts", "bodyparts without a label in any frame",
                 "knee sides not swapped", "a frame labelled twice, with different positions",
                 "labeled image missing, unreadable or not the size it was labeled at"):
        assert told in message, told
    assert "x = -0.3 px" not in message and "y = -3 px" in message
    assert [f"{r.name}: {r.getMessage()[:100]}" for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (tmp_path / "v" / "data_docs" / "index.html").exists()


def _frontal_defect(labeled_run, tmp_path, plant):
    """Plant one defect in one frame of a copy of a valid label table; return the error and the frame."""
    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    landmarks = sorted(table["landmark"].unique())
    images = layout.project_dir / "labeled-data"
    assert validate_labels(table, landmarks, 0.1, tmp_path / "ok", images_root=images, roles=PAPER_ROLES)["success"]
    frame = table[["video", "image"]].drop_duplicates().iloc[4]
    in_frame = (table["video"] == frame["video"]) & (table["image"] == frame["image"])
    plant(table, lambda landmark: in_frame & (table["landmark"] == landmark))
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, landmarks, 0.1, tmp_path / "bad", images_root=images, roles=PAPER_ROLES)
    return str(failure.value), f"File: {frame['video']}"


def swap(a, b):
    def plant(table, row):
        xy_a, xy_b = table.loc[row(a), ["x_px", "y_px"]].to_numpy(), table.loc[row(b), ["x_px", "y_px"]].to_numpy()
        table.loc[row(a), ["x_px", "y_px"]], table.loc[row(b), ["x_px", "y_px"]] = xy_b, xy_a
    return plant


def move_onto(landmark, target, dy_px=0.0):
    def plant(table, row):
        table.loc[row(landmark), ["x_px", "y_px"]] = table.loc[row(target), ["x_px", "y_px"]].to_numpy() + [0, dy_px]
    return plant


@pytest.mark.parametrize("plant, expectation", [
    (swap("left_knee", "right_knee"), "frontal-plane check failed: knee sides not swapped"),
    (swap("right_knee", "right_ankle"), "frontal-plane check failed: right knee above ankle"),
    (swap("left_hip", "left_knee"), "frontal-plane check failed: left hip above knee"),
    (move_onto("right_lateral_foot", "right_medial_foot"), "frontal-plane check failed: right foot markers distinct"),
    (move_onto("left_knee", "left_hip", dy_px=2.0), "left thigh length unlike"),  # a mis-click near the hip
])
def test_frontal_plane_defects_name_the_expectation_and_the_frame(labeled_run, tmp_path, plant, expectation):
    message, frame = _frontal_defect(labeled_run, tmp_path, plant)
    assert expectation in message and frame in message
    assert "the whole video" not in message and "filmed from the side" not in message  # one frame's slip


def test_thighs_foreshortened_at_a_landings_peak_knee_flexion_pass_and_a_knee_clicked_at_the_ankle_fails(
        labeled_run, tmp_path):
    """At a drop landing's peak knee flexion the thighs lean 50-70 degrees towards a frontal camera and appear at
    0.35-0.65 of their length with the leg extended: the frames the study exists for. The check against a band
    around the participant's median length (0.65 to 1.35x) failed them; flexion only shortens a segment, so what
    fails now is longer than it can appear (a knee clicked at the ankle) or collapsed onto one spot. A free leg held
    flexed, its ankle level with its knee, passes "knee above ankle" too."""
    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    landmarks = sorted(table["landmark"].unique())
    images = layout.project_dir / "labeled-data"
    frames = table[["video", "image"]].drop_duplicates()
    frame = frames.iloc[4]
    in_frame = (table["video"] == frame["video"]) & (table["image"] == frame["image"])
    row = lambda landmark: in_frame & (table["landmark"] == landmark)  # noqa: E731
    flexed = table.copy()
    for side in ("right", "left"):  # the hips drop towards the knees: each thigh appears at 0.45 of its length
        hip_y, knee_y = (float(table.loc[row(f"{side}_{joint}"), "y_px"].iloc[0]) for joint in ("hip", "knee"))
        flexed.loc[row(f"{side}_hip"), "y_px"] = knee_y - 0.45 * (knee_y - hip_y)
    # a single-leg landing's free leg held with the knee flexed 90 degrees: its ankle level with its knee, a few
    # pixels above it by the labeler's hand (a strict "knee above ankle" failed such frames)
    knee_y = float(table.loc[row("left_knee"), "y_px"].iloc[0])
    flexed.loc[row("left_ankle"), "y_px"] = knee_y - 1.5
    flexed.loc[row("left_medial_foot"), "y_px"] = flexed.loc[row("left_lateral_foot"), "y_px"] = knee_y + 2
    summary = validate_labels(flexed, landmarks, 0.1, tmp_path / "flexed", images_root=images, roles=PAPER_ROLES)
    assert summary["success"], summary["failures"]

    clicked = table.copy()
    clicked.loc[row("left_knee"), ["x_px", "y_px"]] = \
        table.loc[row("left_ankle"), ["x_px", "y_px"]].to_numpy() - [0.0, 3.0]  # just above the ankle
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(clicked, landmarks, 0.1, tmp_path / "clicked", images_root=images, roles=PAPER_ROLES)
    message = str(failure.value)
    assert "left thigh length unlike the participant's other frames (flexion shortens it" in message
    assert f"{frame['image']}: found 1." in message and "allowed 0.2 to 1.5 x that" in message

    # a free ankle hidden behind its knee bent 90 degrees, clicked where it would be: told to leave it unlabelled
    hidden = table.copy()
    hidden.loc[row("left_ankle"), ["x_px", "y_px"]] = table.loc[row("left_knee"), ["x_px", "y_px"]].to_numpy() + 0.5
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(hidden, landmarks, 0.1, tmp_path / "hidden", images_root=images, roles=PAPER_ROLES)
    assert "left shank length unlike the participant's other frames" in str(failure.value)
    assert "as a single-leg landing's free ankle behind its knee bent 90 degrees: leave such a landmark " \
           "unlabelled, as out of sight" in str(failure.value)
    hidden.loc[row("left_ankle"), ["x_px", "y_px"]] = np.nan
    assert validate_labels(hidden, landmarks, 0.1, tmp_path / "unlabelled", images_root=images,
                           roles=PAPER_ROLES)["success"]


LAB_NAMES = {"right_hip": "RASIS", "left_hip": "LASIS", "right_knee": "RKnee", "left_knee": "LKnee",
             "right_ankle": "RAnkle", "left_ankle": "LAnkle", "right_medial_foot": "RMT1",
             "right_lateral_foot": "RMT5", "left_medial_foot": "LMT1", "left_lateral_foot": "LMT5"}


def test_frontal_checks_run_only_where_the_cohort_says_its_camera_is_frontal():
    recognised = list(LAB_NAMES.values())
    assert frontal_check_roles(recognised, None)[0] is None  # RKnee could be filmed from the side
    declared = {role: LAB_NAMES[role] for role in ("right_hip", "right_knee", "right_ankle")}
    assert frontal_check_roles(recognised, declared)[0] == declared
    assert frontal_check_roles([*FRONTAL_BODYPARTS, "pelvis"], None)[0] == PAPER_ROLES  # extra landmarks too


def _lab_named_table(labeled_run, plant=None):
    """The labels under a lab's own names (as if its DeepLabCut project used them), with a defect planted in one
    frame by ``plant(table, row_of_landmark)``; the frame's video."""
    table = pd.read_csv(labeled_run.layout.labels_file, dtype={"video": str})
    frame = table[["video", "image"]].drop_duplicates().iloc[4]
    in_frame = (table["video"] == frame["video"]) & (table["image"] == frame["image"])
    if plant:
        plant(table, lambda landmark: in_frame & (table["landmark"] == landmark))
    table["landmark"] = table["landmark"].map(LAB_NAMES)
    return table, frame


@pytest.mark.parametrize("plant, expected", [
    (swap("left_knee", "right_knee"), "found RKnee to the right of LKnee, allowed RKnee to the left of LKnee"),
    (swap("right_knee", "right_ankle"), "found RKnee below RAnkle by more than 0.25 shank lengths, allowed RKnee above "
                                        "RAnkle, or below it by at most 0.25 shank lengths (a leg held flexed)"),
])
def test_frontal_checks_name_the_labs_own_landmarks_declared_in_cohort_json(labeled_run, tmp_path, plant, expected):
    declared = {role: LAB_NAMES[role] for role in PAPER_ROLES}
    images = labeled_run.layout.project_dir / "labeled-data"
    table, _ = _lab_named_table(labeled_run)
    passed = validate_labels(table, sorted(LAB_NAMES.values()), 0.1, tmp_path / "ok", images_root=images,
                             roles=declared)
    assert passed["success"] and "frontal_anatomy" in passed["suites"]
    table, frame = _lab_named_table(labeled_run, plant)
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, sorted(LAB_NAMES.values()), 0.1, tmp_path / "bad", images_root=images,
                        roles=declared)
    assert f"{frame['image']}: {expected}" in str(failure.value)


def test_a_frame_missing_one_landmark_is_still_checked_for_the_others_and_one_side_is_checked_alone(
        labeled_run, tmp_path):
    images = labeled_run.layout.project_dir / "labeled-data"
    table, frame = _lab_named_table(labeled_run, swap("right_knee", "right_ankle"))
    in_frame = (table["video"] == frame["video"]) & (table["image"] == frame["image"])
    table.loc[in_frame & (table["landmark"] == "LMT1"), ["x_px", "y_px"]] = np.nan  # a hidden foot marker
    right_side = {role: LAB_NAMES[role] for role in ("right_hip", "right_knee", "right_ankle")}
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, sorted(LAB_NAMES.values()), 0.1, tmp_path / "one", images_root=images,
                        roles=right_side)
    message = str(failure.value)
    assert f"{frame['image']}: found RKnee below RAnkle by more than 0.25 shank lengths" in message
    assert "sides not swapped" not in message and "left " not in message.split("What to do")[0]


def test_labels_with_overlapping_hips_failing_the_side_check_are_told_the_camera_may_be_at_the_side(labeled_run,
                                                                                                    tmp_path):
    table = pd.read_csv(labeled_run.layout.labels_file, dtype={"video": str})
    frames = table[["video", "image"]].drop_duplicates().reset_index(drop=True)
    for i, (video, image) in enumerate(frames.itertuples(index=False)):  # left and right overlap, either way round
        in_frame = (table["video"] == video) & (table["image"] == image)
        for joint in ("hip", "knee", "ankle"):
            right = table.loc[in_frame & (table["landmark"] == f"right_{joint}"), "x_px"].to_numpy()
            table.loc[in_frame & (table["landmark"] == f"left_{joint}"), "x_px"] = right + (2 if i % 2 else -2)
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, sorted(table["landmark"].unique()), 0.1, tmp_path / "side",
                        images_root=labeled_run.layout.project_dir / "labeled-data", roles=PAPER_ROLES)
    message = str(failure.value)
    assert "thigh lengths apart across the image (facing the camera about 0.5): this looks filmed from the side" \
        in message and '"camera_view": "side" in cohort.json' in message
    assert "the whole video was" not in message  # not reversed as a whole: about half the frames each way


def _filmed_from_the_side(labels_file, video):
    """The labels with ``video``'s left and right overlapping across the image, as a side camera sees them."""
    table = pd.read_csv(labels_file, dtype={"video": str})
    frames = table[table["video"] == video][["image"]].drop_duplicates()
    for i, image in enumerate(frames["image"]):
        in_frame = (table["video"] == video) & (table["image"] == image)
        for joint in ("hip", "knee", "ankle"):
            right = table.loc[in_frame & (table["landmark"] == f"right_{joint}"), "x_px"].to_numpy()
            table.loc[in_frame & (table["landmark"] == f"left_{joint}"), "x_px"] = right + (2 if i % 2 else -2)
    return table


def test_a_second_camera_filming_from_the_side_is_named_and_its_videos_skip_the_frontal_checks(tiny_cohort,
                                                                                             tmp_path, caplog):
    """One participant's video is a side camera's: the frontal checks name it as looking filmed from the side and
    say how to declare it; with cohort.json's side_view_videos, its frames pass (the others still checked)."""
    import json
    import shutil

    cohort_root = shutil.copytree(tiny_cohort, tmp_path / "lab")
    manifest = cohort_root / "cohorts" / "tiny" / "cohort.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "side_view_videos": "^P002$",
                                    "back_view_videos": "^P003$"}))  # and a third camera behind, for P003
    run = conftest.labeled_run(cohort_root, tmp_path / "data", SMALL, "manual__two_cameras")
    table = _filmed_from_the_side(run.layout.labels_file, "P002")
    behind = table["video"] == "P003"
    table.loc[behind, "x_px"] = table.loc[behind, "image_width_px"] - 1 - table.loc[behind, "x_px"]
    images = run.layout.project_dir / "labeled-data"
    landmarks = sorted(table["landmark"].unique())
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, landmarks, 0.1, tmp_path / "one_camera", images_root=images, roles=PAPER_ROLES)
    message = str(failure.value)
    assert "1 video(s) look filmed from the side (hips labelled under 0.25 thigh lengths apart): P002." in message
    assert '"side_view_videos": "_side$"' in message and "this looks filmed from the side, where" not in message

    write_label_table(table, run.layout.labels_file)  # the lab's labels, the side camera's as it sees them
    with caplog.at_level(logging.INFO, logger="posesweep"):
        assert stages.validate_label_table(run)["success"]
    assert "frontal-plane label checks leave out 1 side-camera video(s) (cohort.json side_view_videos): P002" \
        in caplog.text
    assert ("frontal-plane label checks read 1 video(s) filmed from behind mirrored (cohort.json back_view_videos): "
            "P003") in caplog.text
    broken = table.copy()  # the front camera's videos are still checked
    knee = (broken["video"] == "P001") & (broken["landmark"] == "right_knee")
    hip_y = broken.loc[(broken["video"] == "P001") & (broken["landmark"] == "right_hip"), "y_px"].to_numpy()
    broken.loc[knee, "y_px"] = 2 * hip_y - broken.loc[knee, "y_px"].to_numpy()  # a whole thigh above the hip
    with pytest.raises(LabelValidationError, match="found right_hip below right_knee by more than 0.25 thigh"):
        validate_labels(broken, landmarks, 0.1, tmp_path / "front_checked", images_root=images, roles=PAPER_ROLES,
                        side_view_videos=["P002"], back_view_videos=["P003"])


def _labelled_by_image_side(labels_file, video):
    table = pd.read_csv(labels_file, dtype={"video": str})
    by_image_side = {name: name.replace("right_", "left_") if name.startswith("right_") else
                     name.replace("left_", "right_") for name in table["landmark"].unique()}
    in_video = table["video"] == video
    table.loc[in_video, "landmark"] = table.loc[in_video, "landmark"].map(by_image_side)
    return table, int(table.loc[in_video, "image"].nunique())


def test_a_cohort_filmed_from_behind_passes_the_side_checks_with_camera_view_back_and_is_told_so_without(
        labeled_run, tmp_path):
    table = pd.read_csv(labeled_run.layout.labels_file, dtype={"video": str})
    table["x_px"] = table["image_width_px"] - 1 - table["x_px"]  # the same people, seen from behind
    landmarks = sorted(table["landmark"].unique())
    images = labeled_run.layout.project_dir / "labeled-data"
    assert validate_labels(table, landmarks, 0.1, tmp_path / "back", images_root=images, roles=PAPER_ROLES,
                           camera_view="back")["success"]
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, landmarks, 0.1, tmp_path / "front", images_root=images, roles=PAPER_ROLES)
    assert 'if the camera was behind the participant, set "camera_view": "back" in cohort.json' in str(failure.value)


def test_a_second_camera_behind_the_participant_is_told_for_its_videos_and_back_view_videos_reads_them_mirrored(
        labeled_run, tmp_path):
    """A lab films each landing from the front and from behind: the videos from behind, read as seen from the
    front, lie right for left. The advice names back_view_videos (camera_view back would turn the front videos
    round); with it they pass, and a front video named by it is told so."""
    table = pd.read_csv(labeled_run.layout.labels_file, dtype={"video": str})
    front, behind = sorted(table["video"].unique())[:2]
    seen = table["video"] == behind
    table.loc[seen, "x_px"] = table.loc[seen, "image_width_px"] - 1 - table.loc[seen, "x_px"]  # from behind
    landmarks = sorted(table["landmark"].unique())
    check = dict(images_root=labeled_run.layout.project_dir / "labeled-data", roles=PAPER_ROLES,
                 label_files={video: f"/lab/{video}/CollectedData_x.h5" for video in (front, behind)})
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, landmarks, 0.1, tmp_path / "one_camera", **check)
    message = str(failure.value)
    assert f"/lab/{behind}/CollectedData_x.h5: right and left lie the other way round" in message
    assert '"back_view_videos": "_back$"' in message and '"camera_view": "back"' not in message
    assert f"/lab/{front}/CollectedData_x.h5: right and left" not in message

    summary = validate_labels(table, landmarks, 0.1, tmp_path / "two_cameras", back_view_videos=[behind], **check)
    assert summary["success"] and summary["back_view_videos"] == [behind]

    with pytest.raises(LabelValidationError) as failure:  # the front camera's video named as from behind
        validate_labels(table, landmarks, 0.1, tmp_path / "misnamed", back_view_videos=[front, behind], **check)
    message = str(failure.value)
    assert (f"/lab/{front}/CollectedData_x.h5: right and left lie the other way round at hip, knee and ankle in "
            in message and 'change "back_view_videos" in cohort.json so that it does not name this video' in message)
    assert "on its right in the videos filmed from behind: cohort.json back_view_videos" in message
    assert "found right_knee to the left of left_knee, allowed right_knee to the right of left_knee" in message


def test_a_video_labelled_by_image_side_throughout_is_told_so_not_sent_to_relabel_each_frame(labeled_run, tmp_path,
                                                                                              caplog):
    video = sorted(pd.read_csv(labeled_run.layout.labels_file, dtype={"video": str})["video"].unique())[1]
    table, frames = _labelled_by_image_side(labeled_run.layout.labels_file, video)
    landmarks = sorted(table["landmark"].unique())
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, landmarks, 0.1, tmp_path / "bad",
                        label_files={video: f"/lab/{video}/CollectedData_x.h5"},
                        images_root=labeled_run.layout.project_dir / "labeled-data", roles=PAPER_ROLES)
    message = str(failure.value)
    assert "knee sides not swapped (the participant's right is on the image's left" in message
    assert "found right_knee to the right of left_knee, allowed right_knee to the left of left_knee" in message
    assert (f"/lab/{video}/CollectedData_x.h5: right and left lie the other way round at hip, knee and ankle in "
            f"{frames} of its {frames} frames: the whole video was labelled by image side") in message
    assert "swap the right_ and left_ names" in message

    # with invalid_labels=exclude_frames the run goes on without that video, and the log says why
    run = stages.prepare_run(labeled_run.layout.data_root, {**SMALL, "invalid_labels": "exclude_frames"},
                             "manual__image_side")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    table, _ = _labelled_by_image_side(run.layout.labels_file, video)
    table.to_csv(run.layout.labels_file, index=False)  # the lab's labels, as if labelled that way
    assert stages.validate_label_table(run)["excluded_frames"] == frames
    assert (f"{video}: its frames are excluded: right and left lie the other way round at hip, knee and ankle in "
            f"{frames} of its {frames} frames: the whole video was labelled by image side") in caplog.text


REACH_CONF = {"cohort": "reach", "frame_set_sizes": [20], "train_fraction": 0.8, "max_iterations": 100,
              "snapshot_interval": 50, "max_missing_label_fraction": 0.8,  # the Reaching tongue: out of sight often
              "allow_random_init": True}  # no pretrained weights on this machine


def test_a_video_labelled_before_a_landmark_was_added_has_it_unlabelled_in_each_of_its_frames(reaching_project,
                                                                                                tmp_path, caplog):
    """A lab added Joystick2 to its project after labelling one video: that video's label file has no Joystick2
    column. DeepLabCut reads the landmark as unlabelled there (it reindexes each file by config.yaml's bodyparts)
    and trains; posesweep's label table had no row for it in that video's frames, so the networks trained and the
    scoring of their snapshots failed on the first such frame (a KeyError, retried as if the machine were at fault).
    Each of those frames has it unlabelled, as scoring reads every (video, image, landmark), and the log names the
    file."""
    import shutil

    earlier = Path(shutil.copytree(reaching_project / "labeled-data" / "reachingvideo1",
                                   reaching_project / "labeled-data" / "reachingvideo0"))
    labels = read_collected_data(earlier / "CollectedData_Mackenzie.h5").drop(columns="Joystick2", level="bodyparts")
    labels.index = pd.MultiIndex.from_tuples([("labeled-data", earlier.name, image) for *_, image in labels.index])
    labels.to_hdf(earlier / "CollectedData_Mackenzie.h5", key="df_with_missing", mode="w")
    labels.to_csv(earlier / "CollectedData_Mackenzie.csv")
    with caplog.at_level(logging.WARNING, logger="posesweep.stages"):
        run, validated = _reaching_labels_through_validation(
            reaching_project, tmp_path, ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"], "manual__added")
    assert validated["success"] and validated["labeled_frames"] == 110
    table = read_label_table(run.layout.validated_labels_file)
    landmarks = ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"]
    scored = {(row.video, row.image, row.landmark) for row in table.itertuples()}  # what scoring looks up
    assert all((video, image, landmark) in scored for video, image in table[["video", "image"]].drop_duplicates()
               .itertuples(index=False) for landmark in landmarks)
    added = table[(table["video"] == "reachingvideo0") & (table["landmark"] == "Joystick2")]
    assert len(added) == 55 and added[["x_px", "y_px"]].isna().all().all()
    hand = table[(table["video"] == "reachingvideo0") & (table["landmark"] == "Hand")]
    sizes = ["image", "frame_index", "image_width_px", "image_height_px"]
    pd.testing.assert_frame_equal(added[sizes].reset_index(drop=True), hand[sizes].reset_index(drop=True))
    assert "reachingvideo0/CollectedData_Mackenzie.h5 (Joystick2, 55 frames)" in caplog.text
    assert "label it there in DeepLabCut's GUI" in caplog.text


def test_a_label_file_holding_no_labelled_frame_leaves_its_video_out_naming_the_file(reaching_project, tmp_path,
                                                                                        caplog):
    """A video whose label file holds its header alone (saved before anyone labelled it): reading the labels
    crashed (an IndexError, naming nothing) and a frame-less file beside the others made pandas warn into the log.
    The video is left out, and the warning names the lab's file."""
    import shutil
    import warnings

    unlabelled = Path(shutil.copytree(reaching_project / "labeled-data" / "reachingvideo1",
                                      reaching_project / "labeled-data" / "reachingvideo2"))
    header = read_collected_data(unlabelled / "CollectedData_Mackenzie.h5").iloc[:0]
    header.to_hdf(unlabelled / "CollectedData_Mackenzie.h5", key="df_with_missing", mode="w")
    header.to_csv(unlabelled / "CollectedData_Mackenzie.csv")
    with caplog.at_level(logging.WARNING, logger="posesweep"), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        run, validated = _reaching_labels_through_validation(
            reaching_project, tmp_path, ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"], "manual__header")
    assert validated["success"] and validated["labeled_frames"] == 55
    assert set(read_label_table(run.layout.validated_labels_file)["video"]) == {"reachingvideo1"}
    lab_file = tmp_path / "data" / "cohorts" / "reach" / "labeled-data" / unlabelled.name / "CollectedData_Mackenzie.h5"
    assert f"{lab_file} holds no labelled frame: video reachingvideo2 is not in the study" in caplog.text


def test_landmarks_a_lab_numbered_stay_names_through_the_label_table(reaching_project, tmp_path):
    """A project whose bodyparts are numbered (``- 1`` ... ``- 5`` in config.yaml, which YAML reads as numbers): the
    label table, read back from its .csv, had them as numbers, and validation failed with "found landmarks 1, 2, 3,
    4, 5 not among the bodyparts, allowed 1, 2, 3, 4, 5". Landmark names are read as text, as video names are."""
    numbered = {"Hand": "1", "Finger1": "2", "Tongue": "3", "Joystick1": "4", "Joystick2": "5"}
    file = reaching_project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    labels = read_collected_data(file).rename(columns=numbered, level="bodyparts")
    labels.to_hdf(file, key="df_with_missing", mode="w")
    labels.to_csv(file.with_suffix(".csv"))
    run, validated = _reaching_labels_through_validation(reaching_project, tmp_path, [1, 2, 3, 4, 5], "manual__1to5")
    assert validated["success"] and validated["labeled_frames"] == 55
    assert sorted(read_label_table(run.layout.validated_labels_file)["landmark"].unique()) == ["1", "2", "3", "4", "5"]


def _reaching_cohort(reaching_project: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The Reaching project as a cohort of a fresh data root: (the data root, the cohort's folder)."""
    import shutil

    root = tmp_path / "data"
    (root / "cohorts").mkdir(parents=True)
    return root, Path(shutil.copytree(reaching_project, root / "cohorts" / "reach"))


def test_a_project_folder_renamed_after_labeling_and_named_with_a_dot_is_read_where_its_images_are(
        reaching_project, tmp_path, caplog):
    """A lab renamed labeled-data/reachingvideo1 to session.1: its label file still names the old folder, and the
    name has a dot (not a file suffix). The labels are read as the renamed folder's, and every image is found."""
    root, project = _reaching_cohort(reaching_project, tmp_path)
    (project / "labeled-data" / "reachingvideo1").rename(project / "labeled-data" / "session.1")
    run = stages.prepare_run(root, REACH_CONF, "manual__renamed")
    assert stages.extract_cohort_frames(run)["frames_per_video"] == {"session.1": 55}
    assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
    assert "names its frames as those of video 'reachingvideo1' but sits in folder 'session.1'" in caplog.text
    copied = read_collected_data(run.layout.project_dir / "labeled-data" / "session.1" / "CollectedData_Mackenzie.h5")
    assert set(copied.index.get_level_values(1)) == {"session.1"}  # where DeepLabCut will look for the images
    assert stages.validate_label_table(run)["success"]


def test_labels_corrected_in_the_cohort_are_read_when_the_run_reads_labels_again(reaching_project, tmp_path):
    """label_frames copies labels kept with the cohort into the run's project, where DeepLabCut reads them. A lab
    told of a mistake in its file corrects it there and clears the run's label_frames: the correction is read, not
    the run's copy of the old file (which the error would then have named). Labels the lab saved in the project
    itself, over the copy (DeepLabCut's GUI), are the lab's and are read as they are."""

    from posesweep.labels import write_collected_data
    from posesweep.layout import read_json

    root, project = _reaching_cohort(reaching_project, tmp_path)
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    run = stages.prepare_run(root, REACH_CONF, "manual__corrected")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    copy = run.layout.project_dir / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    assert read_json(run.layout.label_sources_file) == {"reachingvideo1": str(lab_file)}

    def hand_x() -> float:
        table = read_label_table(run.layout.labels_file)
        return float(table.query("image == 'img005.png' and landmark == 'Hand'")["x_px"].iloc[0])

    def save_with_hand_x(path, x: float) -> None:  # as DeepLabCut saves a file: both copies
        frame = read_collected_data(path)
        frame.loc[frame.index.get_level_values(-1) == "img005.png", (frame.columns[0][0], "Hand", "x")] = x
        write_collected_data(frame, path.parent.parent, path.parent.name, "Mackenzie")

    labelled = hand_x()
    save_with_hand_x(lab_file, labelled + 7)  # corrected in the cohort
    stages.label_frames(run)  # the task cleared
    assert hand_x() == pytest.approx(labelled + 7)
    assert read_json(run.layout.label_sources_file) == {"reachingvideo1": str(lab_file)}
    copied = read_collected_data(copy)  # what DeepLabCut will read: the correction too
    assert copied.loc[copied.index.get_level_values(-1) == "img005.png", (copied.columns[0][0], "Hand", "x")].item() \
        == pytest.approx(labelled + 7)

    save_with_hand_x(copy, labelled - 5)  # the lab labels in the run's project instead: its file from now on
    stages.label_frames(run)
    assert hand_x() == pytest.approx(labelled - 5)
    assert read_json(run.layout.label_sources_file) == {"reachingvideo1": str(copy)}


def test_a_label_file_renamed_for_the_projects_scorer_is_read_as_its_name_says(reaching_project, tmp_path, caplog):
    """Another labeler's file renamed CollectedData_<the project's scorer> (DeepLabCut's advice for labels made
    elsewhere) keeps the other name in its header: DeepLabCut's create_training_dataset then fails with a KeyError
    (or, beside other files, leaves it out with a print). The run's copy is the scorer's, and DeepLabCut reads it."""
    import shutil

    from deeplabcut.generate_training_dataset.trainingsetmanipulation import merge_annotateddatasets
    from deeplabcut.utils import auxiliaryfunctions

    from posesweep.labels import write_collected_data

    root, project = _reaching_cohort(reaching_project, tmp_path)
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    frame = read_collected_data(lab_file)
    frame.columns = frame.columns.set_levels(["Bob"], level="scorer")
    write_collected_data(frame, lab_file.parent.parent, "reachingvideo1", "Mackenzie")
    # a second labeler's video, not renamed: left out, as DeepLabCut leaves it, and the log says how to study it
    second = shutil.copytree(lab_file.parent, project / "labeled-data" / "reachingvideo2")
    for path in second.glob("CollectedData_*"):
        path.unlink()
    write_collected_data(frame, second.parent, "reachingvideo2", "Bob")
    run = stages.prepare_run(root, REACH_CONF, "manual__renamed_file")
    with caplog.at_level(logging.WARNING):
        stages.extract_cohort_frames(run)
        assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
    assert ("labeled-data folders left out (no CollectedData_Mackenzie file): reachingvideo2 (holds "
            "CollectedData_Bob.h5: another labeler's; to study them, rename the file to CollectedData_Mackenzie.h5, "
            "and they are read as Mackenzie's)") in caplog.text
    assert f"{lab_file} is named for scorer Mackenzie but its header names Bob (a renamed file?)" in caplog.text
    copy = read_collected_data(run.layout.project_dir / "labeled-data" / "reachingvideo1" / lab_file.name)
    assert list(copy.columns.get_level_values("scorer").unique()) == ["Mackenzie"]
    assert np.array_equal(copy.to_numpy(), frame.to_numpy(), equal_nan=True)  # the labels themselves unchanged
    cfg = auxiliaryfunctions.read_config(str(run.layout.project_dir / "config.yaml"))
    (run.layout.run_dir / "dlc-check").mkdir()
    merged = merge_annotateddatasets(cfg, run.layout.run_dir / "dlc-check")  # DeepLabCut's own reader
    assert merged is not None and len(merged) == 55 and merged["Mackenzie"].notna().any().any()  # 55 labelled


def test_a_header_of_two_labelers_is_read_as_the_scorers_or_refused_never_merged(reaching_project, tmp_path, caplog):
    """DeepLabCut reads one labeler per file: a header naming two (a merged file) was left out of its training
    dataset with a print, or, as the only file, failed it. The file's scorer among them: the run's copy holds its
    columns only, which DeepLabCut reads. None of them the scorer: refused, naming the labelers."""

    from deeplabcut.generate_training_dataset.trainingsetmanipulation import merge_annotateddatasets
    from deeplabcut.utils import auxiliaryfunctions

    from posesweep.labels import LabelFileError, named_for_scorer, write_collected_data

    root, project = _reaching_cohort(reaching_project, tmp_path)
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    frame = read_collected_data(lab_file)
    second = frame.copy() + 10.0  # another labeler's clicks on the same frames, sorted before Mackenzie
    second.columns = second.columns.set_levels(["Bob"], level="scorer")
    write_collected_data(pd.concat([second, frame], axis=1), lab_file.parent.parent, "reachingvideo1", "Mackenzie")
    run = stages.prepare_run(root, REACH_CONF, "manual__two_labelers")
    with caplog.at_level(logging.WARNING):
        stages.extract_cohort_frames(run)
        assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
    assert f"{lab_file} holds the labels of 2 labelers (Bob, Mackenzie): read as Mackenzie's" in caplog.text
    copy = read_collected_data(run.layout.project_dir / "labeled-data" / "reachingvideo1" / lab_file.name)
    assert copy.columns.equals(frame.columns)
    assert np.array_equal(copy.to_numpy(), frame.to_numpy(), equal_nan=True)  # Mackenzie's clicks, not Bob's
    cfg = auxiliaryfunctions.read_config(str(run.layout.project_dir / "config.yaml"))
    (run.layout.run_dir / "dlc-check").mkdir()
    merged = merge_annotateddatasets(cfg, run.layout.run_dir / "dlc-check")  # DeepLabCut's own reader
    assert merged is not None and len(merged) == 55

    third = frame.copy()
    third.columns = third.columns.set_levels(["Carol"], level="scorer")
    with pytest.raises(LabelFileError) as refused:
        named_for_scorer(pd.concat([second, third], axis=1), "Mackenzie", lab_file)
    paragraph = refused.value.explain()
    assert "holds the labels of 2 labelers, none of them Mackenzie" in paragraph and f"File: {lab_file}" in paragraph
    assert "Found: labelers Bob, Carol" in paragraph and "CollectedData_Mackenzie.h5" in paragraph


def _with_individuals(frame: pd.DataFrame, individual_of) -> pd.DataFrame:
    """A single-animal CollectedData table as a multi-animal project saves it: a header row of individuals."""
    with_rows = frame.copy()
    with_rows.columns = pd.MultiIndex.from_tuples(
        [(scorer, individual_of(bodypart), bodypart, coord) for scorer, bodypart, coord in frame.columns],
        names=["scorer", "individuals", "bodyparts", "coords"])
    return with_rows


def test_a_frames_row_twice_in_a_label_file_is_read_once_where_the_same_and_refused_naming_the_frame_where_not(
        reaching_project, tmp_path, caplog):
    """Label files merged by hand can hold an image's row twice. posesweep said "the same frame and landmark
    labeled twice" once per landmark and per row, and sent the lab to the labeling GUI; DeepLabCut would train on
    the frame twice. The same labels twice are read once; other labels twice are refused once per frame."""
    from posesweep.labels import write_collected_data

    root, project = _reaching_cohort(reaching_project, tmp_path)
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    labels = read_collected_data(lab_file)
    image = labels.index[3][2]
    write_collected_data(pd.concat([labels, labels.iloc[[3]]]), lab_file.parent.parent, "reachingvideo1",
                         "Mackenzie")
    caplog.set_level(logging.WARNING)
    run = stages.prepare_run(root, REACH_CONF, "manual__same_twice")
    stages.extract_cohort_frames(run)
    assert stages.label_frames(run)["labeled_frames"] == 55
    assert f"{lab_file} holds the row of 1 image(s) twice, with the same labels ({image}): read once" in caplog.text
    copied = read_collected_data(run.layout.project_dir / "labeled-data" / "reachingvideo1" /
                                 "CollectedData_Mackenzie.h5")
    assert len(copied) == 55 and not copied.index.duplicated().any()  # what DeepLabCut trains from
    assert stages.validate_label_table(run)["success"]

    other = labels.iloc[[3]].copy()
    other[(labels.columns[0][0], "Hand", "x")] += 4.0  # the same image labelled again, elsewhere
    write_collected_data(pd.concat([labels, other]), lab_file.parent.parent, "reachingvideo1", "Mackenzie")
    run = stages.prepare_run(root, REACH_CONF, "manual__other_twice")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    with pytest.raises(LabelValidationError) as failed:
        stages.validate_label_table(run)
    paragraph = failed.value.explain()
    assert "a frame labelled twice, with different positions" in paragraph
    assert "deeplabcut.dropduplicatesinannotatinfiles" in paragraph
    assert paragraph.count(f"{image}: found two rows of labels, allowed one row") == 1
    excluded = stages.prepare_run(root, {**REACH_CONF, "invalid_labels": "exclude_frames"}, "manual__excluded")
    stages.extract_cohort_frames(excluded)
    stages.label_frames(excluded)
    assert stages.validate_label_table(excluded) == {"labeled_frames": 54, "success": True, "excluded_frames": 1}


def test_a_multi_animal_projects_label_file_of_one_individual_is_read_as_its_labels_and_of_two_refused(
        reaching_project, tmp_path, caplog):
    """A multi-animal DeepLabCut project saves a fourth header row, the individuals (and `single` for landmarks of
    no one individual). Its .h5 was read with the extra row and its .csv not at all, and the run failed saying
    the .csv had been edited after the .h5, with the .h5 to be rewritten from it. One individual's labels are one
    participant's; two individuals with the same landmarks are refused, naming them."""
    from posesweep.labels import LabelFileError

    root, project = _reaching_cohort(reaching_project, tmp_path)
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    frame = read_collected_data(lab_file)
    multi = _with_individuals(frame, lambda bodypart: "single" if bodypart.startswith("Joystick") else "mouse1")
    multi.to_hdf(lab_file, key="df_with_missing", mode="w")
    multi.to_csv(lab_file.with_suffix(".csv"))  # as DeepLabCut does, a moment after the .h5
    os.utime(lab_file, (lab_file.stat().st_atime, lab_file.stat().st_mtime - 1))
    run = stages.prepare_run(root, REACH_CONF, "manual__one_individual")
    with caplog.at_level(logging.INFO):
        stages.extract_cohort_frames(run)
        assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
    assert f"{lab_file} is a multi-animal project's label file (individuals: mouse1, single)" in caplog.text
    copy = read_collected_data(run.layout.project_dir / "labeled-data" / "reachingvideo1" / lab_file.name)
    assert copy.columns.equals(frame.columns)  # the run's project: single-animal, as DeepLabCut reads it there
    assert np.array_equal(copy.to_numpy(), frame.to_numpy(), equal_nan=True)
    lab_file.with_suffix(".csv").unlink()  # the .csv alone reads the same
    assert read_collected_data(lab_file).columns.nlevels == 3
    multi.to_csv(lab_file.with_suffix(".csv"))
    lab_file.unlink()
    from_csv = read_collected_data(lab_file)
    assert np.allclose(from_csv.to_numpy(), frame.to_numpy(), equal_nan=True)

    two = pd.concat([_with_individuals(frame, lambda _: "mouse1"), _with_individuals(frame + 5.0, lambda _: "mouse2")],
                    axis=1)
    two.to_hdf(lab_file, key="df_with_missing", mode="w")
    with pytest.raises(LabelFileError) as refused:
        read_collected_data(lab_file)
    paragraph = refused.value.explain()
    assert "holds the labels of 2 individuals with the same landmarks" in paragraph
    assert "Found: individuals mouse1, mouse2" in paragraph and f"File: {lab_file}" in paragraph


def test_a_multi_animal_project_of_one_labelled_individual_is_studied_as_one_participant_per_video(
        reaching_project, tmp_path, caplog):
    """A lab that made its project multi-animal (DeepLabCut's tracker, or by chance) has `bodyparts: MULTI!` in its
    config.yaml, the landmarks under `multianimalbodyparts` and `uniquebodyparts`, and DeepLabCut's default
    individual1..3, of which it labelled one: the others' columns are empty in every label file. Such a project was
    refused outright, the lab told to build a single-animal project of the same labels by hand."""
    root, project = _reaching_cohort(reaching_project, tmp_path)
    config = project / "config.yaml"
    config.write_text(config.read_text().replace(
        "bodyparts:\n- Hand\n- Finger1\n- Tongue\n- Joystick1\n- Joystick2\n",
        "multianimalproject: true\nidentity: false\nindividuals:\n- individual1\n- individual2\n- individual3\n"
        "uniquebodyparts:\n- Joystick1\n- Joystick2\nmultianimalbodyparts:\n- Hand\n- Finger1\n- Tongue\n"
        "bodyparts: MULTI!\n", 1))
    assert "bodyparts: MULTI!" in config.read_text()
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    frame = read_collected_data(lab_file)
    unique = ("Joystick1", "Joystick2")
    labelled = _with_individuals(frame, lambda bodypart: "single" if bodypart in unique else "individual1")
    empty = [_with_individuals(frame.drop(columns=list(unique), level="bodyparts") * np.nan, lambda _: name)
             for name in ("individual2", "individual3")]
    multi = pd.concat([labelled.drop(columns="single", level="individuals"), *empty,
                       labelled.xs("single", level="individuals", axis=1, drop_level=False)], axis=1)
    multi.to_hdf(lab_file, key="df_with_missing", mode="w")
    multi.to_csv(lab_file.with_suffix(".csv"))
    os.utime(lab_file, (lab_file.stat().st_atime, lab_file.stat().st_mtime - 1))
    with caplog.at_level(logging.INFO):
        run = stages.prepare_run(root, REACH_CONF, "manual__multi_animal")
        assert run.cohort.bodyparts == ("Hand", "Finger1", "Tongue", "Joystick1", "Joystick2")
        stages.extract_cohort_frames(run)
        assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
        assert stages.validate_label_table(run)["success"]
    assert "is a multi-animal DeepLabCut project (individuals: individual1, individual2, individual3)" in caplog.text
    assert caplog.text.count("is a multi-animal DeepLabCut project") == 1  # by prepare_run, not by every stage
    assert "(individuals: individual1, single)" in caplog.text  # the empty two are no one's labels
    copy = read_collected_data(run.layout.project_dir / "labeled-data" / "reachingvideo1" / lab_file.name)
    assert np.array_equal(copy[frame.columns].to_numpy(), frame.to_numpy(), equal_nan=True)

    config.write_text(config.read_text().replace("multianimalbodyparts:\n- Hand\n- Finger1\n- Tongue\n", "")
                      .replace("uniquebodyparts:\n- Joystick1\n- Joystick2\n", "uniquebodyparts: []\n"))
    with pytest.raises(CohortError) as refused:
        stages.prepare_run(root, REACH_CONF, "manual__no_landmarks")
    assert "the multi-animal project's config.yaml lists no landmarks" in str(refused.value)
    assert "Found: multianimalbodyparts: []; uniquebodyparts: []" in str(refused.value)


@pytest.mark.parametrize("coords", [("x", "y"), ("x", "y", "visibility")])
def test_frames_saved_without_any_label_are_left_out_of_an_imported_project_and_named(reaching_project, tmp_path,
                                                                                        caplog, coords):
    """DeepLabCut's older labeling GUI saved a row of NaN for every frame of a folder, labeled or not: such a frame
    is not a labeled frame (it would count towards a frame set and teach nothing). Newer napari-deeplabcut saves a
    visibility beside x and y (0 where nothing is labelled): a number, but not a label."""
    root, project = _reaching_cohort(reaching_project, tmp_path)
    h5 = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    frame = read_collected_data(h5)
    blank = sorted(frame.index.get_level_values(-1))[:3]
    frame.loc[frame.index.get_level_values(-1).isin(blank)] = np.nan
    if "visibility" in coords:
        scorer, bodyparts = frame.columns.get_level_values(0)[0], frame.columns.get_level_values(1).unique()
        for bodypart in bodyparts:
            frame[(scorer, bodypart, "visibility")] = np.where(frame[(scorer, bodypart, "x")].notna(), 2, 0)
        frame = frame[pd.MultiIndex.from_tuples([(scorer, b, c) for b in bodyparts for c in coords],
                                                names=frame.columns.names)]
    frame.to_hdf(h5, key="df_with_missing", mode="w")
    frame.to_csv(h5.with_suffix(".csv"))
    run = stages.prepare_run(root, REACH_CONF, "manual__blank")
    stages.extract_cohort_frames(run)
    assert stages.label_frames(run) == {"labeled_frames": 52, "videos": 1}
    assert f"3 of 55 frames have no label at all and are left out ({', '.join(blank)})" in caplog.text
    table = pd.read_csv(run.layout.labels_file)
    assert not set(blank) & set(table["image"]) and table["image"].nunique() == 52
    copied = read_collected_data(run.layout.project_dir / "labeled-data" / "reachingvideo1" / h5.name)
    assert set(copied.columns.get_level_values(-1)) == {"x", "y"}  # what DeepLabCut's training dataset reads


def test_a_video_named_with_digits_only_keeps_its_name_through_labels_validation_and_frame_sets(reaching_project,
                                                                                                tmp_path):
    """Labs name videos 0012.mp4: a table read back must not turn the folder 0012 into the number 12 (validation
    crashed on it). Only DeepLabCut's CSV copy of the labels here (three index columns, as 2.2+ writes it)."""
    root, project = _reaching_cohort(reaching_project, tmp_path)
    folder = project / "labeled-data" / "0012"
    (project / "labeled-data" / "reachingvideo1").rename(folder)
    h5 = folder / "CollectedData_Mackenzie.h5"
    frame = read_collected_data(h5)
    frame.index = pd.MultiIndex.from_tuples([("labeled-data", "0012", image) for *_, image in frame.index])
    frame.to_csv(h5.with_suffix(".csv"))
    h5.unlink()
    assert read_collected_data(h5).index[0][1] == "0012"
    run = stages.prepare_run(root, REACH_CONF, "manual__digits")
    stages.extract_cohort_frames(run)
    assert stages.label_frames(run) == {"labeled_frames": 55, "videos": 1}
    assert stages.validate_label_table(run)["success"]
    stages.make_frame_sets(run)
    assert {video for video, _ in stages.frame_set_of(run.layout, 20).train} == {"0012"}
    assert set(read_label_table(run.layout.validated_labels_file)["video"]) == {"0012"}


def test_an_unreadable_image_is_called_that_not_a_missing_landmark(labeled_run):
    """Each image named for what is wrong with it: unreadable, or not there where a namesake of another format is
    (a lab converted its frames to .jpg to save space; the label file, and DeepLabCut, name the .png), or one whose
    name differs in case alone (img005.PNG: Windows does not tell them apart; told to convert it, before)."""
    import cv2

    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    victim = table.iloc[0]
    (layout.project_dir / "labeled-data" / victim["video"] / victim["image"]).write_bytes(b"not a png")
    table.loc[table["image"] == victim["image"], ["image_width_px", "image_height_px"]] = float("nan")
    converted = table[table["image"] != victim["image"]].iloc[0]
    png = layout.project_dir / "labeled-data" / converted["video"] / converted["image"]
    cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
    png.unlink()
    renamed = table[~table["image"].isin([victim["image"], converted["image"]])].iloc[0]  # copied from Windows
    cased = layout.project_dir / "labeled-data" / renamed["video"] / renamed["image"]
    cased.rename(cased.with_suffix(".PNG"))
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, sorted(set(table["landmark"])), 0.1, layout.validation_dir,
                        images_root=layout.project_dir / "labeled-data")
    message = str(failure.value)
    assert "labeled image missing, unreadable or not the size it was labeled at" in message
    assert "landmark image_width_px" not in message
    assert message.count(victim["image"]) == 1  # once, for the image: not again for each of its landmarks
    assert f"{victim['image']}: found a file that cannot be read as an image" in message
    assert (f"{png.name}: found no {png.name}, but {png.stem}.jpg beside it (the label file names .png images, and "
            f"DeepLabCut reads the images it names: convert them back to .png)") in message
    assert (f"{cased.name}: found no {cased.name}, but {cased.stem}.PNG beside it: the name differs in case alone, "
            f"which Windows and macOS do not tell apart") in message


def test_a_twelve_bit_cameras_sixteen_bit_frames_fail_as_nearly_black_and_full_range_ones_pass(labeled_run):
    """A 12-bit camera's frames saved as 16-bit PNGs (values up to 4095) read as 0-15 of 255 in DeepLabCut's loaders
    (16 bits divided by 256): the networks would train on nearly black frames. Validation names them, with the
    brightest level found; 16-bit frames using their whole range read as the 8-bit frame they hold, and pass."""
    import cv2

    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    first, *others = table.drop_duplicates(["video", "image"])[["video", "image"]].to_numpy()
    frames = [first, next(other for other in others if other[1] != first[1])]  # named apart in the message
    images = layout.project_dir / "labeled-data"
    for (video, image), scale in zip(frames, (16, 257)):  # 12 bits in 16, then the full 16-bit range
        path = images / video / image
        eight_bit = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        path.unlink()  # (a link into the cohort's frame store: replaced, not written through)
        cv2.imwrite(str(path), eight_bit.astype(np.uint16) * scale)
    with pytest.raises(LabelValidationError) as failure:
        validate_labels(table, sorted(set(table["landmark"])), 0.1, layout.validation_dir, images_root=images)
    message = failure.value.explain()
    assert "labeled frame nearly black as the networks read it" in message and "1 expectation(s) not met" in message
    darkened = (cv2.imread(str(images / frames[0][0] / frames[0][1]), cv2.IMREAD_UNCHANGED).max()) / 256
    assert f"{frames[0][1]}: found brightest pixel {round(darkened, 2):g} of 255, allowed at least 16 of 255" in message
    assert frames[1][1] not in message  # the full-range 16-bit frame reads as its 8-bit self


def test_a_missing_image_fails_and_excluding_offending_frames_keeps_the_rest(labeled_run, tmp_path):
    layout = labeled_run.layout
    table = pd.read_csv(layout.labels_file)
    victim = table.iloc[0]
    (layout.project_dir / "labeled-data" / victim["video"] / victim["image"]).unlink()
    with pytest.raises(LabelValidationError, match=f"File: .*{victim['video']}/CollectedData_simulated.h5(.|\n)*"
                                                   f"labeled image missing(.|\n)*{victim['image']}: found no "
                                                   f"{victim['image']} in .*{victim['video']}, allowed"):
        stages.validate_label_table(labeled_run)

    run = stages.prepare_run(layout.data_root, {**SMALL, "invalid_labels": "exclude_frames"}, "manual__exclude")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    new_layout = run.layout
    (new_layout.project_dir / "labeled-data" / victim["video"] / victim["image"]).unlink()
    result = stages.validate_label_table(run)
    assert result["excluded_frames"] == 1 and result["labeled_frames"] == 17
    checked = json.loads((new_layout.validation_dir / "validation_result.json").read_text())
    assert "frontal_anatomy" in checked["suites"]  # the paper's names: the frontal-plane checks ran too
    remaining = pd.read_csv(new_layout.validated_labels_file)
    assert victim["image"] not in set(remaining.loc[remaining["video"] == victim["video"], "image"])
    # the stage never rewrites its input: a retry excludes the same frame from the same table
    assert victim["image"] in set(pd.read_csv(new_layout.labels_file)["image"])
    again = stages.validate_label_table(run)
    assert again == result and pd.read_csv(new_layout.validated_labels_file).equals(remaining)


def test_human_labels_are_awaited_per_video_and_taken_from_the_project(tiny_cohort, tmp_path):
    import shutil

    from posesweep.synthetic import simulate_labels, truth_file
    from posesweep.labels import to_dlc_frame, write_collected_data
    from posesweep.layout import read_json

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    (root / "cohorts" / "tiny" / "cohort.json").unlink()  # a recorded cohort: humans label it
    run = stages.prepare_run(root, SMALL, "manual__human")
    stages.extract_cohort_frames(run)
    layout = run.layout
    assert (layout.project_dir / "config.yaml").exists()  # the lab can open the project to label
    assert stages.unlabeled_frames(run) == {"P001": 6, "P002": 6, "P003": 6}
    bodyparts = [bp for bp in pd.read_csv(truth_file(root / "cohorts" / "tiny" / "videos" / "P001.mp4"))
                 .columns[1::2].str[:-2]]

    def label(stem, images_to_label):  # what DeepLabCut's GUI would save into the project
        record = read_json(layout.frame_record(stem))
        wide = simulate_labels(truth_file(root / "cohorts" / "tiny" / "videos" / f"{stem}.mp4"),
                               record["frame_indices"][:images_to_label], 120, seed=0)
        frame = to_dlc_frame(wide, stem, record["image_names"][:images_to_label], bodyparts, "labeler")
        write_collected_data(frame, layout.project_dir / "labeled-data", stem, "labeler")

    label("P001", 6)
    label("P002", 4)
    assert stages.unlabeled_frames(run) == {"P002": 2, "P003": 6}
    with pytest.raises(CohortError, match="P003"):
        stages.label_frames(run)
    label("P002", 6)
    # P003's file caught half-written (the GUI rewrites the .h5 in place; a copy onto a share arrives bit by bit):
    # the run looks again later, saying why, instead of failing while the lab saves
    p003 = layout.project_dir / "labeled-data" / "P003" / "CollectedData_labeler.h5"
    p003.parent.mkdir(parents=True, exist_ok=True)
    p003.write_bytes((layout.project_dir / "labeled-data" / "P002" / "CollectedData_labeler.h5").read_bytes()[:3000])
    assert stages.unlabeled_frames(run) == {"P003": 6}
    status = "\n".join(stages.labeling_status(run, {"P003": 6}))
    assert f"{p003} cannot be read yet: it changed" in status and "read again at the next look" in status
    an_hour_ago = time.time() - 3600  # unreadable and left so: damaged, and the lab is told
    os.utime(p003, (an_hour_ago, an_hour_ago))
    with pytest.raises(LabelFileError, match="P003"):
        stages.unlabeled_frames(run)
    label("P003", 6)
    assert stages.unlabeled_frames(run) == {}
    assert stages.label_frames(run) == {"labeled_frames": 18, "videos": 3}
    assert stages.validate_label_table(run)["success"]


def _recorded_cohort_with_a_first_run(tiny_cohort, tmp_path):
    """A copy of the tiny cohort as a lab's recorded cohort (humans label it), and its first run's frames: (data
    root, videos folder, run)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    (root / "cohorts" / "tiny" / "cohort.json").unlink()
    first = stages.prepare_run(root, SMALL, "manual__first")
    stages.extract_cohort_frames(first)
    return root, root / "cohorts" / "tiny" / "videos", first


def _labelled_in_project(run, videos, stem: str, count: int | None = None):
    """What DeepLabCut's GUI would save into the run's project: the simulated labeler's labels of the first
    ``count`` picked frames (all by default) of the cohort's landmarks."""
    from posesweep.labels import to_dlc_frame, write_collected_data
    from posesweep.layout import read_json
    from posesweep.synthetic import simulate_labels, truth_file

    record = read_json(run.layout.frame_record(stem))
    count = len(record["image_names"]) if count is None else count
    wide = simulate_labels(truth_file(videos / f"{stem}.mp4"), record["frame_indices"][:count], 120, seed=0)
    frame = to_dlc_frame(wide, stem, record["image_names"][:count], list(run.cohort.bodyparts), "labeler")
    return write_collected_data(frame, run.layout.project_dir / "labeled-data", stem, "labeler")


def test_a_participant_copied_into_the_cohort_while_its_run_waits_for_labels_is_the_next_runs(tiny_cohort, tmp_path,
                                                                                                 caplog):
    """A lab copies a new participant's video into the cohort while its run waits for labels (days, often). Each
    look read the cohort folder afresh and failed on the new video's frame record, which the run never extracted:
    a bare FileNotFoundError at every look, then at label_frames. A run's videos are those it extracted frames of;
    the new one is the next run's (cohort_intake starts one), and the log says so. One taken out of the cohort
    since (a participant who withdrew) is left out, and named."""
    import shutil

    from posesweep.run import Run

    root, videos, first = _recorded_cohort_with_a_first_run(tiny_cohort, tmp_path)
    shutil.copy(videos / "P001.mp4", videos / "P004.mp4")
    run = Run.open(first.handle)  # each task opens the run afresh
    assert stages.unlabeled_frames(run) == {"P001": 6, "P002": 6, "P003": 6}
    added = ("videos copied into the cohort after this run extracted its frames are a new run's, not this one's "
             "(cohort_intake starts one for a grown cohort): P004")
    assert added in stages.labeling_status(run, stages.unlabeled_frames(run))  # told at each look
    for stem in ("P001", "P002", "P003"):
        _labelled_in_project(run, videos, stem)
    assert stages.unlabeled_frames(run) == {}
    (videos / "P003.mp4").unlink()
    run = Run.open(first.handle)
    with caplog.at_level(logging.WARNING, logger="posesweep.stages"):
        assert stages.label_frames(run) == {"labeled_frames": 12, "videos": 2}
    assert added in caplog.text
    assert "videos this run extracted frames of that are no longer in the cohort are left out: P003" in caplog.text
    # the report's scales are of the run's videos: a landing square per video, none yet for the new one (before,
    # the report failed: "no landing square for video 'P004'")
    square = json.loads((tiny_cohort / "cohorts" / "tiny" / "cohort.json").read_text())["landing_square"]
    (root / "cohorts" / "tiny" / "cohort.json").write_text(json.dumps(
        {"landing_square_by_video": {stem: square for stem in ("P001", "P002", "P003")}}))
    run = Run.open(first.handle)
    assert set(stages.studied_scales(run).px_per_mm) == {"P001", "P002", "P003"}


def test_a_new_run_of_a_grown_cohort_keeps_the_labels_of_the_frames_labelled_in_an_earlier_run(tiny_cohort,
                                                                                                  tmp_path, caplog):
    """New participants are copied in, the intake starts a new run: the lab labels only what is new. A label is
    carried only onto the image it was made on (pixel for pixel), and the earlier run is only read."""
    import hashlib
    import json
    import os
    import shutil

    root, videos, first = _recorded_cohort_with_a_first_run(tiny_cohort, tmp_path)

    def label(run, stem, count):  # what DeepLabCut's GUI would save into the run's project
        return _labelled_in_project(run, videos, stem, count)

    first_files = {stem: label(first, stem, count) for stem, count in (("P001", 4), ("P002", 6), ("P003", 6))}
    digests = {stem: hashlib.sha256(path.read_bytes()).hexdigest() for stem, path in first_files.items()}

    shutil.copy(videos / "P003.mp4", videos / "P004.mp4")  # a new participant (its own frames to label)
    shutil.copy(videos / "P003.truth.csv", videos / "P004.truth.csv")
    shutil.copy(videos / "P001.mp4", videos / "P003.mp4")  # P003 replaced by other footage: its labels do not fit
    shutil.copy(videos / "P002.mp4", tmp_path / "P002.mp4")  # P002 copied in again: a new file, the same frames
    shutil.copy(tmp_path / "P002.mp4", videos / "P002.mp4")
    os.utime(videos / "P002.mp4", (1e9, 1e9))
    with caplog.at_level(logging.INFO, logger="posesweep"):
        second = stages.prepare_run(root, SMALL, "manual__second")
        stages.extract_cohort_frames(second)

    assert stages.unlabeled_frames(second) == {"P001": 2, "P003": 6, "P004": 6}
    carried = json.loads(second.layout.carried_labels_file.read_text())
    assert {stem: (entry["from_run"], entry["frames"]) for stem, entry in carried.items()} == \
        {"P001": ("manual__first", 4), "P002": ("manual__first", 6)}
    assert "P002: labels of 6 of its 6 picked frames carried over from run manual__first" in caplog.text
    for stem, path in first_files.items():  # the earlier run is read, never written
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[stem], stem

    # while the second run waits, the lab goes on in the first run's project: untouched carried files follow it,
    # and what the lab saved in the second run's project is never overwritten
    label(first, "P001", 6)
    label(second, "P002", 5)
    stages.take_earlier_labels(second)  # what wait_for_labels does at each look
    assert stages.unlabeled_frames(second) == {"P002": 1, "P003": 6, "P004": 6}
    assert json.loads(second.layout.carried_labels_file.read_text())["P001"]["frames"] == 6

    label(second, "P002", 6)
    label(second, "P003", 6)
    label(second, "P004", 6)
    assert stages.label_frames(second) == {"labeled_frames": 24, "videos": 4}
    table = pd.read_csv(second.layout.labels_file)  # P001's labels are the first run's, never saved again here
    earlier = tidy_from_collected(read_collected_data(first_files["P001"]), first.layout.project_dir / "labeled-data")
    now = table[table["video"] == "P001"].sort_values(["image", "landmark"]).reset_index(drop=True)
    earlier = earlier.sort_values(["image", "landmark"]).reset_index(drop=True)
    assert len(now) == 60 and np.allclose(now[["x_px", "y_px"]], earlier[["x_px", "y_px"]], equal_nan=True)

    third = stages.prepare_run(root, SMALL, "manual__third")  # a later run: from the run that labels the most
    stages.extract_cohort_frames(third)
    assert stages.unlabeled_frames(third) == {}  # all four now labelled in the second run's project


def test_labels_carried_into_a_run_after_the_lab_changed_its_landmarks_keep_the_shared_ones_and_wait_for_the_new(
        tiny_cohort, tmp_path, caplog):
    """Between two runs the lab adds a landmark (chin) and takes one out (left_lateral_foot): the earlier labels of
    every other landmark are carried, the one taken out is left out, and the frames wait until the lab has added
    the new one and saved; the task log says so. Before, nothing was carried and the lab labelled it all again."""
    from posesweep.labels import write_collected_data

    root, videos, first = _recorded_cohort_with_a_first_run(tiny_cohort, tmp_path)
    first_file = _labelled_in_project(first, videos, "P001")

    changed = [bp for bp in FRONTAL_BODYPARTS if bp != "left_lateral_foot"] + ["chin"]
    (root / "cohorts" / "tiny" / "cohort.json").write_text(json.dumps({"bodyparts": changed}))
    with caplog.at_level(logging.INFO, logger="posesweep"):
        second = stages.prepare_run(root, SMALL, "manual__second")
        stages.extract_cohort_frames(second)
    assert ("P001: labels of 6 of its 6 picked frames carried over from run manual__first of cohort tiny "
            in caplog.text and "; left_lateral_foot left out (no longer among the cohort's bodyparts); without "
            "chin, new since: add them to these frames in DeepLabCut and save" in caplog.text)
    carried_file = second.layout.project_dir / "labeled-data" / "P001" / "CollectedData_labeler.h5"
    carried = read_collected_data(carried_file)
    assert list(carried.columns.get_level_values("bodyparts").unique()) == changed
    assert carried.xs("chin", axis=1, level="bodyparts").isna().all().all()
    earlier = read_collected_data(first_file)
    kept = [bp for bp in changed if bp != "chin"]
    np.testing.assert_array_equal(carried.loc[:, (slice(None), kept)].to_numpy(),
                                  earlier.loc[:, (slice(None), kept)].to_numpy())
    entry = json.loads(second.layout.carried_labels_file.read_text())["P001"]
    assert entry["landmarks_added"] == ["chin"] and entry["landmarks_left_out"] == ["left_lateral_foot"]

    assert stages.unlabeled_frames(second) == {"P001": 6, "P002": 6, "P003": 6}  # chin first
    status = "\n".join(stages.labeling_status(second, stages.unlabeled_frames(second)))
    assert "P001: 6 of 6 picked frames still unlabeled" in status
    assert "carried from an earlier run, which had no chin (new among the cohort's bodyparts since)" in status
    stages.take_earlier_labels(second)  # a look while waiting: the carried file stays as it is
    assert stages.unlabeled_frames(second)["P001"] == 6

    with_chin = carried.copy()  # the lab adds the chin in DeepLabCut's GUI and saves
    chin = [column for column in with_chin.columns if column[1] == "chin"]
    with_chin[chin] = with_chin[[(c[0], "right_hip", c[2]) for c in chin]].to_numpy() - 20
    write_collected_data(with_chin, second.layout.project_dir / "labeled-data", "P001", "labeler")
    assert stages.unlabeled_frames(second) == {"P002": 6, "P003": 6}
    assert "which had no chin" not in "\n".join(stages.labeling_status(second, stages.unlabeled_frames(second)))


def test_a_landmark_renamed_between_runs_is_carried_under_its_new_name_where_cohort_json_says_so(tiny_cohort, tmp_path,
                                                                                                  caplog):
    """The lab renames right_hip to hip_right between two runs. Without a word, its labels are left out and the
    frames wait for hip_right, and the log proposes renamed_landmarks; with it, they are carried under the new
    name and nothing waits."""
    root, videos, first = _recorded_cohort_with_a_first_run(tiny_cohort, tmp_path)
    first_file = _labelled_in_project(first, videos, "P001")
    renamed = ["hip_right" if bp == "right_hip" else bp for bp in FRONTAL_BODYPARTS]
    manifest = root / "cohorts" / "tiny" / "cohort.json"

    manifest.write_text(json.dumps({"bodyparts": renamed}))
    with caplog.at_level(logging.INFO, logger="posesweep"):
        unsaid = stages.prepare_run(root, SMALL, "manual__unsaid")
        stages.extract_cohort_frames(unsaid)
    assert ("without hip_right, new since: add them to these frames in DeepLabCut and save (if hip_right is "
            'right_hip renamed, say so in the cohort\'s cohort.json: "renamed_landmarks": {"right_hip": '
            '"hip_right"}, and its labels are carried)') in caplog.text
    assert stages.unlabeled_frames(unsaid)["P001"] == 6

    manifest.write_text(json.dumps({"bodyparts": renamed, "renamed_landmarks": {"right_hip": "hip_right"}}))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="posesweep"):
        said = stages.prepare_run(root, SMALL, "manual__said")
        stages.extract_cohort_frames(said)
    assert "P001: labels of 6 of its 6 picked frames carried over from run manual__first" in caplog.text
    assert "; right_hip -> hip_right (renamed_landmarks in cohort.json)" in caplog.text
    carried = read_collected_data(said.layout.project_dir / "labeled-data" / "P001" / "CollectedData_labeler.h5")
    assert list(carried.columns.get_level_values("bodyparts").unique()) == renamed
    np.testing.assert_array_equal(carried.xs("hip_right", axis=1, level="bodyparts").to_numpy(),
                                  read_collected_data(first_file).xs("right_hip", axis=1, level="bodyparts").to_numpy())
    entry = json.loads(said.layout.carried_labels_file.read_text())["P001"]
    assert entry["landmarks_renamed"] == ["right_hip -> hip_right"] and entry["landmarks_added"] == []
    assert "P001" not in stages.unlabeled_frames(said)


def test_a_grown_cohort_copied_to_a_new_folder_keeps_its_labels_and_a_namesake_of_another_study_gives_none(
        tiny_cohort, tmp_path, caplog):
    """The lab puts the grown cohort in a new folder (a new cohort to the intake): the videos it labelled before,
    copied over (new files, the same bytes), keep their labels. Another study's participant of the same name
    (other footage) gives none."""
    import json
    import shutil

    from posesweep.labels import to_dlc_frame, write_collected_data
    from posesweep.layout import read_json
    from posesweep.synthetic import simulate_labels, truth_file

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    videos = root / "cohorts" / "tiny" / "videos"
    (root / "cohorts" / "tiny" / "cohort.json").unlink()  # a recorded cohort: humans label it
    other = root / "cohorts" / "other_study" / "videos"  # another study, its own P001
    other.mkdir(parents=True)
    shutil.copyfile(videos / "P002.mp4", other / "P001.mp4")
    shutil.copyfile(videos / "P002.truth.csv", other / "P001.truth.csv")

    def label(run, folder, stem):  # what DeepLabCut's GUI would save into the run's project
        record = read_json(run.layout.frame_record(stem))
        wide = simulate_labels(truth_file(folder / f"{stem}.mp4"), record["frame_indices"], 120, seed=0)
        frame = to_dlc_frame(wide, stem, record["image_names"], list(run.cohort.bodyparts), "labeler")
        write_collected_data(frame, run.layout.project_dir / "labeled-data", stem, "labeler")

    first = stages.prepare_run(root, SMALL, "manual__first")
    stages.extract_cohort_frames(first)
    for stem in ("P001", "P002"):
        label(first, videos, stem)
    elsewhere = stages.prepare_run(root, {**SMALL, "cohort": "other_study", "frame_set_sizes": [6]}, "manual__other")
    stages.extract_cohort_frames(elsewhere)
    label(elsewhere, other, "P001")

    grown = root / "cohorts" / "tiny_wave2" / "videos"
    grown.mkdir(parents=True)
    for stem in ("P001", "P002", "P003"):  # copied as a lab copies: new files, new times, the same bytes
        shutil.copyfile(videos / f"{stem}.mp4", grown / f"{stem}.mp4")
        shutil.copyfile(videos / f"{stem}.truth.csv", grown / f"{stem}.truth.csv")
    shutil.copyfile(videos / "P003.mp4", grown / "P004.mp4")  # a new participant
    with caplog.at_level(logging.INFO, logger="posesweep"):
        second = stages.prepare_run(root, {**SMALL, "cohort": "tiny_wave2"}, "manual__second")
        stages.extract_cohort_frames(second)

    assert stages.unlabeled_frames(second) == {"P003": 6, "P004": 6}
    carried = json.loads(second.layout.carried_labels_file.read_text())
    assert {stem: (entry["from_cohort"], entry["from_run"], entry["frames"]) for stem, entry in carried.items()} == \
        {"P001": ("tiny", "manual__first", 6), "P002": ("tiny", "manual__first", 6)}
    assert "P001: labels of 6 of its 6 picked frames carried over from run manual__first of cohort tiny" in caplog.text


def test_the_wait_for_labels_says_why_when_the_labs_label_files_do_not_match_the_picked_frames(tiny_cohort, tmp_path):
    import shutil

    from posesweep.frames import image_name
    from posesweep.labels import to_dlc_frame, write_collected_data
    from posesweep.layout import read_json
    from posesweep.synthetic import simulate_labels, truth_file

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort, root)
    cohort = root / "cohorts" / "tiny"
    (cohort / "cohort.json").unlink()  # a recorded cohort: humans label it
    run = stages.prepare_run(root, SMALL, "manual__mismatch")
    stages.extract_cohort_frames(run)
    bodyparts = list(run.cohort.bodyparts)

    def lab_labels(stem, frame_indices, scorer):  # labels a lab copies into the cohort folder
        wide = simulate_labels(truth_file(cohort / "videos" / f"{stem}.mp4"), frame_indices, 120, seed=0)
        names = [image_name(i, 60) for i in frame_indices]
        write_collected_data(to_dlc_frame(wide, stem, names, bodyparts, scorer), cohort / "labeled-data", stem, scorer)

    lab_labels("P001", read_json(run.layout.frame_record("P001"))["frame_indices"], "Jane")  # another scorer
    picked = set(read_json(run.layout.frame_record("P002"))["frame_indices"])
    lab_labels("P002", [i for i in range(60) if i not in picked][:5], "labeler")  # frames k-means did not pick
    missing = stages.unlabeled_frames(run)
    assert missing == {"P001": 6, "P002": 6, "P003": 6}
    status = "\n".join(stages.labeling_status(run, missing))
    assert status.startswith("waiting for labels: 18 frames of 3 videos")
    assert f"found {cohort / 'labeled-data' / 'P001' / 'CollectedData_Jane.h5'}" in status
    assert f'set "scorer": "Jane" in {cohort / "cohort.json"}' in status
    assert f"{cohort / 'labeled-data' / 'P002' / 'CollectedData_labeler.h5'} labels 5 frames k-means did not pick" \
        in status
    assert "P003: 6 of 6 picked frames still unlabeled; label them in " \
           f"{run.layout.project_dir / 'labeled-data' / 'P003'}" in status
    # DeepLabCut 3's call that opens the folder in napari-deeplabcut, as a lab can paste it
    assert f"deeplabcut.label_frames('{run.layout.project_dir / 'config.yaml'}', image_folder='P003')" in status


def test_a_corrupt_h5_is_read_from_the_csv_deeplabcut_writes_beside_it(labeled_run, caplog):
    layout = labeled_run.layout
    h5 = layout.project_dir / "labeled-data" / "P001" / "CollectedData_simulated.h5"
    intact = read_collected_data(h5)
    h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])
    recovered = read_collected_data(h5)
    pd.testing.assert_frame_equal(recovered, intact, check_names=False)
    assert f"{h5} cannot be read" in caplog.text and "CollectedData_simulated.csv instead" in caplog.text
    h5.with_suffix(".csv").write_text("scorer,simulated\n")
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(h5)
    assert f"File: {h5} and {h5.with_suffix('.csv')}" in str(failure.value) and not failure.value.retryable


def test_labels_corrected_in_the_csv_after_the_h5_are_refused_until_converted_as_deeplabcut_converts_them(
        labeled_run):
    """A lab corrects a label in DeepLabCut's .csv copy with a spreadsheet and forgets ``convertcsv2h5``: DeepLabCut
    (and posesweep) train from the .h5, so the correction would be left out without a word. Refused, naming the
    frame and both values; after DeepLabCut's own conversion (which writes the .csv again after the .h5) it reads.
    A .csv saved with semicolons by a spreadsheet in a decimal-comma language is named as that."""
    import os

    from deeplabcut.utils.conversioncode import convertcsv2h5

    layout = labeled_run.layout
    h5 = layout.project_dir / "labeled-data" / "P001" / "CollectedData_simulated.h5"
    csv = h5.with_suffix(".csv")
    before = read_collected_data(h5)
    convertcsv2h5(str(layout.project_dir / "config.yaml"), userfeedback=False)  # .h5, then the .csv again
    assert csv.stat().st_mtime >= h5.stat().st_mtime
    pd.testing.assert_frame_equal(read_collected_data(h5), before, check_names=False)

    lines = csv.read_text().splitlines()
    header, first_row = lines[:3], lines[3].split(",")
    image, landmark = first_row[2], header[1].split(",")[3]
    corrected = float(first_row[3]) + 4.5
    first_row[3] = f"{corrected:.4f}"
    csv.write_text("\n".join(header + [",".join(first_row)] + lines[4:]) + "\n")
    os.utime(csv, (h5.stat().st_mtime + 60, h5.stat().st_mtime + 60))  # saved a minute after the .h5
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(h5)
    message = str(failure.value)
    assert f"File: {csv}" in message and not failure.value.retryable
    assert f"1 label value(s) differ; the first: {image}, {landmark} x: {corrected:.2f} in the .csv" in message
    assert f"convertcsv2h5('{layout.project_dir / 'config.yaml'}'" in message

    convertcsv2h5(str(layout.project_dir / "config.yaml"), userfeedback=False)
    after = read_collected_data(h5)
    assert after.loc[after.index[0]].xs("x", level="coords").iloc[0] == pytest.approx(corrected)

    semicolons = csv.read_text().replace(",", ";")
    csv.write_text(semicolons)
    os.utime(csv, (h5.stat().st_mtime + 60, h5.stat().st_mtime + 60))
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(h5)
    assert "separated by ';'" in str(failure.value) and f"File: {csv}" in str(failure.value)
    h5.unlink()  # the spreadsheet's file the only copy
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(h5)
    assert "separated by ';'" in str(failure.value) and f"File: {csv}\n" in str(failure.value)


def test_a_csv_naming_each_image_in_one_column_under_a_three_column_header_keeps_every_label_its_own(tmp_path,
                                                                                                  caplog):
    """A lab's CollectedData .csv as another tool rewrote it (one such is public, a mouse's elevated-plus-maze
    labels): DeepLabCut 2.2's header, which gives three columns to name the image, over rows that name it in one
    (``labeled-data/<video>/<image>``). Read by the header, every label was one landmark to the left of its own,
    without a word (the first landmark took the second's position, the last none). It is read as its rows name the
    image, as DeepLabCut's ``convertcsv2h5`` reads them; a row of another width fails, naming its line."""
    caplog.set_level(logging.INFO, logger="posesweep")
    folder = tmp_path / "labeled-data" / "M708149_EPM-converted"
    folder.mkdir(parents=True)
    columns = pd.MultiIndex.from_product([["Loukia"], ["snout", "left_ear", "tail_end"], ["x", "y"]])
    labels = pd.DataFrame([[np.nan, np.nan, np.nan, np.nan, 596.5, 219.25],
                           [np.nan, np.nan, 526.5, 451.25, 727.5, 559.75]],
                          index=pd.MultiIndex.from_tuples([("labeled-data", folder.name, "img00000.png"),
                                                           ("labeled-data", folder.name, "img00583.png")]),
                          columns=columns)
    csv = folder / "CollectedData_Loukia.csv"
    labels.to_csv(csv)  # as DeepLabCut 2.2 writes it: three columns name each image
    pd.testing.assert_frame_equal(read_collected_data(csv.with_suffix(".h5")), labels, check_names=False)

    lines = csv.read_text().splitlines()
    one_column = ["/".join(line.split(",")[:3]) + "," + line.split(",", 3)[3] for line in lines[3:]]
    csv.write_text("\n".join(lines[:3] + one_column) + "\n")
    read = read_collected_data(csv.with_suffix(".h5"))
    pd.testing.assert_frame_equal(read, labels, check_names=False)
    assert read.loc[("labeled-data", folder.name, "img00583.png"), ("Loukia", "left_ear", "x")] == 526.5
    assert f"{csv} names each image in one column (labeled-data/<video>/<image>) under a header that gives that 3" \
        in caplog.text

    csv.write_text("\n".join(lines[:4] + [",".join(lines[4].split(",")[:7])]) + "\n")  # the last two values cut
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(csv.with_suffix(".h5"))
    assert f"File: {csv}\n" in str(failure.value) and not failure.value.retryable
    assert "line 5 has 7 fields where the header has 9 (3 naming the image, 6 label values)" in str(failure.value)


def _two_labelled_frames_as_csv(folder: Path) -> tuple[pd.DataFrame, Path]:
    """Two frames' labels (the second's Joystick2 unlabelled) and the .csv DeepLabCut 2.2 writes of them, in
    ``folder``."""
    folder.mkdir(parents=True)
    columns = pd.MultiIndex.from_product([["Mackenzie"], ["Hand", "Joystick2"], ["x", "y"]])
    labels = pd.DataFrame([[185.25, 610.5, 364.25, 623.0], [191.5, 615.75, np.nan, np.nan]],
                          index=pd.MultiIndex.from_tuples([("labeled-data", folder.name, "img005.png"),
                                                           ("labeled-data", folder.name, "img020.png")]),
                          columns=columns)
    csv = folder / "CollectedData_Mackenzie.csv"
    labels.to_csv(csv)
    return labels, csv


def test_a_csv_a_spreadsheet_padded_with_empty_columns_and_a_row_of_commas_is_read_as_its_labels(tmp_path):
    """A CollectedData .csv opened in a spreadsheet to mend a click and saved again: a cell typed in and cleared
    right of the last landmark pads every row with empty fields, one below the last frame adds a row of commas
    alone. Read before as a landmark of no name ("Unnamed: 11_level_1") and a frame of no name, which failed a later
    stage with a TypeError naming nothing. The padding is not data; a value under no header still fails."""
    labels, csv = _two_labelled_frames_as_csv(tmp_path / "labeled-data" / "trial 1")
    lines = csv.read_text().splitlines()
    csv.write_text("\r\n".join([line + ",," for line in lines] + [",,,,,,,,,"]) + "\r\n")
    read = read_collected_data(csv.with_suffix(".h5"))
    pd.testing.assert_frame_equal(read, labels, check_names=False)

    csv.write_text("\n".join([line + ",," for line in lines[:4]] + [lines[4] + ",,12.5"]) + "\n")
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(csv.with_suffix(".h5"))
    assert "line 5 has 9 fields where the header has 7 (3 naming the image, 4 label values)" in str(failure.value)


def test_label_files_a_labs_script_wrote_a_space_after_each_comma_or_a_backup_dataset_beside_are_read(tmp_path,
                                                                                                       caplog):
    """Shapes a lab's own script gives DeepLabCut's files: a .csv written with ", " between fields (its header
    cells " x", " y" were no label columns: "not a DeepLabCut CollectedData table"), or NA for a landmark not
    labelled (read as nothing; a word where a number belongs is named with its line), Windows' code page (a
    spreadsheet's there: a landmark Knöchel was read Kn\ufffdchel), and an .h5 holding a second
    dataset beside DeepLabCut's ``df_with_missing`` (a backup appended: pandas refuses a file of several datasets
    without a key, and the .csv beside it, possibly older, was read instead with a warning)."""
    labels, csv = _two_labelled_frames_as_csv(tmp_path / "labeled-data" / "P01")
    written = csv.read_text()
    csv.write_text("\n".join(", ".join(line.split(",")) for line in written.splitlines()) + "\n")
    pd.testing.assert_frame_equal(read_collected_data(csv.with_suffix(".h5")), labels, check_names=False)
    for missing in ("NA", "None", "#N/A"):  # R's write.csv, Python's str(None), a spreadsheet's lookup
        assert "615.75,,\n" in written
        csv.write_text(written.replace("615.75,,\n", f"615.75,{missing},{missing}\n"))
        pd.testing.assert_frame_equal(read_collected_data(csv.with_suffix(".h5")), labels, check_names=False)
    csv.write_bytes(written.replace("Joystick2", "Knöchel").encode("cp1252"))  # saved by a spreadsheet on Windows
    pd.testing.assert_frame_equal(read_collected_data(csv.with_suffix(".h5")),
                                  labels.rename(columns={"Joystick2": "Knöchel"}), check_names=False)
    csv.write_text(written.replace("615.75", "n.v."))
    with pytest.raises(LabelFileError) as failure:
        read_collected_data(csv.with_suffix(".h5"))
    assert "line 5 holds 'n.v.' as Hand's y, where a number (or nothing, for a landmark not labelled) belongs" \
        in str(failure.value)

    h5 = csv.with_suffix(".h5")
    labels.to_hdf(h5, key="df_with_missing", mode="w")
    labels.iloc[:1].to_hdf(h5, key="backup_before_edit", mode="a")
    csv.unlink()
    with caplog.at_level(logging.WARNING, logger="posesweep"):
        pd.testing.assert_frame_equal(read_collected_data(h5), labels, check_names=False)
    assert "cannot be read" not in caplog.text


def test_a_label_file_holding_a_networks_likelihood_is_read_as_labels_and_said_to_be_predictions(reaching_project,
                                                                                                   caplog):
    """A machinelabels file renamed CollectedData_<scorer>.h5 (a shortcut past refine_labels) holds x, y and
    likelihood per landmark: its positions were read as labels without a word, and the networks were then trained
    and tested on another network's output."""
    from posesweep.labels import build_label_table

    labeled_data = reaching_project / "labeled-data"
    lab_file = labeled_data / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    labels = read_collected_data(lab_file)
    as_labelled = build_label_table(labeled_data, ["reachingvideo1"], "Mackenzie")
    assert "likelihood" not in caplog.text
    predicted = labels.copy()
    for bodypart in labels.columns.get_level_values("bodyparts").unique():
        predicted[("Mackenzie", bodypart, "likelihood")] = np.where(labels[("Mackenzie", bodypart, "x")].notna(),
                                                                     0.87, np.nan)
    predicted.to_hdf(lab_file, key="df_with_missing", mode="w")
    lab_file.with_suffix(".csv").unlink()
    with caplog.at_level(logging.WARNING, logger="posesweep.labels"):
        pd.testing.assert_frame_equal(build_label_table(labeled_data, ["reachingvideo1"], "Mackenzie"), as_labelled)
    assert f"{lab_file} holds a likelihood beside each x and y, as a network's predictions do (a machinelabels " \
           f"file renamed?)" in caplog.text


def test_a_label_file_naming_its_images_by_a_whole_path_or_by_name_alone_is_read_as_deeplabcut_names_them(tmp_path):
    """Conversion scripts write a frame's path whole (C:\\Users\\...\\labeled-data\\<video>\\<image>, or a POSIX
    one), or only its folder and name, or its name alone. Each split into as many index levels as the path had
    parts, and every later stage, written for DeepLabCut's three, broke on it. Read as ("labeled-data", <video>,
    <image>), the name alone in the folder the file is in."""
    folder = tmp_path / "labeled-data" / "m4s1"
    folder.mkdir(parents=True)
    csv = folder / "CollectedData_Pranav.csv"
    standard = ["scorer,Pranav,Pranav", "bodyparts,snout,snout", "coords,x,y",
                "labeled-data/m4s1/img0000.png,21.5,265.25", "labeled-data/m4s1/img0001.png,10.25,288.5"]
    csv.write_text("\n".join(standard) + "\n")
    expected = read_collected_data(csv.with_suffix(".h5"))
    assert expected.index.tolist() == [("labeled-data", "m4s1", "img0000.png"), ("labeled-data", "m4s1", "img0001.png")]
    for prefix in ("C:\\Users\\lab\\openfield-Pranav-2018-10-30\\labeled-data\\m4s1\\",
                   "/home/lab/openfield-Pranav-2018-10-30/labeled-data/m4s1/", "m4s1/", ""):
        rows = [row.replace("labeled-data/m4s1/", prefix) for row in standard[3:]]
        csv.write_text("\n".join(standard[:3] + rows) + "\n")
        pd.testing.assert_frame_equal(read_collected_data(csv.with_suffix(".h5")), expected)


class _CreatesAFile:
    """What an attacker would plant: unpickling it calls ``open(path, "w")``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_label_file_with_code_in_its_pickles_never_runs_it_and_stops_the_run(tiny_cohort, tmp_path):
    """A planted ``CollectedData_*.h5`` whose pickled attribute would create a file: plain ``pd.read_hdf`` runs it
    (the plant works), posesweep's reader, in this process (as in the Airflow worker), does not, and the run stops
    with the file named instead of falling back to the csv beside it."""
    import tables

    from posesweep.labels import write_collected_data

    frame = pd.DataFrame([[1.0, 2.0]], index=pd.MultiIndex.from_tuples([("labeled-data", "P001", "img0.png")]),
                         columns=pd.MultiIndex.from_product([["lab"], ["knee"], ["x", "y"]]))
    h5 = write_collected_data(frame, tmp_path / "labeled-data", "P001", "lab")
    marker = tmp_path / "code-ran"
    with tables.open_file(h5, "a") as f:
        f.root.df_with_missing._v_attrs.encoding = _CreatesAFile(marker)  # pandas reads this attribute
    with pytest.raises(TypeError):  # the planted object is no encoding name, but its code has run by then
        pd.read_hdf(h5)
    assert marker.exists(), "the planted pickle does not run under plain pd.read_hdf: the test proves nothing"
    marker.unlink()

    with pytest.raises(LabelFileError) as failure:
        read_collected_data(h5)
    assert not marker.exists()
    text = str(failure.value)
    assert "the labels of P001 hold code" in text and f"File: {h5}" in text and "io.open" in text
    assert not failure.value.retryable
    pd.testing.assert_frame_equal(read_collected_data(write_collected_data(frame, tmp_path / "clean", "P001", "lab")),
                                  frame, check_names=False)  # DeepLabCut's own files still read


def test_participants_named_by_the_cohorts_pattern_are_held_out_whole(tiny_cohort, tmp_path, caplog):
    """Two videos of one person (P001, P002) and one of another (P003), by the pattern in cohort.json: the label
    table says who is who, and by_participant tests on one person's every video, never on half of them."""
    import json
    import logging
    import shutil

    root = shutil.copytree(tiny_cohort, tmp_path / "data")
    manifest = root / "cohorts" / "tiny" / "cohort.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "participant_pattern": "^(P00(?=[12])|P003)"}))
    conf = {**SMALL, "split_mode": "by_participant", "frame_set_sizes": [14, 18]}  # either person held out fits
    run = stages.prepare_run(root, conf, "manual__people")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    table = pd.read_csv(run.layout.labels_file)
    assert dict(table[["video", "participant"]].drop_duplicates().values) == {"P001": "P00", "P002": "P00",
                                                                              "P003": "P003"}
    stages.validate_label_table(run)
    with caplog.at_level(logging.INFO, logger="posesweep.stages"):
        stages.make_frame_sets(run)
    for frame_set in stages.load_frame_sets(run.layout):
        tested = {video for video, _ in frame_set.test}
        assert tested in ({"P001", "P002"}, {"P003"}) and not tested & {video for video, _ in frame_set.train}
    assert "participants held out for testing: " in caplog.text and "(1 of 2)" in caplog.text


def test_by_participant_with_one_participant_stops_at_prepare_run_before_anyone_labels(tiny_cohort, tmp_path):
    """Three trials of one person (by the cohort's pattern): no one is left to test on. Said at prepare_run, before
    the lab labels for hours, not when the frame sets are built from the labels."""
    import json
    import shutil

    from posesweep.errors import FrameSetError

    root = shutil.copytree(tiny_cohort, tmp_path / "data")
    manifest = root / "cohorts" / "tiny" / "cohort.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "participant_pattern": "^P"}))
    with pytest.raises(FrameSetError) as failure:
        stages.prepare_run(root, {**SMALL, "split_mode": "by_participant"}, "manual__one_person")
    text = failure.value.explain()
    assert "split_mode by_participant needs at least 2 participants" in text and not failure.value.retryable
    assert f"File: {root / 'cohorts' / 'tiny'}" in text and "Found: 1 participant(s): P" in text
    assert "choose split_mode paper or fixed_test, or add participants' videos" in text
    assert not (root / "runs" / "tiny" / "manual__one_person" / "study_config.json").exists()
    stages.prepare_run(root, SMALL, "manual__one_person")  # the paper's split needs no second person


def _reaching_labels_through_validation(reaching_project, tmp_path, bodyparts: list[str], run_name: str,
                                        **conf):
    """The Reaching project with config.yaml listing ``bodyparts``, taken through labels and validation."""
    import shutil

    import yaml

    root = tmp_path / "data"
    cohort = shutil.copytree(reaching_project, root / "cohorts" / "reach", dirs_exist_ok=True)
    config = yaml.safe_load((cohort / "config.yaml").read_text())
    (cohort / "config.yaml").write_text(yaml.safe_dump({**config, "bodyparts": bodyparts}))
    run = stages.prepare_run(root, {"cohort": "reach", "frame_set_sizes": [20, 40], "train_fraction": 0.8,
                                    "max_missing_label_fraction": 0.8, "allow_random_init": True,
                                    "max_iterations": 20, "snapshot_interval": 10, **conf}, run_name)
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    return run, stages.validate_label_table(run)


def test_landmarks_taken_out_of_config_yaml_are_left_out_as_deeplabcut_leaves_them_out(reaching_project, tmp_path,
                                                                                         caplog):
    """A lab removed Tongue from its project's bodyparts; its label files still hold the column. DeepLabCut's
    create_training_dataset reindexes labels by config.yaml's bodyparts, so it trains without Tongue: so does the
    study, and the log says which landmark and which files."""
    with caplog.at_level(logging.WARNING, logger="posesweep.stages"):
        run, validated = _reaching_labels_through_validation(
            reaching_project, tmp_path, ["Hand", "Finger1", "Joystick1", "Joystick2"], "manual__dropped")
    assert validated["success"] and validated["labeled_frames"] == 55
    table = read_label_table(run.layout.validated_labels_file)
    assert sorted(table["landmark"].unique()) == ["Finger1", "Hand", "Joystick1", "Joystick2"]
    assert "labels of Tongue left out: not among the cohort's bodyparts (Hand, Finger1, Joystick1, Joystick2)" \
        in caplog.text and "reachingvideo1/CollectedData_Mackenzie.h5" in caplog.text


def test_a_bodypart_named_otherwise_in_config_yaml_than_in_the_labels_fails_naming_both(reaching_project, tmp_path):
    """A typo (Hnad) is not a landmark taken out: nothing is left out silently, and validation names both names."""
    with pytest.raises(LabelValidationError) as failed:
        _reaching_labels_through_validation(reaching_project, tmp_path,
                                            ["Hnad", "Finger1", "Tongue", "Joystick1", "Joystick2"], "manual__typo")
    paragraph = failed.value.explain()
    assert "landmark names differ from the cohort's bodyparts" in paragraph
    assert "found landmarks Hand not among the bodyparts, allowed Hnad, Finger1, Tongue, Joystick1, Joystick2" \
        in paragraph
    assert (f"the bodyparts in {tmp_path / 'data' / 'cohorts' / 'reach' / 'config.yaml'} list Hnad: if they are one "
            f"landmark, write Hand for Hnad there") in paragraph and "trigger a new run" in paragraph
    # leaving out the frames named would leave out all 55 (each has a Hand label), and the empty rest then failed
    # for want of any label at all, the name no longer said
    with pytest.raises(LabelValidationError) as excluding:
        _reaching_labels_through_validation(reaching_project, tmp_path, ["Hnad", "Finger1", "Tongue", "Joystick1",
                                                                         "Joystick2"], "manual__typo_excluding",
                                            invalid_labels="exclude_frames")
    paragraph = excluding.value.explain()
    assert "found landmarks Hand not among the bodyparts" in paragraph and "write Hand for Hnad there" in paragraph
    assert "invalid_labels=exclude_frames leaves out the frames named, and here every labeled frame is named (55)" \
        in paragraph


@pytest.mark.parametrize("cleared_from", ["label_frames", "train"])
def test_labels_corrected_after_the_training_data_was_made_are_refused_not_paired_with_old_networks(
        reaching_project, tmp_path, cleared_from):
    """A finished stage is skipped on a rerun. A lab that corrected a label after the run made its training data
    and cleared the run's tasks got the old training data (and networks) scored against the corrected labels: a
    report of networks that never saw the labels it shows. The rerun now fails at once, naming the frame and the
    lab's file, and says to trigger a new run; clearing only the later tasks is refused the same way."""

    from posesweep.errors import LabelsChangedSinceTrainingError
    from posesweep.labels import write_collected_data

    root, project = _reaching_cohort(reaching_project, tmp_path)
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    conf = {**REACH_CONF, "engine": "pytorch", "allow_random_init": True}
    run = stages.prepare_run(root, conf, "manual__relabelled")
    for stage in (stages.extract_cohort_frames, stages.label_frames, stages.validate_label_table,
                  stages.make_frame_sets, stages.prepare_training):
        stage(run)
    stages.prepare_training(run)  # a retry with the same labels goes on
    [frame_set] = stages.load_frame_sets(run.layout)
    video, image = frame_set.train[0]

    frame = read_collected_data(lab_file)  # the lab moves one landmark of one training frame by 3 px
    column = (frame.columns[0][0], "Hand", "x")
    row = frame.index.get_level_values(-1) == image
    frame.loc[row, column] = frame.loc[row, column].fillna(100.0) + 3
    write_collected_data(frame, lab_file.parent.parent, video, "Mackenzie")
    if cleared_from == "label_frames":
        for stage in (stages.label_frames, stages.validate_label_table, stages.make_frame_sets):
            stage(run)
        rerun = stages.prepare_training
    else:  # labels read again and validated, prepare_training left as it was
        for stage in (stages.label_frames, stages.validate_label_table):
            stage(run)
        rerun = lambda r: stages.train(r, 20)  # noqa: E731
    with pytest.raises(LabelsChangedSinceTrainingError) as failure:
        rerun(run)
    paragraph = failure.value.explain()
    assert "frame set 20: its labels changed after the run made its training data from them" in paragraph
    assert f"File: {lab_file}" in paragraph
    assert f"other labels: {video}/{image}" in paragraph and "Found: 1 frame with other labels" in paragraph
    assert "trigger a new run" in paragraph and not failure.value.retryable
    for later in (lambda r: stages.evaluate(r, 20), stages.analyse_and_report):
        with pytest.raises(LabelsChangedSinceTrainingError):
            later(run)


def test_landmarks_changed_in_the_cohort_while_its_run_is_under_way_are_the_next_runs(reaching_project, tmp_path,
                                                                                        caplog):
    """Each task opens its run afresh and read the cohort's landmarks as they are now. A lab that renamed a landmark
    in its project's config.yaml (or cohort.json) while a run trained had the run's next network train that head on
    no label at all, without a word; one that added a landmark had the next training crash (6 targets for 5 heads).
    The run now keeps the landmarks it was labelled with, and each stage says the change is the next run's."""
    from posesweep.run import Run

    root, project = _reaching_cohort(reaching_project, tmp_path)
    conf = {**REACH_CONF, "engine": "pytorch", "allow_random_init": True, "max_iterations": 2,
            "snapshot_interval": 1}
    run = stages.prepare_run(root, conf, "manual__under_way")
    for stage in (stages.extract_cohort_frames, stages.label_frames, stages.validate_label_table,
                  stages.make_frame_sets, stages.prepare_training):
        stage(run)
    landmarks = ("Hand", "Finger1", "Tongue", "Joystick1", "Joystick2")
    assert run.cohort.bodyparts == landmarks
    config = (project / "config.yaml").read_text()
    caplog.set_level(logging.WARNING)
    caplog.clear()
    (project / "config.yaml").write_text(config.replace("- Hand\n", "- Palm\n"))  # renamed for the next run
    renamed = Run.open(run.handle)
    assert renamed.cohort.bodyparts == landmarks
    [said] = [r.getMessage() for r in caplog.records if "this run keeps those it was labelled with" in r.getMessage()]
    assert f"{project / 'config.yaml'} now lists the landmarks Palm, Finger1, Tongue, Joystick1, Joystick2" in said
    assert f"{', '.join(landmarks)} (scorer Mackenzie)" in said and "the change is the next run's" in said

    (project / "config.yaml").write_text(config.replace("- Hand\n", "- Palm\n- Hand\n"))  # one more landmark
    grown = Run.open(run.handle)
    assert grown.cohort.bodyparts == landmarks
    trained = stages.train(grown, 20)  # crashed before: 6 targets for a network of 5 heads
    assert trained["snapshot_iterations"] == [1, 2]


def test_missing_label_shares_count_labeled_frames_and_a_half_label_as_missing():
    """A frame with no label at all is not a labeled frame; a landmark with an x and no y has no position; a
    landmark never labelled is missing everywhere (the label checks name it), and is no occlusion to allow for."""
    from posesweep.labels import missing_label_shares, to_dlc_frame
    from posesweep.validation import often_unlabelled_problem

    nan = float("nan")
    wide = pd.DataFrame({"Knee_x": [1, 2, nan, 4, 5], "Knee_y": [1, 2, nan, 4, 5],
                         "Toe_x": [1, nan, nan, 4, 5], "Toe_y": [1, nan, nan, nan, 5]})
    table = to_dlc_frame(wide, "P01", [f"img{i}.png" for i in range(5)], ["Knee", "Toe"], "lab")
    shares, labeled = missing_label_shares([table], ["Knee", "Toe", "Hip"])
    assert labeled == 4 and shares == {"Knee": 0.0, "Toe": 0.5, "Hip": 1.0}
    problem = often_unlabelled_problem(shares, labeled, 0.1, [Path("CollectedData_lab.h5")])
    assert problem.parameters == {"max_missing_label_fraction": 0.5} and "Hip" not in problem.what
    assert often_unlabelled_problem(shares, labeled, 0.5, [Path("CollectedData_lab.h5")]) is None  # 50% allowed
