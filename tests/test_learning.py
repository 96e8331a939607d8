"""No answer from networks that learned nothing; the paper's rows only for the paper's landmarks; imported frames
described as imported."""

import json
import logging

import pandas as pd
from markupsafe import escape
import pytest
from report_input import context, error_table

from posesweep.config import FRONTAL_BODYPARTS
from posesweep.layout import RunLayout
from posesweep.learning import (LEARNED_ERROR_RATIO, landmarks_without_training_labels, learning_check,
                                mean_pose_errors)
from posesweep.report import write_report
from posesweep.stats import analyse


def _row(split, image, x, y, error, iteration=100):
    return {"frame_set_size": 10, "snapshot_iteration": iteration, "split": split, "video": "P001", "image": image,
            "landmark": "knee", "x_label_px": x, "y_label_px": y, "error_px": error}


def test_the_mean_training_pose_and_the_rule_by_hand():
    # training labels at x = 0 and 10: the mean pose is (5, 0); the test label (5, 10) is 10 px from it
    errors = pd.DataFrame([_row("train", "a.png", 0, 0, 1.0), _row("train", "b.png", 10, 0, 1.0),
                           _row("test", "c.png", 5, 10, 2.0), _row("test", "c.png", 5, 10, 8.0, iteration=50)])
    assert mean_pose_errors(errors)["mean_pose_error_px"].tolist() == [10.0]
    late, early = learning_check(errors, 100).iloc[0], learning_check(errors, 50).iloc[0]
    assert late["error_ratio"] == pytest.approx(0.2) and bool(late["learned"])
    assert early["error_ratio"] == pytest.approx(0.8) and not bool(early["learned"])
    assert LEARNED_ERROR_RATIO == 0.5
    more = pd.concat([errors, pd.DataFrame([_row("test", "d.png", 5, 10, 2.0)])])  # two landmarks' rows, one frame
    assert learning_check(errors, 100)["test_frames"].tolist() == [1]
    assert learning_check(more, 100)["test_frames"].tolist() == [2]


def test_a_network_that_did_not_learn_is_told_to_train_longer_only_while_its_test_error_still_falls():
    from posesweep.report.tables import no_recommendation

    def errors(test_error_before: float, test_error_last: float) -> pd.DataFrame:
        # the mean training pose is (5, 0), 10 px from the test label: both snapshots are above the line (5 px)
        return pd.DataFrame([_row("train", "a.png", 0, 0, 1.0, iteration=5000),
                             _row("train", "b.png", 10, 0, 1.0, iteration=5000),
                             _row("test", "c.png", 5, 10, test_error_before, iteration=2500),
                             _row("test", "c.png", 5, 10, test_error_last, iteration=5000)])

    falling = errors(8.0, 6.0)
    said = no_recommendation(learning_check(falling, 5000), falling)
    assert said.startswith("No recommendation: 1 of 1 networks did not learn (frame sets 10: test error 6.0 px "
                           "against 10.0 px for the mean training pose at 5,000 iterations). ")
    assert "Test error still falling at the last snapshot (frame set 10: 8.0 px at 2,500, 6.0 px at 5,000 " \
           "iterations): train longer (a larger max_iterations)" in said
    assert "no longer falling" not in said and said.endswith("before reading any number below as an answer")
    flat = errors(6.1, 6.0)  # under 5% lower: it has stopped learning, more of the same will not help
    said = no_recommendation(learning_check(flat, 5000), flat)
    assert "Test error no longer falling (frame set 10: 6.1 px at 2,500, 6.0 px at 5,000 iterations): more " \
           "iterations alone are unlikely to help; check the labels" in said and "still falling" not in said
    # before 1,000 iterations a test error that stopped falling is no evidence: 60 iterations from random weights
    early = flat.assign(snapshot_iteration=flat["snapshot_iteration"] // 2500 * 30)  # snapshots at 30 and 60
    said = no_recommendation(learning_check(early, 60), early)
    assert "Test error not falling (frame set 10: 6.1 px at 30, 6.0 px at 60 iterations), but 60 iterations are " \
           "too few to tell whether more would help" in said and "train longer (a larger max_iterations)" in said
    assert "unlikely to help" not in said
    one_snapshot = errors(8.0, 6.0).query("snapshot_iteration == 5000 or split == 'train'")
    assert no_recommendation(learning_check(one_snapshot, 5000), one_snapshot).endswith(
        "Train longer, from pretrained weights, or check the labels before reading any number below as an answer")


def _report(tmp_path, errors, **extra):
    layout = RunLayout.create(tmp_path, "tiny", "run")
    page = write_report(layout, analyse(errors), errors, {**context(), **extra}).read_text()
    return page, json.loads(layout.summary_file.read_text())


def _said(summary: dict, caplog) -> list[tuple[int, str]]:
    """What statistics_and_report's log says of the answer (stages.say_the_answer)."""
    from posesweep.stages import say_the_answer

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="posesweep.stages"):
        say_the_answer(summary)
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_networks_that_did_not_learn_get_no_recommendation(tmp_path, caplog):
    errors = error_table()
    errors["error_px"] *= 6  # predictions collapsed far from the labels, as from a few random-init iterations
    errors["error_mm"] = errors["error_px"] / 1.25
    page, summary = _report(tmp_path, errors)
    assert summary["networks_learned"] is False and summary["recommendation_made"] is False
    assert summary["recommendation"].startswith("No recommendation: 2 of 2 networks did not learn")
    assert "stop improving" not in summary["recommendation"] and "frames give" not in summary["recommendation"]
    assert "The networks did not learn." in page and "<b>Recommendation:</b>" not in page
    assert str(escape(summary["learning_rule"])) in page  # the rule, stated where the answer is withheld
    assert all(not row["learned"] for row in summary["learning_check"])
    # the log says so too, as a warning after the plateaus it logged (found in any errors, learned or not)
    [(level, said)] = _said(summary, caplog)
    assert level == logging.WARNING and said.startswith("No recommendation: 2 of 2 networks did not learn")
    assert said.endswith(summary["learning_rule"])
    _, with_networks = _report(tmp_path / "n", errors, networks=_networks(errors, 200))
    assert with_networks["network_to_use"] is None and with_networks["analyze_videos"] is None


def _networks(errors, iteration):
    return [{"frame_set_size": int(size), "snapshot_iteration": iteration, "shuffle": i + 1, "trainingsetindex": 0,
             "snapshotindex": 1, "snapshot": f"/p/dlc-models/shuffle{i + 1}/train/snapshot-{iteration}"}
            for i, size in enumerate(sorted(errors["frame_set_size"].unique()))]


def test_networks_that_learned_get_the_studys_answer_and_the_network_to_use(tmp_path, caplog):
    errors = error_table()
    chosen = analyse(errors)["chosen_iteration"]
    # the smaller set best
    errors.loc[(errors["frame_set_size"] == 10) & (errors["split"] == "test"), "error_px"] *= 0.1
    page, summary = _report(tmp_path, errors, networks=_networks(errors, chosen))
    assert summary["networks_learned"] is True and summary["recommendation_made"] is True
    assert "<b>Recommendation:</b>" in page and "did not learn" not in page
    # the network with the lowest test error at the chosen iteration, and DeepLabCut's call for it
    assert summary["network_to_use"]["frame_set_size"] == 10 and summary["chosen_iteration"] == chosen
    assert summary["analyze_videos"].endswith(", shuffle=1, trainingsetindex=0)")
    assert summary["analyze_videos"].startswith(f"# in {tmp_path}/runs/tiny/run/project/config.yaml: snapshotindex: 1")
    assert str(escape(summary["analyze_videos"])) in page
    assert _said(summary, caplog) == [(logging.INFO, f"the study's answer: {summary['recommendation']}")]


def test_a_landmark_labelled_in_test_frames_only_is_left_out_of_the_learning_check_and_named(tmp_path):
    """A landmark out of sight in most frames (the Reaching project's tongue: 73% of its frames) can be labelled in
    none of a small frame set's training frames and in some of its test frames. The network was never shown it and
    the mean training pose has no place for it: counted in the network's error alone, its tens of pixels made a
    network that learned every landmark it was shown read as one that learned nothing, and withheld the answer."""
    errors = error_table()
    hidden = (errors["landmark"] == "right_ankle") & (errors["frame_set_size"] == 10)
    errors.loc[hidden & (errors["split"] == "train"), ["x_label_px", "y_label_px", "error_px", "error_mm"]] = None
    errors.loc[hidden & (errors["split"] == "test"), "error_px"] = 400.0  # never shown: found nowhere near
    errors["error_mm"] = errors["error_px"] / 1.25
    assert landmarks_without_training_labels(errors) == {10: ["right_ankle"]}
    chosen = analyse(errors)["chosen_iteration"]
    judged = learning_check(errors, chosen).set_index("frame_set_size")
    shown = errors[~(hidden | ((errors["landmark"] == "right_ankle") & (errors["frame_set_size"] == 20)))]
    assert judged.loc[10, "test_error_px"] == pytest.approx(
        learning_check(shown, chosen).set_index("frame_set_size").loc[10, "test_error_px"])  # over the two knees
    assert judged["learned"].all()
    page, summary = _report(tmp_path, errors)
    assert summary["networks_learned"] is True and summary["landmarks_without_training_labels"] == {
        "10": ["right_ankle"]}
    assert "Left out of this check, labelled in test frames only:\nright_ankle in frame set 10. No training" in page
    _, everywhere = _report(tmp_path / "all", error_table())
    assert everywhere["landmarks_without_training_labels"] == {}

def test_the_papers_rows_only_for_the_papers_landmarks(tmp_path):
    page, _ = _report(tmp_path / "frontal", error_table(landmarks=list(FRONTAL_BODYPARTS)))
    assert "knee test error (px)" in page and "this cohort's landmarks are others" not in page
    page, _ = _report(tmp_path / "reaching", error_table(landmarks=["Hand", "Finger1", "Tongue"]))
    assert "knee test error (px)" not in page and "this cohort's landmarks are others" in page


def test_an_imported_project_is_described_as_imported_and_an_unmatched_video_is_named(reaching_project, tmp_path):
    from posesweep.cohort import (FOLDERS_NOT_IN_VIDEO_SETS, VIDEO_SETS_WITHOUT_A_VIDEO, VIDEOS_NEVER_LABELED,
                                  load_cohort, unmatched_videos)

    config = reaching_project / "config.yaml"  # DeepLabCut's example holds a placeholder: here a video beside it
    config.write_text(config.read_text().replace("video_sets:\n", "video_sets:\n  C:\\lab\\videos\\reach2.AVI:\n"
                                                                   "    crop: 0, 832, 0, 747\n"))
    unmatched = unmatched_videos(load_cohort(reaching_project))
    assert unmatched == {VIDEOS_NEVER_LABELED: ["reach2"],
                         VIDEO_SETS_WITHOUT_A_VIDEO: ["WILL BE AUTOMATICALLY UPDATED BY DEMO CODE"],
                         FOLDERS_NOT_IN_VIDEO_SETS: ["reachingvideo1"],
                         "labeled-data folders left out (no CollectedData_Mackenzie file)": []}
    # each says what it means for the study: DeepLabCut itself would train on no folder video_sets leaves out
    assert "(no labeled frames: not in the study)" in VIDEOS_NEVER_LABELED
    assert "studied all the same" in FOLDERS_NOT_IN_VIDEO_SETS
    page, _ = _report(tmp_path, error_table(), frames_source="imported", unmatched=unmatched)
    assert "imported from an existing DeepLabCut project" in page and "picked by k-means from" not in page
    assert f"<div class='warn'><b>{escape(FOLDERS_NOT_IN_VIDEO_SETS)}:</b> reachingvideo1" in page
    assert f"<p><b>{escape(VIDEOS_NEVER_LABELED)}:</b> reach2</p>" in page
    assert f"<p><b>{escape(VIDEO_SETS_WITHOUT_A_VIDEO)}:</b> WILL BE AUTOMATICALLY UPDATED BY DEMO CODE</p>" in page
    # the TensorFlow engine's random weights are BatchNorm-calibrated; the PyTorch engine's are its model's own
    assert "started from random weights (BatchNorm-calibrated)." in page
    pytorch, _ = _report(tmp_path / "pytorch", error_table(), study_config={**context()["study_config"],
                                                                            "engine": "pytorch"})
    assert "started from random weights." in pytorch and "BatchNorm-calibrated" not in pytorch


def test_the_report_shows_fppa_error_by_iterations_and_frame_set_size(tmp_path):
    from posesweep.kinematics import kinematic_errors
    from posesweep.stats import analyse_fppa, icc_absolute_agreement

    errors = error_table(landmarks=list(FRONTAL_BODYPARTS))
    kinematics = kinematic_errors(errors)
    layout = RunLayout.create(tmp_path, "tiny", "run")
    networks = _networks(errors, analyse(errors)["chosen_iteration"])
    page = write_report(layout, analyse(errors), errors, {**context(), "networks": networks}, kinematics,
                        analyse_fppa(kinematics)).read_text()
    summary = json.loads(layout.summary_file.read_text())
    assert "Frontal-plane knee kinematics" in page and "figure_fppa_error" in page
    chosen = summary["chosen_iteration"]
    # the network to use, with what it gets wrong in the knee angle on its own test frames
    best = summary["network_to_use"]
    own = kinematics[(kinematics["frame_set_size"] == best["frame_set_size"]) & (kinematics["split"] == "test") &
                     (kinematics["snapshot_iteration"] == chosen) & kinematics["quantity"].str.endswith("fppa_deg")]
    assert best["test_fppa_error_deg"] == pytest.approx(own["abs_error"].mean())
    assert f"knee FPPA\n{best['test_fppa_error_deg']:.1f} deg, mean absolute over its test frames" in page
    # and how far its knee angles stray from the labels', against how much they vary (test frames, both knees)
    own_both = own["predicted"] - own["labelled"]
    low, high = best["test_fppa_limits_of_agreement_deg"]
    assert (low, high) == pytest.approx((own_both.mean() - 1.96 * own_both.std(ddof=1),
                                         own_both.mean() + 1.96 * own_both.std(ddof=1)))
    assert best["test_fppa_labelled_sd_deg"] == pytest.approx(own["labelled"].std(ddof=1))
    icc, low_icc, high_icc = icc_absolute_agreement(own[["labelled", "predicted"]].to_numpy())
    assert best["test_fppa_icc_a1"] == pytest.approx(icc) and best["test_fppa_icc_a1_ci"] == pytest.approx(
        [low_icc, high_icc])
    # its knee angles agree well; its knee-to-ankle separation ratio does not, and the caution says that alone
    assert best["test_fppa_icc_a1"] >= 0.5
    separation = kinematics[(kinematics["frame_set_size"] == best["frame_set_size"]) & (kinematics["split"] == "test")
                            & (kinematics["snapshot_iteration"] == chosen)
                            & (kinematics["quantity"] == "knee_ankle_separation_ratio")]
    separation_icc = icc_absolute_agreement(separation[["labelled", "predicted"]].to_numpy())[0]
    assert best["test_ratio_icc_a1"]["knee_ankle_separation_ratio"] == pytest.approx(separation_icc)
    assert separation_icc < 0.5
    assert best["test_ratio_icc_a1"]["hip_ankle_width_ratio"] >= 0.5
    assert best["knee_kinematics_caution"] == (
        f"The width ratios of the network to use (frame set {best['frame_set_size']}) agree poorly with the labels' "
        f"(knee ankle separation ratio: ICC(A,1) {separation_icc:.2f}, below 0.5): they do not yet tell these "
        f"participants' knee and ankle widths apart, which its pixel errors do not show. Before reading knee "
        f"kinematics from it, lower its errors relative to the knees' size in the image (more labelled frames; the "
        f"knees filmed larger) and judge it on more test frames.")
    assert (f", within\n{low:.1f} to\n{high:.1f} deg of the labels' (95% limits of\nagreement, both knees) where the "
            f"labelled FPPA varies by\n{best['test_fppa_labelled_sd_deg']:.1f} deg (SD); ICC(A,1)\n"
            f"{icc:.2f} (95% CI\n{low_icc:.2f} to\n{high_icc:.2f}))") in page
    at = [r for r in summary["kinematic_errors_at_chosen_iteration"] if r["quantity"] == "right_fppa_deg"]
    assert {r["frame_set_size"] for r in at} == {10, 20} and all(r["mean_abs_error"] > 0 for r in at)
    expected = kinematics[(kinematics["snapshot_iteration"] == chosen) & (kinematics["split"] == "test")
                          & kinematics["quantity"].str.endswith("fppa_deg")]["abs_error"].mean()
    assert summary["test_fppa_error_deg_at_chosen_iteration"] == pytest.approx(expected)
    assert f"test FPPA error is {expected:.1f} deg" in summary["recommendation"]
    assert summary["fppa_anova"]["test"]["n_levels"] == 4 and summary["fppa_anova"]["test"]["n_subjects"] == 4
    # JSON that R's jsonlite, JavaScript and jq read: an undefined statistic (Mauchly's test with as many levels as
    # subjects) is null, not Python's NaN
    def refuse(constant):
        raise AssertionError(f"{constant} in summary.json: not JSON")

    strict = json.loads(layout.summary_file.read_text(), parse_constant=refuse)
    assert strict["fppa_anova"]["test"]["mauchly_p"] is None
    assert (layout.report_dir / "figure_fppa_error.png").stat().st_size > 10_000


def test_a_network_to_use_whose_knee_angles_agree_poorly_with_the_labels_gets_a_caution(tmp_path, caplog):
    """Pixel errors and the recommendation did not show that the demo's network to use (1.4 px) read knee angles
    with an ICC of 0.24: the report and the log now say so, with the numbers behind it and what lowers it. Here each
    network reads every knee mirrored about the knees' mean angle, so its angles tell the knees apart not at all."""
    from posesweep.kinematics import kinematic_errors
    from posesweep.stats import analyse_fppa, icc_absolute_agreement

    errors = error_table(landmarks=list(FRONTAL_BODYPARTS))
    kinematics = kinematic_errors(errors)
    fppa = kinematics["quantity"].str.endswith("_fppa_deg")
    mean = kinematics[fppa].groupby(["frame_set_size", "snapshot_iteration", "split"])["labelled"].transform("mean")
    kinematics.loc[fppa, "predicted"] = 2 * mean - kinematics.loc[fppa, "labelled"]
    kinematics["error"] = kinematics["predicted"] - kinematics["labelled"]
    kinematics["abs_error"] = kinematics["error"].abs()
    layout = RunLayout.create(tmp_path, "tiny", "run")
    networks = _networks(errors, analyse(errors)["chosen_iteration"])
    page = write_report(layout, analyse(errors), errors, {**context(), "networks": networks}, kinematics,
                        analyse_fppa(kinematics)).read_text()
    best = json.loads(layout.summary_file.read_text())["network_to_use"]
    own = kinematics[fppa & (kinematics["frame_set_size"] == best["frame_set_size"]) & (kinematics["split"] == "test")
                     & (kinematics["snapshot_iteration"] == best["snapshot_iteration"])]
    icc, low, high = icc_absolute_agreement(own[["labelled", "predicted"]].to_numpy())
    assert best["test_fppa_icc_a1"] == pytest.approx(icc) and icc < 0
    caution = best["knee_kinematics_caution"]
    assert caution.startswith(f"The knee angles of the network to use (frame set {best['frame_set_size']}) agree "
                              f"poorly with the labels' (ICC(A,1) {icc:.2f}, below 0.5 (95% CI {low:.2f} to "
                              f"{high:.2f}, from {len(own)} test knee angles); 95% limits")
    assert "does not yet tell these knees apart" in caution and "more labelled frames" in caution
    # no network of the study reads them better: the frame sets do not show how many frames knee angles need
    by_size = {int(size): icc_absolute_agreement(part[["labelled", "predicted"]].to_numpy())[0] for size, part in
               kinematics[fppa & (kinematics["split"] == "test")
                          & (kinematics["snapshot_iteration"] == best["snapshot_iteration"])].groupby("frame_set_size")}
    assert len(by_size) == 2 and max(by_size.values()) < 0.5
    assert {int(size): icc for size, icc in best["test_fppa_icc_a1_by_frame_set"].items()} == pytest.approx(by_size)
    listed = ", ".join(f"{icc:.2f} (frame set {size})" for size, icc in sorted(by_size.items()))
    assert caution.endswith(
        f"judge it on more test frames. No network of the study reads the knee angles better than poorly at "
        f"{best['snapshot_iteration']:,} iterations (ICC(A,1) {listed}): the study cannot yet say how many labelled "
        f"frames they need; its frame sets answer for pixel errors only.")
    # at the top, below the recommendation, where a lab reads the answer
    assert f"</p>\n<div class='warn'><b>Knee kinematics.</b> {escape(caution)}</div>" in page
    assert page.index("<b>Recommendation:</b>") < page.index("<b>Knee kinematics.</b>") < page.index("Did the networks")
    from posesweep.stages import say_the_answer

    with caplog.at_level(logging.INFO, logger="posesweep"):
        say_the_answer(json.loads(layout.summary_file.read_text()))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [caution]


@pytest.mark.parametrize("split_mode", ["paper", "fixed_test"])
def test_a_caution_names_another_network_reading_the_knee_angles_well_where_the_one_to_use_reads_them_poorly(
        tmp_path, split_mode):
    """The frame-set question asked of the knee angles: where the network with the lowest pixel error reads them
    poorly and another network reads them well, the caution names that one, and whether the two were judged on
    the same test frames (fixed_test) or each on its own (the paper's split)."""
    from posesweep.kinematics import kinematic_errors
    from posesweep.stats import analyse_fppa, icc_absolute_agreement

    errors = error_table(landmarks=list(FRONTAL_BODYPARTS))
    chosen = analyse(errors)["chosen_iteration"]
    networks = _networks(errors, chosen)
    best_size = tables_network_to_use(errors, networks, chosen)
    kinematics = kinematic_errors(errors)
    fppa = kinematics["quantity"].str.endswith("_fppa_deg")
    mirrored = fppa & (kinematics["frame_set_size"] == best_size)  # only the network to use reads them mirrored
    mean = kinematics[mirrored].groupby(["snapshot_iteration", "split"])["labelled"].transform("mean")
    kinematics.loc[mirrored, "predicted"] = 2 * mean - kinematics.loc[mirrored, "labelled"]
    closer = fppa & ~mirrored  # the other network's knee angles a fifth as far from the labels'
    labelled = kinematics.loc[closer, "labelled"]
    kinematics.loc[closer, "predicted"] = labelled + 0.2 * (kinematics.loc[closer, "predicted"] - labelled)
    kinematics["error"] = kinematics["predicted"] - kinematics["labelled"]
    kinematics["abs_error"] = kinematics["error"].abs()
    layout = RunLayout.create(tmp_path, "tiny", "run")
    study = {**context()["study_config"], "split_mode": split_mode}
    write_report(layout, analyse(errors), errors, {**context(), "study_config": study, "networks": networks},
                 kinematics, analyse_fppa(kinematics))
    best = json.loads(layout.summary_file.read_text())["network_to_use"]
    assert best["frame_set_size"] == best_size
    at = kinematics[fppa & (kinematics["split"] == "test") & (kinematics["snapshot_iteration"] == chosen)]
    by_size = {int(size): icc_absolute_agreement(part[["labelled", "predicted"]].to_numpy())[0]
               for size, part in at.groupby("frame_set_size")}
    other = next(size for size in by_size if size != best_size)
    assert by_size[best_size] < 0.5 <= by_size[other]
    listed = ", ".join(f"{icc:.2f} (frame set {size})" for size, icc in sorted(by_size.items()))
    found = f"The network of frame set {other} reads the knee angles with ICC(A,1) {by_size[other]:.2f} ({listed})"
    assert (f"{found} on the same test frames: read knee angles from it rather than from the network with the lowest "
            f"pixel error (the agreement table gives each ICC's interval)." if split_mode == "fixed_test" else
            f"{found}, on its own test frames: compare the two on the same test frames (split_mode fixed_test) "
            f"before reading knee angles from either.") in best["knee_kinematics_caution"]


def tables_network_to_use(errors: pd.DataFrame, networks: list[dict], chosen: int) -> int:
    from posesweep.report.tables import errors_by_network, network_to_use

    return network_to_use(networks, errors_by_network(errors), chosen, learning_check(errors, chosen))["frame_set_size"]


def test_the_report_names_the_labs_landmarks_behind_the_knee_angles_or_says_why_there_are_none(tmp_path):
    from posesweep.kinematics import kinematic_errors, landmark_roles
    from posesweep.stats import analyse_fppa

    names = {"right_hip": "R_ASIS", "right_knee": "RKnee", "right_ankle": "RAnkle", "left_hip": "L_ASIS",
             "left_knee": "LKnee", "left_ankle": "LAnkle"}
    errors = error_table(landmarks=list(names.values()))
    roles, how = landmark_roles(errors["landmark"].unique())
    kinematics = kinematic_errors(errors, roles)
    layout = RunLayout.create(tmp_path / "named", "tiny", "run")
    page = write_report(layout, analyse(errors), errors, {**context(), "kinematic_landmarks": {"roles": roles,
                                                                                             "how": how}},
                        kinematics, analyse_fppa(kinematics)).read_text()
    assert "Frontal-plane knee kinematics" in page and "figure_fppa_error" in page
    assert ("Hips, knees and ankles: R_ASIS (right hip), RKnee (right knee), RAnkle (right ankle), L_ASIS (left hip), "
            "LKnee (left knee), LAnkle (left ankle); recognised by their names.") in page
    assert json.loads(layout.summary_file.read_text())["kinematic_landmarks"]["roles"] == names

    errors = error_table(landmarks=["RASIS", "LASIS", "RKneeLat", "LKneeLat", "RAnkle", "LAnkle"])
    roles, why = landmark_roles(errors["landmark"].unique())
    page, summary = _report(tmp_path / "unnamed", errors, kinematic_landmarks={"roles": roles, "how": why})
    assert ("<p>Not computed: no landmark is named as the right knee; no landmark is named as the left knee: where "
            "the cohort has hips, knees and ankles by other names, name them in cohort.json") in page
    assert summary["kinematic_landmarks"] == {"roles": None, "how": why} and "figure_fppa_error" not in page
    page, _ = _report(tmp_path / "reaching", error_table(landmarks=["Hand", "Finger1", "Tongue"]),
                      kinematic_landmarks=dict(zip(("roles", "how"), landmark_roles(["Hand", "Finger1", "Tongue"]))))
    assert "knee kinematics" not in page.lower()  # a cohort without knees is not told about knee angles

    right_leg = {role: name for role, name in names.items() if role.startswith("right_")}
    errors = error_table(landmarks=list(right_leg.values()))
    kinematics = kinematic_errors(errors, right_leg)
    layout = RunLayout.create(tmp_path / "one_leg", "tiny", "run")
    page = write_report(layout, analyse(errors), errors, {**context(), "kinematic_landmarks": {
        "roles": right_leg, "how": "named", "camera_view": "back"}}, kinematics, analyse_fppa(kinematics)).read_text()
    assert "Filmed from behind (cohort.json camera_view)" in page
    summary = json.loads(layout.summary_file.read_text())
    assert "deg (mean absolute over the right knee, every network and test frame)" in summary["recommendation"]
    assert {row["quantity"] for row in summary["kinematic_errors_at_chosen_iteration"]} == {"right_fppa_deg"}
    assert summary["ratio_agreement_at_chosen_iteration"] == [] and "Agreement of the width ratios" not in page


def test_the_report_gives_each_networks_fppa_agreement_with_the_labels_as_bias_and_limits_of_agreement(tmp_path):
    """A mean absolute FPPA error hid whether a network reads every knee a few degrees too valgus (a bias a lab can
    correct for) or scatters, and how that compares with how much the knees differ: the report gives, per network
    and knee on the test frames at the chosen iteration, the labelled FPPA's mean and SD, the bias and the 95%
    limits of agreement (Bland & Altman), numbers worked here by hand from the frames' own angles; and the same for
    the two width ratios per network."""
    from posesweep.kinematics import kinematic_errors
    from posesweep.report.tables import fppa_agreement
    from posesweep.stats import analyse_fppa, icc_absolute_agreement

    errors = error_table(landmarks=list(FRONTAL_BODYPARTS))
    kinematics = kinematic_errors(errors)
    layout = RunLayout.create(tmp_path, "tiny", "run")
    page = write_report(layout, analyse(errors), errors, context(), kinematics, analyse_fppa(kinematics)).read_text()
    summary = json.loads(layout.summary_file.read_text())
    chosen = summary["chosen_iteration"]
    rows = {(r["frame_set_size"], r["knee"]): r for r in summary["fppa_agreement_at_chosen_iteration"]}
    assert set(rows) == {(10, "right"), (20, "right"), (10, "left"), (20, "left")}
    frames = kinematics[(kinematics["frame_set_size"] == 20) & (kinematics["quantity"] == "left_fppa_deg")
                        & (kinematics["split"] == "test") & (kinematics["snapshot_iteration"] == chosen)]
    difference = frames["predicted"] - frames["labelled"]
    half_width = 1.96 * difference.std(ddof=1)
    row = rows[(20, "left")]
    assert row["frames"] == len(frames) > 1
    assert row["bias_deg"] == pytest.approx(difference.mean()) and row["bias_deg"] != 0
    assert (row["loa_low_deg"], row["loa_high_deg"]) == pytest.approx((difference.mean() - half_width,
                                                                     difference.mean() + half_width))
    assert row["labelled_sd_deg"] == pytest.approx(frames["labelled"].std(ddof=1))
    assert row["mean_abs_error_deg"] == pytest.approx(difference.abs().mean())
    assert [row["icc_a1"], row["icc_a1_ci_low"], row["icc_a1_ci_high"]] == pytest.approx(
        icc_absolute_agreement(frames[["labelled", "predicted"]].to_numpy()))
    assert row["icc_a1"] < 1
    assert f"Agreement of the FPPA with the labels' at {chosen:,} iterations (test frames)" in page
    assert (layout.report_dir / "fppa_agreement.csv").is_file()
    # a knee seen in one test frame has no spread: its limits are unknown, not zero
    one = kinematics[(kinematics["split"] == "test") & (kinematics["snapshot_iteration"] == chosen)].groupby(
        ["frame_set_size", "quantity"]).head(1)
    single = fppa_agreement(one, chosen)
    assert single["frames"].eq(1).all() and single["loa_low_deg"].isna().all()
    # the study's two width ratios, the same way per network
    ratios = {(r["frame_set_size"], r["ratio"]): r for r in summary["ratio_agreement_at_chosen_iteration"]}
    assert set(ratios) == {(size, ratio) for size in (10, 20)
                           for ratio in ("knee_ankle_separation_ratio", "hip_ankle_width_ratio")}
    frames = kinematics[(kinematics["frame_set_size"] == 10) & (kinematics["quantity"] == "hip_ankle_width_ratio")
                        & (kinematics["split"] == "test") & (kinematics["snapshot_iteration"] == chosen)]
    difference = frames["predicted"] - frames["labelled"]
    row = ratios[(10, "hip_ankle_width_ratio")]
    assert row["frames"] == len(frames) > 1 and row["bias"] == pytest.approx(difference.mean()) != 0
    assert (row["loa_low"], row["loa_high"]) == pytest.approx((difference.mean() - 1.96 * difference.std(ddof=1),
                                                             difference.mean() + 1.96 * difference.std(ddof=1)))
    assert row["labelled_sd"] == pytest.approx(frames["labelled"].std(ddof=1))
    assert f"Agreement of the width ratios with the labels' at {chosen:,} iterations (test frames)" in page
    assert (layout.report_dir / "ratio_agreement.csv").is_file()
