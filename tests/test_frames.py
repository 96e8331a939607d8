import pytest

from posesweep.frames import VideoError, extract_frames, image_name


def _extract(video, tmp_path, n=8, seed=0, name="run"):
    return extract_frames(video, tmp_path / name / "labeled-data", tmp_path / name / "frames" / f"{video.stem}.json",
                          n, seed)


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


def test_broken_videos_are_named_in_the_error(tiny_cohort, tmp_path):
    good = tiny_cohort / "cohorts" / "tiny" / "videos" / "P003.mp4"
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    with pytest.raises(VideoError, match="notes.mp4"):
        _extract(not_video, tmp_path)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoError, match="truncated.mp4"):
        _extract(truncated, tmp_path)
    with pytest.raises(VideoError, match="fewer than the 100 asked"):
        _extract(good, tmp_path, n=100)
    with pytest.raises(VideoError, match="does not exist"):
        _extract(tmp_path / "missing.mp4", tmp_path)
