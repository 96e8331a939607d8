import pandas as pd
import pytest

from posesweep.splits import (FEW_TEST_FRAMES, FrameSetError, build_frame_sets, few_test_frames_warning,
                              landmarks_unlabeled_warning)

FRAMES = [(f"P{v:03d}", f"img{i:02d}.png") for v in range(1, 9) for i in range(10)]


def test_frame_sets_are_nested_and_split_by_the_train_fraction():
    sets = build_frame_sets(FRAMES, [20, 40, 80], 0.9, seed=1)
    assert [s.frame_set_size for s in sets] == [20, 40, 80] and [s.shuffle for s in sets] == [1, 2, 3]
    members = [set(s.train) | set(s.test) for s in sets]
    assert members[0] < members[1] < members[2]
    for s in sets:
        assert len(s.train) + len(s.test) == s.frame_set_size and not set(s.train) & set(s.test)
        assert len(s.test) == round(s.frame_set_size * 0.1)
    assert build_frame_sets(FRAMES, [20, 40, 80], 0.9, seed=1) == sets
    assert build_frame_sets(FRAMES, [20, 40, 80], 0.9, seed=2) != sets


def test_asking_for_more_frames_than_labeled_is_refused():
    with pytest.raises(FrameSetError, match="only 80 frames are labeled"):
        build_frame_sets(FRAMES, [40, 100], 0.9, seed=1)


def test_fixed_test_gives_every_size_the_same_test_frames():
    sets = build_frame_sets(FRAMES, [20, 40, 80], 0.9, seed=3, split_mode="fixed_test")
    assert len({s.test for s in sets}) == 1 and len(sets[0].test) == 2
    assert set(sets[0].train) < set(sets[1].train) < set(sets[2].train)
    for s in sets:
        assert len(s.train) + len(s.test) == s.frame_set_size and not set(s.train) & set(s.test)


def test_by_participant_never_shares_a_participant_between_train_and_test():
    sets = build_frame_sets(FRAMES, [20, 40, 60], 0.8, seed=5, split_mode="by_participant")
    for s in sets:
        train_people = {video for video, _ in s.train}
        test_people = {video for video, _ in s.test}
        assert test_people and not train_people & test_people
        assert len(s.train) + len(s.test) == s.frame_set_size
    assert len({s.test for s in sets}) == 1
    assert set(sets[0].train) < set(sets[1].train) < set(sets[2].train)


def test_unknown_split_mode_is_refused():
    with pytest.raises(FrameSetError, match="split_mode"):
        build_frame_sets(FRAMES, [20], 0.9, seed=1, split_mode="random")


def test_by_participant_keeps_all_trials_of_a_person_on_one_side():
    """Three trials per person (P01_trial1..3): with the cohort's participant names, no person is both trained and
    tested on; taking each video as a person (no names given) would put the same people on both sides."""
    trials = [(f"P{p:02d}_trial{t}", f"img{i:02d}.png") for p in range(1, 7) for t in (1, 2, 3) for i in range(5)]
    person = {video: video.split("_")[0] for video, _ in trials}
    sets = build_frame_sets(trials, [30, 60], 0.8, seed=5, split_mode="by_participant", participant_of=person)
    for s in sets:
        trained, tested = {person[v] for v, _ in s.train}, {person[v] for v, _ in s.test}
        assert tested and not trained & tested
        assert {v for v, _ in s.test} == {v for v, _ in trials if person[v] in tested}  # every trial of each
    by_video = build_frame_sets(trials, [30, 60], 0.8, seed=5, split_mode="by_participant")
    assert any({person[v] for v, _ in s.train} & {person[v] for v, _ in s.test} for s in by_video)


def test_frame_sets_tested_on_few_frames_are_named_with_the_train_fraction_that_gives_them_more():
    """A lab's 55 frames as the paper's four proportional sets at 90/10 test the smallest on 1 frame: said, with the
    train_fraction that tests it on FEW_TEST_FRAMES (checked by splitting again with it); none where there is none."""
    frames = [("P001", f"img{i:03d}.png") for i in range(55)]
    sets = build_frame_sets(frames, [14, 28, 41, 55], 0.9, 42)
    warning = few_test_frames_warning(sets, 0.9, "paper")
    assert warning.startswith("frame sets 14 (1 test frame), 28 (3 test frames), 41 (4 test frames) test on fewer "
                              f"than {FEW_TEST_FRAMES} frames")
    fraction = float(warning.split("train_fraction=")[1].split(" ")[0])
    assert fraction == 0.67 and "now 0.9" in warning
    assert min(len(fs.test) for fs in build_frame_sets(frames, [14, 28, 41, 55], fraction, 42)) == FEW_TEST_FRAMES
    assert len(build_frame_sets(frames, [14], fraction + 0.01, 42)[0].test) < FEW_TEST_FRAMES  # the highest such
    # 6 frames cannot be tested on 5 while training on half: no train_fraction proposed
    assert "train_fraction=" not in few_test_frames_warning(build_frame_sets(frames, [6, 12], 0.9, 42), 0.9, "paper")
    assert few_test_frames_warning(build_frame_sets(frames, [50], 0.9, 42), 0.9, "paper") is None


def test_a_landmark_labeled_in_none_of_a_sets_training_or_test_frames_is_named_with_what_it_means():
    """A landmark often out of sight (the Reaching project's tongue: labeled in 27% of its frames, in 1 of a 20-frame
    set's 4 test frames in one run here) can be labeled in none of a small set's frames on one side of its split:
    said for exactly those sets and sides; a landmark labeled in every frame never is."""
    frames = [("P001", f"img{i:02d}.png") for i in range(20)]
    sets = build_frame_sets(frames, [10, 20], 0.8, 42)
    tongue = {sets[0].train[0], sets[0].train[1]}  # in the small set's training frames only
    rows = [{"video": v, "image": i, "landmark": name, "x_px": 5.0 if name == "Hand" or (v, i) in tongue else None,
             "y_px": 7.0 if name == "Hand" or (v, i) in tongue else None}
            for v, i in frames for name in ("Hand", "Tongue")]
    warning = landmarks_unlabeled_warning(sets, pd.DataFrame(rows))
    expected = [(fs.frame_set_size, side, len(part)) for fs in sets
                for side, part in (("training", fs.train), ("test", fs.test)) if not tongue & set(part)]
    assert ("frame set 10", "training") not in [(f"frame set {n}", side) for n, side, _ in expected]
    assert (10, "test", 2) in expected  # the case the warning is for
    sentences = warning.split(". ")
    for size, side, count in expected:
        [sentence] = [s for s in sentences if s.startswith(f"Landmarks labeled in none of a frame set's {side} ")]
        assert f"frame set {size}: Tongue (of {count} frames)" in sentence
    assert warning.count("Tongue (of") == len(expected) and "Hand" not in warning
    assert "which its test error then leaves out" in warning and "in more frames where they are in sight" in warning
    everywhere = pd.DataFrame([{**row, "x_px": 5.0, "y_px": 7.0} for row in rows])
    assert landmarks_unlabeled_warning(sets, everywhere) is None


def test_a_run_whose_frame_sets_test_on_few_frames_says_so_in_its_task_log(reaching_project, tmp_path, caplog):
    """make_frame_sets logs the warning above where a lab reads: a 20-frame set at 80/20 tests on 4 frames."""
    import logging
    import shutil

    from posesweep import stages

    root = tmp_path / "data"
    shutil.copytree(reaching_project, root / "cohorts" / "reach")
    conf = {"cohort": "reach", "frame_set_sizes": [20, 55], "train_fraction": 0.8, "max_iterations": 100,
            "snapshot_interval": 50, "max_missing_label_fraction": 0.8, "allow_random_init": True}
    run = stages.prepare_run(root, conf, "manual__few_test_frames")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    stages.validate_label_table(run)
    with caplog.at_level(logging.INFO, logger="posesweep.stages"):
        stages.make_frame_sets(run)
    [warning] = [r for r in caplog.records if "test frames) tests on fewer than" in r.getMessage()]
    assert warning.levelname == "WARNING" and warning.getMessage().startswith("frame set 20 (4 test frames) tests ")
    assert "55 (" not in warning.getMessage()  # 11 test frames
