"""Frontal-plane kinematics against hand-computed cases, the synthetic generator's geometry and its label noise."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from posesweep.config import FRONTAL_BODYPARTS
from posesweep.kinematics import FPPA_LANDMARKS as FPPA_ROLES
from posesweep.kinematics import fppa_deg, fppa_sd_deg, frame_kinematics, kinematic_errors, landmark_roles

VALGUS_11 = math.degrees(2 * math.atan(10 / 100))  # knee 10 px off a 200 px hip-ankle line, halfway down


def test_a_straight_leg_is_zero_and_a_known_valgus_knee_gives_its_angle():
    hip, ankle = np.array([100.0, 0.0]), np.array([100.0, 200.0])
    assert fppa_deg(hip, np.array([100.0, 100.0]), ankle, "right") == pytest.approx(0.0)
    # participant's right leg on the image's left: medial is toward +x
    assert fppa_deg(hip, np.array([110.0, 100.0]), ankle, "right") == pytest.approx(VALGUS_11)
    assert fppa_deg(hip, np.array([90.0, 100.0]), ankle, "right") == pytest.approx(-VALGUS_11)  # varus
    # left leg on the image's right: medial is toward -x
    assert fppa_deg(hip + [200, 0], np.array([290.0, 100.0]), ankle + [200, 0], "left") == pytest.approx(VALGUS_11)


def test_mirroring_the_image_and_swapping_sides_keeps_every_quantity():
    rng = np.random.default_rng(0)
    points = {"right_hip": [80, 100], "left_hip": [160, 100], "right_knee": [95, 200], "left_knee": [140, 205],
              "right_ankle": [85, 300], "left_ankle": [155, 298]}
    points = {k: np.array(v, float) + rng.normal(0, 2, (50, 2)) for k, v in points.items()}
    mirrored = {}
    for name, xy in points.items():
        side, joint = name.split("_", 1)
        mirrored[f"{'left' if side == 'right' else 'right'}_{joint}"] = np.column_stack([640 - xy[:, 0], xy[:, 1]])
    a, b = frame_kinematics(points), frame_kinematics(mirrored)
    np.testing.assert_allclose(a["right_fppa_deg"], b["left_fppa_deg"])
    np.testing.assert_allclose(a["left_fppa_deg"], b["right_fppa_deg"])
    np.testing.assert_allclose(a["knee_ankle_separation_ratio"], b["knee_ankle_separation_ratio"])
    assert (a["right_fppa_deg"] > 0).all() and (a["left_fppa_deg"] > 0).all()  # both knees medial here
    np.testing.assert_allclose(a["knee_ankle_separation_ratio"],
                               np.linalg.norm(points["right_knee"] - points["left_knee"], axis=1)
                               / np.linalg.norm(points["right_ankle"] - points["left_ankle"], axis=1))


def test_filmed_from_behind_the_mirrored_image_gives_the_same_angles_with_camera_view_back():
    rng = np.random.default_rng(1)
    front = {"right_hip": [80, 100], "left_hip": [160, 100], "right_knee": [95, 200], "left_knee": [140, 205],
             "right_ankle": [85, 300], "left_ankle": [155, 298]}  # both knees medial (valgus) from the front
    front = {k: np.array(v, float) + rng.normal(0, 2, (20, 2)) for k, v in front.items()}
    behind = {name: np.column_stack([640 - xy[:, 0], xy[:, 1]]) for name, xy in front.items()}  # same labels
    seen_from_front, seen_from_behind = frame_kinematics(front), frame_kinematics(behind, "back")
    for quantity, values in seen_from_front.items():
        np.testing.assert_allclose(seen_from_behind[quantity], values, err_msg=quantity)
    assert (seen_from_behind["right_fppa_deg"] > 0).all()  # still valgus
    assert (frame_kinematics(behind)["right_fppa_deg"] < 0).all()  # read as if from the front: varus, wrongly


def _geometric_fppa(hip, knee, ankle, medial_x_sign):
    """The angle by plane geometry: perpendicular offset d of the knee from the hip-ankle line, a and b the
    distances from hip and ankle to its foot; FPPA = atan(d/a) + atan(d/b), signed by the medial side."""
    axis = (ankle - hip) / np.linalg.norm(ankle - hip)
    along = np.dot(knee - hip, axis)
    offset = knee - hip - along * axis
    d = np.linalg.norm(offset) * np.sign(offset[0] * medial_x_sign)
    return math.degrees(math.atan2(d, along) + math.atan2(d, np.linalg.norm(ankle - hip) - along))


@pytest.mark.parametrize("valgus", [0.0, 0.2, 0.45])
def test_the_synthetic_generators_knees_give_their_geometric_angle(valgus):
    from dataclasses import replace

    from posesweep.synthetic import _draw_participant, landmark_positions

    participant = replace(_draw_participant(np.random.default_rng(4), 0), valgus=valgus)
    for t in (0.5, 0.6, 0.7):  # landing: knees flexing, feet on the floor
        points = {k: np.array(v) for k, v in landmark_positions(participant, t, 1920, 1080).items()}
        for side, medial_x_sign in (("right", 1.0), ("left", -1.0)):
            ours = float(fppa_deg(points[f"{side}_hip"], points[f"{side}_knee"], points[f"{side}_ankle"], side))
            geometric = _geometric_fppa(points[f"{side}_hip"], points[f"{side}_knee"], points[f"{side}_ankle"],
                                        medial_x_sign)
            assert ours == pytest.approx(geometric, abs=1e-9)
            if valgus == 0:
                assert ours == pytest.approx(0.0, abs=1e-9)  # the generator keeps such a knee on the line
            else:
                assert ours > 1.0  # the generator's valgus pushes the knee medially


def test_fppa_error_spread_from_the_simulated_labelers_noise_matches_its_propagation(tmp_path):
    """Labels = truth + the simulated labeler's noise: the FPPA error's SD is what the noise predicts."""
    from posesweep.synthetic import _draw_participant, label_noise_sd_px, landmark_positions, simulate_labels

    rng = np.random.default_rng(11)
    rows = []
    for frame_index in range(600):
        participant = _draw_participant(rng, frame_index % 12)
        truth = landmark_positions(participant, rng.uniform(0.45, 0.8), 1920, 1080)
        rows.append({"frame_index": frame_index, **{f"{k}_{c}": v[i] for k, v in truth.items()
                                                    for i, c in enumerate("xy")}})
    truth = pd.DataFrame(rows)
    truth_csv = tmp_path / "P001.truth.csv"
    truth.to_csv(truth_csv, index=False)
    labels = simulate_labels(truth_csv, list(range(600)), 1080, seed=3)
    sd = label_noise_sd_px(1080)
    for side in ("right", "left"):
        joints = [f"{side}_{j}" for j in ("hip", "knee", "ankle")]
        true_xy = [truth[[f"{j}_x", f"{j}_y"]].to_numpy() for j in joints]
        labelled_xy = [labels[[f"{j}_x", f"{j}_y"]].to_numpy() for j in joints]
        error = fppa_deg(*labelled_xy, side) - fppa_deg(*true_xy, side)
        predicted = fppa_sd_deg(*true_xy, side, tuple(sd[j] for j in joints))
        assert np.std(error) == pytest.approx(np.sqrt(np.mean(predicted ** 2)), rel=0.1)
        assert abs(np.mean(error)) < 3 * np.std(error) / np.sqrt(len(error))  # unbiased
    assert set(FRONTAL_BODYPARTS) <= {c[:-2] for c in labels.columns}


def test_kinematic_errors_per_frame_from_predicted_and_labelled_landmarks():
    rows = []
    label = {"right_hip": (100, 0), "right_knee": (100, 100), "right_ankle": (100, 200),
             "left_hip": (300, 0), "left_knee": (300, 100), "left_ankle": (300, 200)}
    for landmark, (x, y) in label.items():
        shift = 10.0 if landmark == "right_knee" else 0.0  # the network puts the right knee 10 px medial
        rows.append({"frame_set_size": 10, "snapshot_iteration": 50, "split": "test", "video": "P1",
                     "image": "img1.png", "landmark": landmark, "x_label_px": x, "y_label_px": y,
                     "x_pred_px": x + shift, "y_pred_px": y})
    table = kinematic_errors(pd.DataFrame(rows)).set_index("quantity")
    assert table.loc["right_fppa_deg", "labelled"] == pytest.approx(0.0)
    assert table.loc["right_fppa_deg", "error"] == pytest.approx(VALGUS_11)
    assert table.loc["left_fppa_deg", "abs_error"] == pytest.approx(0.0)
    assert table.loc["knee_ankle_separation_ratio", "predicted"] == pytest.approx(190 / 200)
    assert table.loc["hip_ankle_width_ratio", "error"] == pytest.approx(0.0)
    assert set(table["unit"]) == {"deg", "ratio"}


def test_a_network_putting_both_ankles_on_one_pixel_has_no_separation_ratio_there_not_an_infinite_one():
    import warnings

    rows = []
    label = {"right_hip": (100, 0), "right_knee": (100, 100), "right_ankle": (100, 200),
             "left_hip": (300, 0), "left_knee": (300, 100), "left_ankle": (300, 200)}
    for image, ankles_together in (("img1.png", True), ("img2.png", False)):
        for landmark, (x, y) in label.items():
            x_pred = 200 if ankles_together and landmark.endswith("_ankle") else x
            rows.append({"frame_set_size": 10, "snapshot_iteration": 50, "split": "test", "video": "P1",
                         "image": image, "landmark": landmark, "x_label_px": x, "y_label_px": y,
                         "x_pred_px": x_pred, "y_pred_px": y})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning in the task log either
        table = kinematic_errors(pd.DataFrame(rows))
    assert np.isfinite(table[["labelled", "predicted", "error"]].to_numpy()).all()
    separation = table[table["quantity"] == "knee_ankle_separation_ratio"]
    assert separation["image"].tolist() == ["img2.png"]  # left out only where undefined
    width = table[(table["quantity"] == "hip_ankle_width_ratio") & (table["image"] == "img1.png")]
    assert width["predicted"].tolist() == [0.0]  # ankles together: a width ratio of 0, which is defined


LAB_NAMES = {"right_hip": "R_ASIS", "right_knee": "RKnee", "right_ankle": "ankle_R", "left_hip": "LeftHip",
             "left_knee": "knee l", "left_ankle": "LAnkle"}


def test_landmarks_numbered_1_and_2_as_deeplabcuts_human_model_names_them_are_proposed_not_taken_as_sides():
    """DeepLabCut's human model (create_pretrained_project's full_human) lists ankle1, knee1, hip1, hip2, knee2,
    ankle2 in MPII's order, 1 the right. A lab that started from it was told only the generic example (RASIS,
    RKnee, ...). It is now proposed the line for its own names; not taken by itself (the other way round, every
    FPPA changes sign): declared, the left/right label check tells whether the sides lie right."""
    import json
    import re

    full_human = ["ankle1", "knee1", "hip1", "hip2", "knee2", "ankle2", "wrist1", "elbow1", "shoulder1",
                  "shoulder2", "elbow2", "wrist2", "chin", "forehead"]
    roles, why = landmark_roles(full_human)
    assert roles is None
    assert "hip1, knee1, ankle1 and hip2, knee2, ankle2 are numbered, not named by side; where 1 is the " \
           "participant's right, as in DeepLabCut's human model (MPII's order), say so in cohort.json" in why
    proposed = json.loads("{" + re.search(r'("kinematic_landmarks": \{.*?\})', why).group(1) + "}")
    assert landmark_roles(full_human, proposed["kinematic_landmarks"])[0] == {
        "right_hip": "hip1", "right_knee": "knee1", "right_ankle": "ankle1",
        "left_hip": "hip2", "left_knee": "knee2", "left_ankle": "ankle2"}
    assert "numbered" not in landmark_roles(["hip1", "knee1", "Knee_1", "ankle1", "hip2", "knee2", "ankle2"])[1]


def test_prepare_run_says_numbered_landmarks_need_their_sides_before_anything_trains(reaching_project, tmp_path,
                                                                                       caplog):
    """Said where the lab can still act on it: declared, the numbered landmarks get the frontal-plane label
    checks too, not only the report's knee angles; once declared, nothing more is said."""
    import json
    import logging
    import shutil

    import yaml

    from posesweep import stages

    root = tmp_path / "data"
    project = shutil.copytree(reaching_project, root / "cohorts" / "human")
    numbered = dict(zip(["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"],
                        ["hip1", "knee1", "ankle1", "hip2", "knee2"]))
    config = yaml.safe_load((project / "config.yaml").read_text())
    (project / "config.yaml").write_text(yaml.safe_dump({**config, "bodyparts": [*numbered.values(), "ankle2"]}))
    lab_file = project / "labeled-data" / "reachingvideo1" / "CollectedData_Mackenzie.h5"
    pd.read_hdf(lab_file).rename(columns=numbered, level="bodyparts").to_hdf(lab_file, key="df_with_missing",
                                                                             mode="w")
    lab_file.with_suffix(".csv").unlink()
    params = {"cohort": "human", "frame_set_sizes": [20, 40], "train_fraction": 0.8, "allow_random_init": True,
              "max_missing_label_fraction": 0.8, "max_iterations": 20, "snapshot_interval": 10}
    with caplog.at_level(logging.WARNING, logger="posesweep.stages"):
        stages.prepare_run(root, params, "manual__numbered")
    assert "knee angles and the frontal-plane label checks: hip1, knee1, ankle1 and hip2, knee2, ankle2 are " \
           "numbered" in caplog.text
    caplog.clear()
    (project / "cohort.json").write_text(json.dumps({"kinematic_landmarks": {
        "right_hip": "hip1", "right_knee": "knee1", "right_ankle": "ankle1", "left_hip": "hip2", "left_knee": "knee2",
        "left_ankle": "ankle2"}}))
    with caplog.at_level(logging.WARNING, logger="posesweep.stages"):
        stages.prepare_run(root, params, "manual__declared")
    assert "numbered" not in caplog.text


def test_a_labs_own_landmark_names_are_recognised_only_where_each_role_has_one():
    assert landmark_roles(FRONTAL_BODYPARTS) == ({r: r for r in LAB_NAMES}, "the paper's landmark names")
    roles, how = landmark_roles([*LAB_NAMES.values(), "RToe", "RKneeLat"])  # more landmarks are fine
    assert roles == LAB_NAMES and how == "recognised by their names"

    roles, how = landmark_roles([*LAB_NAMES.values(), "right_knee_"])  # two names say "right knee"
    assert roles == {role: name for role, name in LAB_NAMES.items() if role.startswith("left_")}
    assert how == "recognised by their names (right side left out: RKnee and right_knee_ could each be the right knee)"
    roles, why = landmark_roles([n for r, n in LAB_NAMES.items() if r not in ("right_knee", "left_knee")]
                                + ["RKneeLat", "RKneeMed", "LKneeLat"])
    assert roles is None and why.startswith("no landmark is named as the right knee; no landmark is named as the "
                                            "left knee")
    assert '"kinematic_landmarks": {"right_hip": "RASIS"' in why  # and how to name them
    left_leg = {role: name for role, name in LAB_NAMES.items() if role.startswith("left_")}
    roles, how = landmark_roles([*left_leg.values(), "RKneeLat", "RAnkle"])  # one side is enough
    assert roles == left_leg
    assert how == "recognised by their names (right side left out: no landmark is named as the right hip, right knee)"
    plug_in_gait = ["LASI", "RASI", "LKNE", "LTHI", "LANK", "LHEE", "LTOE", "RKNE", "RTIB", "RANK", "RHEE", "RTOE"]
    assert landmark_roles(plug_in_gait) == ({"right_hip": "RASI", "right_knee": "RKNE", "right_ankle": "RANK",
                                             "left_hip": "LASI", "left_knee": "LKNE", "left_ankle": "LANK"},
                                            "recognised by their names")  # Vicon's marker names, as mocap labs use
    joint_centres = ["RHJC", "RKJC", "RAJC", "L_HJC", "L_KJC", "L_AJC", "RTOE"]  # Visual3D's joint centres
    assert landmark_roles(joint_centres)[0] == {"right_hip": "RHJC", "right_knee": "RKJC", "right_ankle": "RAJC",
                                                "left_hip": "L_HJC", "left_knee": "L_KJC", "left_ankle": "L_AJC"}
    declared = {**LAB_NAMES, "right_knee": "RKneeLat"}
    assert landmark_roles(["RKneeLat", *LAB_NAMES.values()], declared) == (declared, "named in cohort.json "
                                                                                     "(kinematic_landmarks)")


def _labels(names: dict[str, str], hips_apart_px: float, frames: int = 6) -> pd.DataFrame:
    """Tidy labels of an upright person, thighs 100 px long, the hips ``hips_apart_px`` apart across the image
    (about 50 from the front; a few px from the side, either way round as the pelvis turns)."""
    rng = np.random.default_rng(0)
    rows = []
    for frame in range(frames):
        sign = 1 if hips_apart_px > 20 or frame % 2 else -1
        for side, x in (("right", 300 - sign * hips_apart_px / 2), ("left", 300 + sign * hips_apart_px / 2)):
            for joint, y in (("hip", 200), ("knee", 300), ("ankle", 400)):
                rows.append({"video": "P01", "image": f"img{frame:03d}.png", "landmark": names[f"{side}_{joint}"],
                             "x_px": x + rng.normal(0, 1), "y_px": y + rng.normal(0, 1)})
    return pd.DataFrame(rows)


def test_recognised_names_on_labels_filmed_from_the_side_give_no_frontal_angles_unless_cohort_json_says_front():
    from posesweep.cohort import Cohort
    from posesweep.stages import knee_angle_landmarks
    from posesweep.validation import frontal_check_roles

    def cohort(bodyparts=tuple(LAB_NAMES.values()), **said):
        return Cohort("gait", Path("/lab/gait"), (), bodyparts, "lab", "dlc_project", **said)

    front, side = _labels(LAB_NAMES, hips_apart_px=50), _labels(LAB_NAMES, hips_apart_px=4)
    assert knee_angle_landmarks(cohort(), front) == (LAB_NAMES, "recognised by their names")
    roles, why = knee_angle_landmarks(cohort(), side)
    assert roles is None and why.startswith("the hips (R_ASIS, LeftHip) are labelled a median 0.0")
    assert 'this looks filmed from the side' in why and '"camera_view": "front"' in why
    # what cohort.json says is believed: the camera, or the landmarks (a lab naming them knows its set-up)
    assert knee_angle_landmarks(cohort(camera_view_declared=True), side)[0] == LAB_NAMES
    assert knee_angle_landmarks(cohort(kinematic_landmarks=LAB_NAMES), side)[0] == LAB_NAMES
    roles, why = knee_angle_landmarks(cohort(camera_view="side", camera_view_declared=True), front)
    assert roles is None and "camera_view side" in why and "sagittal plane" in why
    assert frontal_check_roles(FRONTAL_BODYPARTS, None, "side")[0] is None
    one_leg = {role: name for role, name in LAB_NAMES.items() if role.startswith("right_")}
    right_only = side[side["landmark"].isin(one_leg.values())]  # a one-legged task: no hips to compare
    assert knee_angle_landmarks(cohort(tuple(one_leg.values())), right_only)[0] == one_leg


def test_kinematic_errors_from_a_labs_own_names_equal_those_from_the_papers():
    from report_input import error_table

    papers = error_table(landmarks=[*FPPA_ROLES, "right_medial_foot"])
    labs = papers.assign(landmark=papers["landmark"].replace(LAB_NAMES))
    expected = kinematic_errors(papers)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(kinematic_errors(labs, LAB_NAMES), expected)


def test_a_one_legged_cohort_gets_that_knees_angle_and_no_two_sided_ratio():
    from report_input import error_table

    papers = error_table(landmarks=list(FPPA_ROLES))
    right_leg = {role: name for role, name in LAB_NAMES.items() if role.startswith("right_")}
    labs = papers[papers["landmark"].isin(right_leg)].assign(landmark=lambda t: t["landmark"].replace(right_leg))
    table = kinematic_errors(labs, right_leg)
    assert set(table["quantity"]) == {"right_fppa_deg"}
    both = kinematic_errors(papers)
    pd.testing.assert_frame_equal(table, both[both["quantity"] == "right_fppa_deg"].reset_index(drop=True))


def test_a_landmark_labelled_nowhere_gives_no_kinematics_rather_than_a_crash():
    from report_input import error_table

    errors = error_table(landmarks=list(FPPA_ROLES))
    errors.loc[errors["landmark"].str.endswith("_ankle"), ["x_label_px", "y_label_px"]] = float("nan")
    table = kinematic_errors(errors)
    assert len(table) == 0 and "abs_error" in table.columns


def test_a_landmark_missing_on_one_side_costs_only_that_sides_quantities():
    from report_input import error_table

    errors = error_table(landmarks=list(FPPA_ROLES))
    full = kinematic_errors(errors)
    occluded = errors["landmark"].eq("left_ankle") & errors["image"].eq("img01.png")  # one frame's left ankle
    errors.loc[occluded, ["x_label_px", "y_label_px"]] = float("nan")
    table = kinematic_errors(errors)
    for quantity in full["quantity"].unique():
        lost = full[full["quantity"] == quantity]["image"].eq("img01.png").sum()
        kept = (table["quantity"] == quantity).sum()
        assert kept == (len(full[full["quantity"] == quantity]) - lost if quantity != "right_fppa_deg" else
                        len(full[full["quantity"] == quantity]))
    right = table[table["quantity"] == "right_fppa_deg"].reset_index(drop=True)
    pd.testing.assert_frame_equal(right, full[full["quantity"] == "right_fppa_deg"].reset_index(drop=True))

    errors.loc[errors["landmark"] == "left_ankle", ["x_label_px", "y_label_px"]] = float("nan")  # never labelled
    assert set(kinematic_errors(errors)["quantity"]) == {"right_fppa_deg"}


def test_a_side_cameras_videos_named_in_cohort_json_give_no_knee_angles_and_the_front_videos_do():
    """A lab films each participant from the front and from the side, in one project: the side camera's videos
    (cohort.json side_view_videos) train and score the networks, but the knee angles come from the front's."""
    from report_input import error_table

    from posesweep.cohort import Cohort
    from posesweep.report.render import kinematic_landmark_sentences
    from posesweep.stages import knee_kinematics

    errors = error_table(landmarks=list(FPPA_ROLES))
    labels = errors.assign(x_px=errors["x_label_px"], y_px=errors["y_label_px"]).drop_duplicates(
        ["video", "image", "landmark"])[["video", "image", "landmark", "x_px", "y_px"]]

    def cohort(pattern):
        return Cohort("knee", Path("/lab/knee"), (), tuple(FPPA_ROLES), "lab", "dlc_project",
                      camera_view_declared=True, side_view_pattern=pattern)

    kinematics, said = knee_kinematics(cohort("P002"), labels, errors)
    everyone = kinematic_errors(errors)
    assert set(everyone["video"]) == {"P001", "P002"} and said["side_view_videos"] == ["P002"]
    pd.testing.assert_frame_equal(kinematics.reset_index(drop=True),
                                  everyone[everyone["video"] == "P001"].reset_index(drop=True))
    sentence = kinematic_landmark_sentences(said, errors)["kinematic_landmarks_sentence"]
    assert "the 1 side-camera video(s) (cohort.json side_view_videos: P002) train and score" in sentence
    kinematics, said = knee_kinematics(cohort("^P00"), labels, errors)  # every video from the side: no angles
    assert kinematics is None and said["roles"] is None and "sagittal plane" in said["how"]


def test_a_camera_behind_named_in_cohort_json_gives_the_knee_angles_the_front_camera_would():
    """A lab films some landings from behind (cohort.json back_view_videos): those videos' labels and predictions
    are the front's mirrored, and their knee angles come out as the front's, valgus still positive; the report
    names them."""
    from report_input import error_table

    from posesweep.cohort import Cohort
    from posesweep.report.render import kinematic_landmark_sentences
    from posesweep.stages import knee_kinematics

    errors = error_table(landmarks=list(FPPA_ROLES))
    mirrored = errors.copy()
    behind = mirrored["video"] == "P002"
    for column in ("x_label_px", "x_pred_px"):
        mirrored.loc[behind, column] = 1920 - mirrored.loc[behind, column]
    labels = mirrored.assign(x_px=mirrored["x_label_px"], y_px=mirrored["y_label_px"]).drop_duplicates(
        ["video", "image", "landmark"])[["video", "image", "landmark", "x_px", "y_px"]]
    cohort = Cohort("knee", Path("/lab/knee"), (), tuple(FPPA_ROLES), "lab", "dlc_project",
                    camera_view_declared=True, back_view_pattern="^P002$")
    kinematics, said = knee_kinematics(cohort, labels, mirrored)
    keys = ["frame_set_size", "snapshot_iteration", "split", "video", "image", "quantity"]
    expected = kinematic_errors(errors).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(kinematics.sort_values(keys).reset_index(drop=True), expected)
    read_from_the_front = kinematic_errors(mirrored).sort_values(keys).reset_index(drop=True)
    fppa = (read_from_the_front["video"] == "P002") & read_from_the_front["quantity"].str.endswith("fppa_deg")
    assert fppa.any() and np.allclose(read_from_the_front.loc[fppa, "labelled"], -expected.loc[fppa, "labelled"])
    assert said["back_view_videos"] == ["P002"]
    sentence = kinematic_landmark_sentences(said, mirrored)["kinematic_landmarks_sentence"]
    assert "Filmed from behind in 1 video(s) (cohort.json back_view_videos: P002)" in sentence
