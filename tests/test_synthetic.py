import cv2
import numpy as np
import pandas as pd

from posesweep.config import FRONTAL_BODYPARTS
from posesweep.synthetic import SynthOptions, generate_cohort, label_noise_sd_px, simulate_labels, truth_file


def test_cohort_has_h264_videos_and_truth_for_every_frame(tiny_cohort):
    videos = sorted((tiny_cohort / "cohorts" / "tiny" / "videos").glob("*.mp4"))
    assert [v.stem for v in videos] == ["P001", "P002", "P003"]
    cap = cv2.VideoCapture(str(videos[0]))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert fourcc in ("avc1", "h264") and frames == 60
    truth = pd.read_csv(truth_file(videos[0]))
    assert len(truth) == 60
    assert {f"{bp}_{c}" for bp in FRONTAL_BODYPARTS for c in "xy"} <= set(truth.columns)
    assert truth.filter(like="_x").stack().between(0, 160).all()
    assert truth.filter(like="_y").stack().between(0, 120).all()


def test_landing_has_knee_flexion_and_participants_differ(tiny_cohort):
    t1 = pd.read_csv(tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.truth.csv")
    t2 = pd.read_csv(tiny_cohort / "cohorts" / "tiny" / "videos" / "P002.truth.csv")
    hip_to_ankle = t1["right_ankle_y"] - t1["right_hip_y"]
    assert hip_to_ankle.min() < 0.85 * hip_to_ankle.iloc[-1]  # legs fold during the landing
    assert not np.allclose(t1["left_knee_x"], t2["left_knee_x"])
    # anatomical order in the image: hip above knee above ankle
    assert (t1["right_hip_y"] < t1["right_knee_y"]).all() and (t1["right_knee_y"] < t1["right_ankle_y"]).all()


def test_generation_is_deterministic_per_seed(tmp_path):
    a = generate_cohort(tmp_path / "a", SynthOptions(participants=1, duration_s=0.5, seed=3))
    b = generate_cohort(tmp_path / "b", SynthOptions(participants=1, duration_s=0.5, seed=3))
    c = generate_cohort(tmp_path / "c", SynthOptions(participants=1, duration_s=0.5, seed=4))
    read = lambda root: pd.read_csv(root / "videos" / "P001.truth.csv")
    pd.testing.assert_frame_equal(read(a), read(b))
    assert not read(a).equals(read(c))


def test_simulated_labeler_is_noisiest_at_the_knee_then_ankle(tiny_cohort):
    truth_csv = tiny_cohort / "cohorts" / "tiny" / "videos" / "P001.truth.csv"
    frames = list(range(60))
    labels = simulate_labels(truth_csv, frames, 1080, seed=1)
    truth = pd.read_csv(truth_csv).set_index("frame_index").loc[frames]
    spread = {bp: float(np.hypot(labels[f"{bp}_x"] - truth[f"{bp}_x"], labels[f"{bp}_y"] - truth[f"{bp}_y"]).mean())
              for bp in FRONTAL_BODYPARTS}
    assert spread["right_knee"] > spread["right_ankle"] > spread["right_hip"]
    assert spread["left_knee"] > spread["left_ankle"] > spread["left_medial_foot"]
    assert label_noise_sd_px(540)["right_knee"] == label_noise_sd_px(1080)["right_knee"] / 2
    again = simulate_labels(truth_csv, frames, 1080, seed=1)
    pd.testing.assert_frame_equal(labels, again)
