"""Errors in mm: the landing-square scale against a pinhole camera whose answer is known."""

import itertools
import json
import shutil

import numpy as np
import pytest

from posesweep.scale import LandingSquare, ScaleError, video_scales


def _project(points_mm: np.ndarray, focal_px: float, camera_height_mm: float, distance_mm: float,
             pitch_rad: float) -> np.ndarray:
    """Pinhole camera at (0, height, -distance) looking along +z, pitched down; world y up, floor y = 0."""
    shifted = points_mm - np.array([0.0, camera_height_mm, -distance_mm])
    c, s = np.cos(pitch_rad), np.sin(pitch_rad)
    # rotate the world into the camera frame (camera pitched down by pitch_rad)
    x = shifted[:, 0]
    y = c * shifted[:, 1] + s * shifted[:, 2]
    z = -s * shifted[:, 1] + c * shifted[:, 2]
    return np.stack([960 + focal_px * x / z, 540 - focal_px * y / z], axis=1)


@pytest.mark.parametrize("pitch_deg", [0.0, 8.0, 20.0])
def test_landing_square_scale_is_the_scale_at_the_squares_centre(pitch_deg):
    """The paper's setup: camera 46 cm high, 96 cm in front of a 61 x 61 cm square on the floor."""
    half = 305.0
    floor = np.array([[-half, 0, -half], [half, 0, -half], [half, 0, half], [-half, 0, half]])  # near z = -half
    corners = _project(floor, focal_px=1100, camera_height_mm=460, distance_mm=960 + half,
                       pitch_rad=np.radians(pitch_deg))
    # a 610 mm horizontal segment through the square's centre, in the frontal plane
    segment = _project(np.array([[-half, 0, 0], [half, 0, 0]]), 1100, 460, 960 + half, np.radians(pitch_deg))
    expected_px_per_mm = np.hypot(*(segment[1] - segment[0])) / 610.0

    square = LandingSquare.from_json({"corners_px": corners.tolist()}, "test")
    assert square.px_per_mm() == pytest.approx(expected_px_per_mm, rel=1e-12)
    far, near = square.edges()
    assert near > far  # the near edge looks wider
    # the arithmetic mean of the edges would be biased towards the near edge
    assert abs((far + near) / 2 / 610 - expected_px_per_mm) > 1e-3


def test_corner_order_does_not_matter():
    corners = [[660, 756], [1260, 756], [1593, 1058], [327, 1058]]
    values = {round(LandingSquare.from_json({"corners_px": list(p)}, "t").px_per_mm(), 12)
              for p in itertools.permutations(corners)}
    assert len(values) == 1


@pytest.mark.parametrize("entry, message", [
    ({"corners_px": [[0, 0], [10, 0], [10, 10]]}, "has 3 points"),
    ({"corners_px": [[0, 0], ["a", 0], [10, 10], [0, 10]]}, "pairs of numbers"),
    ({"corners_px": [[0, 0], [10, 0], [20, 0], [30, 0]]}, "convex"),
    ({"corners_px": [[0, 0], [10, 0], [10, 10], [0, 10]], "side_mm": 0}, "side_mm must be positive"),
    ({"corners": [[0, 0]]}, "needs 'corners_px'"),
])
def test_bad_landing_squares_say_what_is_wrong(entry, message):
    with pytest.raises(ScaleError, match=message) as info:
        LandingSquare.from_json(entry, "cohorts/x/cohort.json: landing_square")
    assert "cohorts/x/cohort.json" in str(info.value)


def test_video_scales_parameter_square_per_video_and_none():
    square = {"corners_px": [[100, 100], [300, 100], [340, 200], [60, 200]], "side_mm": 610}
    moved = {"corners_px": [[50, 100], [250, 100], [290, 200], [10, 200]], "side_mm": 305}
    assert video_scales(["P01"], 2.5, {"landing_square": square}).to_json_dict() == \
        {"source": "parameter", "px_per_mm": {"P01": 2.5}}
    assert video_scales(["P01"], 0.0, None).source == "none"
    scales = video_scales(["P01", "P02"], 0.0, {"landing_square": square, "landing_square_by_video": {"P02": moved}})
    assert scales.source == "landing square"
    assert scales.px_per_mm["P01"] == pytest.approx(2 / (1 / 200 + 1 / 280) / 610)
    assert scales.px_per_mm["P02"] == pytest.approx(2 / (1 / 200 + 1 / 280) / 305)
    with pytest.raises(ScaleError, match="'P02'"):
        video_scales(["P01", "P02"], 0.0, {"landing_square_by_video": {"P01": square}})
    with pytest.raises(ScaleError, match=r"\['P09'\]"):
        video_scales(["P01"], 0.0, {"landing_square": square, "landing_square_by_video": {"P09": square}})


def test_synthetic_cohort_states_where_its_square_is(tmp_path):
    from posesweep.synthetic import SynthOptions, generate_cohort

    cohort = generate_cohort(tmp_path / "c", SynthOptions(participants=1, duration_s=0.5, seed=3))
    manifest = json.loads((cohort / "cohort.json").read_text())
    scales = video_scales(["P001"], 0.0, manifest)
    # drawn 0.50 and 0.66 of the 160 px width, truncated to whole pixels
    assert scales.px_per_mm["P001"] == pytest.approx(2 / (1 / 80 + 1 / 106) / 610, rel=0.02)


def test_a_broken_landing_square_stops_the_run_at_prepare_run(tiny_cohort, tmp_path):
    from posesweep import stages

    cohort = tmp_path / "cohorts" / "lab"
    (cohort / "videos").mkdir(parents=True)
    for stem, source in (("P01", "P001"), ("P02", "P002")):  # real videos: prepare_run reads the frame size
        shutil.copy(tiny_cohort / "cohorts" / "tiny" / "videos" / f"{source}.mp4", cohort / "videos" / f"{stem}.mp4")
    square = {"corners_px": [[100, 100], [300, 100], [340, 200], [60, 200]]}
    (cohort / "cohort.json").write_text(json.dumps(
        {"landing_square": square, "landing_square_by_video": {"P02": {"corners_px": [[1, 1], [2, 2]]}}}))
    conf = {"cohort": "lab", "frame_set_sizes": [20, 40], "max_iterations": 1000, "snapshot_interval": 500,
            "allow_random_init": True}
    with pytest.raises(ScaleError, match=r"cohort\.json: landing square of video 'P02': corners_px has 2 points"):
        stages.prepare_run(tmp_path, conf, "manual__1")
    assert not (tmp_path / "runs" / "lab" / "manual__1" / "study_config.json").exists()

    (cohort / "cohort.json").write_text(json.dumps({"landing_square": square}))  # bodyparts/scorer default
    run = stages.prepare_run(tmp_path, conf, "manual__2")
    assert len(run.videos) == 2
