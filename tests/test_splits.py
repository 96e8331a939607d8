import pytest

from posesweep.splits import FrameSetError, build_frame_sets

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
