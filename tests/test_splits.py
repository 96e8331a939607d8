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
