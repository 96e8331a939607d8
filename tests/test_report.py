"""Report tables: accuracy per landmark and per snapshot, computed by hand on a constructed error table."""

import math

import pandas as pd
import pytest

from posesweep.report.tables import accuracy_by_landmark as accuracy_table, accuracy_by_snapshot, by_split_columns


def _errors(with_mm: bool) -> pd.DataFrame:
    rows = []
    # one network, two snapshots; per snapshot 4 train rows of one landmark and 2 test rows
    for iteration, scale in ((100, 1.0), (200, 0.5)):
        for split, errors, likelihoods in (("train", [1.0, 3.0, 6.0, 12.0], [0.9, 0.7, 0.5, 0.2]),
                                           ("test", [4.0, 8.0], [0.95, 0.1])):
            for error, likelihood in zip(errors, likelihoods):
                rows.append({"frame_set_size": 10, "snapshot_iteration": iteration, "split": split, "video": "P001",
                             "landmark": "right_knee", "error_px": error * scale, "likelihood": likelihood})
    table = pd.DataFrame(rows)
    if with_mm:
        table["px_per_mm"] = 2.0
        table["error_mm"] = table["error_px"] / 2.0
    return table


def test_accuracy_by_snapshot_by_hand():
    table = accuracy_by_snapshot(_errors(with_mm=True), pcutoff=0.6).set_index(["snapshot_iteration", "split"])
    train = table.loc[(100, "train")]
    assert train["error_px"] == pytest.approx(5.5)  # (1 + 3 + 6 + 12) / 4
    assert train["error_mm"] == pytest.approx(2.75)
    assert train["error_pcutoff_px"] == pytest.approx(2.0)  # likelihood >= 0.6: errors 1 and 3
    assert train["share_above_pcutoff"] == pytest.approx(0.5)
    assert (train["pck_2px"], train["pck_5px"], train["pck_10px"]) == (0.25, 0.5, 0.75)
    test = table.loc[(200, "test")]
    assert test["error_px"] == pytest.approx(3.0)  # (2 + 4) / 2
    assert test["error_pcutoff_px"] == pytest.approx(2.0)
    assert (test["pck_2px"], test["pck_5px"]) == (0.5, 1.0)


def test_no_mm_column_without_a_scale_and_nan_when_nothing_is_confident():
    errors = _errors(with_mm=False)
    table = accuracy_by_snapshot(errors, pcutoff=0.99)
    assert "error_mm" not in table and table["error_pcutoff_px"].map(math.isnan).all()
    per_landmark = accuracy_table(errors, 100, pcutoff=0.6)
    assert "error_mm" not in per_landmark
    assert per_landmark.set_index("split").loc["test", "error_pcutoff_px"] == pytest.approx(4.0)
    with_mm = accuracy_table(_errors(with_mm=True), 200, pcutoff=0.6).set_index("split")
    assert with_mm.loc["train", "error_mm"] == pytest.approx(5.5 * 0.5 / 2)


def test_anova_table_reads_one_quantity_per_row_with_a_column_per_split():
    anova = pd.DataFrame([{"split": "train", "F": 57.41234, "df_num": 9, "plateau_iteration": 175000},
                          {"split": "test", "F": 24.4, "df_num": 9, "plateau_iteration": None}])
    table = by_split_columns(anova)
    assert list(table.columns) == ["quantity", "train", "test"]
    assert table.set_index("quantity").loc["F"].tolist() == ["57.41", "24.4"]
    assert table.set_index("quantity").loc["plateau_iteration"].tolist() == ["175000", "none"]


def test_the_answer_says_how_small_a_difference_between_iteration_levels_its_tests_would_have_found():
    """"Errors stop improving" rests on tests that found no difference between later levels: the answer says how
    small a difference they would have found with 80% power (the larger of the splits' from the chosen level on), and
    where no two levels differ at all, how large one had to be."""
    from posesweep.report.tables import recommendation

    learned = pd.DataFrame({"frame_set_size": [200, 400], "snapshot_iteration": [175_000] * 2,
                            "test_error_px": [3.0, 2.5], "mean_pose_error_px": [40.0, 40.0], "learned": [True, True]})
    test = pd.DataFrame({"iteration_a": [150_000, 150_000, 175_000], "iteration_b": [175_000, 200_000, 200_000],
                         "p_bonferroni": [0.01, 0.01, 0.5], "detectable_difference_px": [0.9, 0.8, 0.3]})
    train = test.assign(detectable_difference_px=[0.5, 0.6, 0.42])
    plateau = {"chosen_iteration": 175_000, "chosen_iteration_is_plateau": True, "minimum_frames": {},
               "per_split": {"test": {"pairwise": test, "no_two_levels_differ": False},
                             "train": {"pairwise": train, "no_two_levels_differ": False}}}
    assert recommendation(plateau, learned) == (
        "Errors stop improving significantly at 175,000 iterations (later levels' errors differing by 0.42 px or more "
        "would have been found with 80% power)")
    subject_means = pd.DataFrame({"split": ["test"] * 4, "subject": ["a", "b"] * 2, "error_px": [13.0, 12.0, 7.0, 6.0],
                                  "snapshot_iteration": [150_000, 150_000, 200_000, 200_000]})
    undecided = {"chosen_iteration": 200_000, "chosen_iteration_is_plateau": False, "minimum_frames": {},
                 "subject_means": subject_means,
                 "per_split": {split: {"pairwise": table.assign(p_bonferroni=1.0), "no_two_levels_differ": True,
                                       "anova": {"n_subjects": 2}} for split, table in (("test", test),
                                                                                        ("train", train))}}
    assert "tell no snapshot from another (with 80% power they would have found differences of 0.9 px or more only; " \
           "more frame sets or landmarks give them more)" in recommendation(undecided, learned)


def test_errors_by_network_and_by_landmark_by_hand():
    from posesweep.report.tables import errors_by_landmark, errors_by_network, mean_mm_at

    errors = _errors(with_mm=True)
    by_network = errors_by_network(errors).set_index("snapshot_iteration")
    assert list(by_network.columns) == ["frame_set_size", "test_error_px", "train_error_px"]
    assert by_network.loc[100, "train_error_px"] == pytest.approx(5.5)
    assert by_network.loc[200, "test_error_px"] == pytest.approx(3.0)
    by_frame_set = pd.DataFrame({"landmark": ["knee", "knee", "ankle", "knee"],
                                 "split": ["test", "test", "test", "train"], "frame_set_size": [10, 20, 10, 10],
                                 "error_px": [4.0, 6.0, 1.0, 2.0]})
    per_landmark = errors_by_landmark(by_frame_set).set_index("landmark")
    assert per_landmark.loc["knee", "test_error_px"] == pytest.approx(5.0)
    assert math.isnan(per_landmark.loc["ankle", "train_error_px"])
    assert mean_mm_at(errors, 100) == f"{5.5 / 2:.2f} / {6.0 / 2:.2f}"
    assert mean_mm_at(_errors(with_mm=False), 100) == "no scale"


def test_recommendation_says_whether_errors_plateaued_and_is_withheld_when_a_network_did_not_learn():
    from posesweep.report.tables import no_recommendation, recommendation

    learned = pd.DataFrame({"frame_set_size": [200, 400], "snapshot_iteration": [175_000] * 2,
                            "test_error_px": [3.0, 2.5], "mean_pose_error_px": [40.0, 40.0], "learned": [True, True]})
    plateau = {"chosen_iteration": 175_000, "chosen_iteration_is_plateau": True, "minimum_frames": {"test": 400}}
    assert recommendation(plateau, learned) == ("Errors stop improving significantly at 175,000 iterations; at that "
                                                "point 400 frames give a test error not significantly worse than "
                                                "any larger frame set")
    still = {**plateau, "chosen_iteration_is_plateau": False, "minimum_frames": {}}
    assert recommendation(still, learned).startswith("Errors were still improving significantly at the last "
                                                     "snapshot (175,000 iterations): train longer")
    one_failed = learned.assign(learned=[False, True], test_error_px=[35.0, 2.5])
    assert recommendation(plateau, one_failed) is None
    # a split whose post-hoc tests told no two levels apart places no plateau (stats.placed_plateau), and says so
    subject_means = pd.DataFrame({"split": ["test"] * 4, "subject": ["a", "b"] * 2, "error_px": [13.0, 12.0, 7.0, 6.0],
                                  "snapshot_iteration": [25_000, 25_000, 250_000, 250_000]})
    undecided = {"per_split": {"test": {"no_two_levels_differ": True, "plateau_iteration": None,
                                        "anova": {"n_subjects": 2}},
                               "train": {"no_two_levels_differ": False, "plateau_iteration": 175_000}},
                 "subject_means": subject_means}
    assert recommendation({**plateau, **undecided}, learned).startswith(
        "Errors stop improving significantly at 175,000 iterations (the test error places no plateau: no two of "
        "its iteration levels differ significantly); at that point 400 frames")
    undecided["per_split"]["train"] = undecided["per_split"]["test"]
    assert recommendation({**plateau, **undecided, "chosen_iteration": 250_000, "chosen_iteration_is_plateau": False,
                           "minimum_frames": {}}, learned) == (
        "No two iteration levels' errors differ significantly (the test error went from 12.50 px at 25,000 "
        "iterations to 6.50 px at 250,000), so the study places no plateau: its tests, on 2 (network, landmark) "
        "pairs, tell no snapshot from another (more frame sets or landmarks give them more); the numbers below are "
        "read at the last snapshot (250,000 iterations)")
    one_snapshot = pd.DataFrame({"split": ["test"], "snapshot_iteration": [175_000]})
    assert no_recommendation(one_failed, one_snapshot).startswith("No recommendation: 1 of 2 networks did not learn "
                                                                  "(frame sets 200: test error 35.0 px against 40.0 px")


def test_the_smallest_sufficient_frame_set_is_said_in_words_and_why_none_with_one_size():
    from posesweep.report.tables import minimum_frames_sentence

    assert minimum_frames_sentence({"train": 200, "test": 400}) == "400 frames by the test error, 200 frames by " \
                                                                   "the train error"
    assert minimum_frames_sentence({}).startswith("not found, since this run trained one frame-set size")


def test_a_whole_body_projects_landmarks_each_get_their_own_line_and_the_legend_covers_no_data():
    """24 landmarks (a whole-body project): ten colours repeated, and a legend inside the test panel hid its
    lines. Each landmark's (colour, marker, dash) is its own, and the legend lies beside both panels."""
    from posesweep.report.figures import _pyplot, frame_set_size_figure, landmark_styles

    landmarks = [f"{side}_{joint}" for side in ("left", "right") for joint in (
        "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "heel", "toe", "ear", "eye", "hand", "finger")]
    styles = landmark_styles(landmarks)
    assert len({tuple(sorted(style.items())) for style in styles.values()}) == 24
    rows = [{"split": split, "landmark": landmark, "frame_set_size": size, "error_px": 5.0 + i + size / 100}
            for split in ("train", "test") for i, landmark in enumerate(landmarks) for size in (200, 400, 800)]
    fig = frame_set_size_figure(pd.DataFrame(rows), 150_000)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[1].get_legend()
    assert len(legend.get_texts()) == 24
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers a panel"
    _pyplot().close(fig)


def test_a_landmark_out_of_sight_counts_in_no_error_and_no_pck_and_every_table_gives_one_error_per_network():
    """A rarely visible landmark (the Reaching project's tongue, out of sight in 73% of its frames) has no label in
    most frames. Its unlabeled rows counted as misses in PCK and the share above the p-cutoff, hid the mm columns, and
    a network's test error differed between the learning check (mean over landmarks) and the tables (mean over
    points): 332.1 px against 310.0 px for one network of one run."""
    from posesweep.learning import learning_check
    from posesweep.report.tables import errors_by_network, mean_mm_at

    rows = []
    for split, images in (("train", ["a", "b", "c", "d"]), ("test", ["e", "f", "g", "h"])):
        for i, image in enumerate(images):
            for landmark, error in (("hand", 1.0), ("tongue", 9.0 if i == 0 else float("nan"))):
                label = float("nan") if math.isnan(error) else 100.0 + 10 * i
                rows.append({"frame_set_size": 8, "snapshot_iteration": 100, "split": split, "video": "v",
                             "image": image, "landmark": landmark, "x_label_px": label, "y_label_px": label,
                             "error_px": error, "likelihood": 0.9, "error_mm": error / 2.0})
    errors = pd.DataFrame(rows)
    by_landmark = accuracy_table(errors, 100, pcutoff=0.6).set_index(["landmark", "split"])
    tongue = by_landmark.loc[("tongue", "test")]
    assert tongue["pck_10px"] == 1.0 and tongue["share_above_pcutoff"] == 1.0  # its one labeled frame, within 10 px
    assert tongue["error_mm"] == pytest.approx(4.5)
    by_snapshot = accuracy_by_snapshot(errors, pcutoff=0.6).set_index("split")
    assert by_snapshot.loc["test", "pck_2px"] == pytest.approx(4 / 5)  # 4 hands of 5 labeled points
    study_error = (1.0 + 9.0) / 2  # per landmark over its labeled frames, then over the landmarks
    assert by_snapshot.loc["test", "error_px"] == pytest.approx(study_error)  # not (4 * 1 + 9) / 5 = 2.6
    assert errors_by_network(errors).iloc[0]["test_error_px"] == pytest.approx(study_error)
    assert learning_check(errors, 100).iloc[0]["test_error_px"] == pytest.approx(study_error)
    assert mean_mm_at(errors, 100) == f"{study_error / 2:.2f} / {study_error / 2:.2f}"
