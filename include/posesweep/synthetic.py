"""A synthetic frontal-plane drop-landing cohort, with ground truth.

No real cohort can ship with the project, so the embedded default data is drawn
here: per participant one H.264 video of a drop landing seen from the front
(floor, taped landing square, box, a lower body with orange markers on both
ASIS and on the 1st/5th metatarsal heads as in the paper), and the true image
position of all 10 landmarks in every frame. A simulated labeler
(``simulate_labels``) turns the truth into DeepLabCut annotations with
per-landmark noise: knee noisiest, then ankle, markers least, as the paper
explains its error pattern.

Everything is deterministic per seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .cohort import COHORT_FILE
from .config import FRONTAL_BODYPARTS
from .layout import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

SCORER = "simulated"

# Labeler noise (SD, px) at 1080 px image height; scaled with resolution.
# Joint centres without a marker are harder to click consistently than markers.
LABEL_NOISE_SD_PX_AT_1080 = {
    "hip": 1.5,
    "knee": 5.0,
    "ankle": 3.5,
    "medial_foot": 1.5,
    "lateral_foot": 1.5,
}

MARKER_BGR = (0, 140, 255)  # orange


@dataclass(frozen=True)
class SynthOptions:
    participants: int = 6
    width_px: int = 160
    height_px: int = 120
    fps: float = 30.0
    duration_s: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.participants < 1:
            raise ValueError(f"participants must be >= 1, got {self.participants}")
        if self.width_px % 2 or self.height_px % 2 or self.width_px < 64 or self.height_px < 48:
            raise ValueError(f"resolution must be even and at least 64x48, got {self.width_px}x{self.height_px}")
        if self.fps <= 0 or self.duration_s <= 0:
            raise ValueError(f"fps and duration must be positive, got {self.fps} fps, {self.duration_s} s")

    @property
    def frame_count(self) -> int:
        return max(2, int(round(self.fps * self.duration_s)))


@dataclass(frozen=True)
class Participant:
    participant_id: str
    leg_length_frac: float  # hip-to-ankle length when standing on the landing square, / image height
    thigh_ratio: float  # thigh / (thigh + shank)
    hip_half_width: float  # / leg length
    stance_half_width: float  # / leg length
    valgus: float  # medial knee shift per unit sin(flexion/2), / thigh length
    peak_flexion_deg: float
    centre_x_frac: float
    skin_bgr: tuple[int, int, int]
    shorts_bgr: tuple[int, int, int]
    shirt_bgr: tuple[int, int, int]
    shoe_bgr: tuple[int, int, int]
    brightness: float


def _draw_participant(rng: np.random.Generator, index: int) -> Participant:
    def colour(lo: int, hi: int) -> tuple[int, int, int]:
        return tuple(int(c) for c in rng.integers(lo, hi, size=3))

    skin = rng.uniform(0.35, 1.0)
    return Participant(
        participant_id=f"P{index + 1:03d}",
        leg_length_frac=float(rng.uniform(0.36, 0.44)),
        thigh_ratio=float(rng.uniform(0.47, 0.54)),
        hip_half_width=float(rng.uniform(0.16, 0.22)),
        stance_half_width=float(rng.uniform(0.17, 0.26)),
        valgus=float(rng.uniform(0.0, 0.5)),
        peak_flexion_deg=float(rng.uniform(55, 90)),
        centre_x_frac=float(rng.uniform(0.42, 0.58)),
        skin_bgr=(int(120 * skin), int(150 * skin + 20), int(200 * skin + 40)),
        shorts_bgr=colour(20, 200),
        shirt_bgr=colour(30, 230),
        shoe_bgr=colour(10, 250),
        brightness=float(rng.uniform(0.85, 1.1)),
    )


def _smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _motion(t: float, peak_flexion: float) -> tuple[float, float, float, float]:
    """Scale, foot height (fraction of leg length above the floor line), knee flexion (rad), lead-foot lift.

    Phases (normalised time): standing on the box, stepping off, flight, landing
    with knee flexion, recovery, standing.
    """
    box_height = 0.45
    if t < 0.18:
        return 0.84, box_height, math.radians(8), 0.0
    if t < 0.30:
        u = _smooth((t - 0.18) / 0.12)
        return 0.84 + 0.04 * u, box_height, math.radians(8 + 20 * u), 0.12 * math.sin(math.pi * u)
    if t < 0.42:
        u = (t - 0.30) / 0.12
        height = box_height * (1 - u * u) + 0.05 * math.sin(math.pi * u)
        return 0.88 + 0.12 * u, height, math.radians(28 - 18 * u), 0.0
    if t < 0.60:
        u = _smooth((t - 0.42) / 0.18)
        return 1.0, 0.0, math.radians(10) + (peak_flexion - math.radians(10)) * u, 0.0
    if t < 0.85:
        u = _smooth((t - 0.60) / 0.25)
        return 1.0, 0.0, peak_flexion + (math.radians(6) - peak_flexion) * u, 0.0
    return 1.0, 0.0, math.radians(6), 0.0


def landmark_positions(p: Participant, t: float, width: int, height: int) -> dict[str, tuple[float, float]]:
    """True image position (x, y in px) of each landmark at normalised time ``t``."""
    scale, foot_height, flexion, lead_lift = _motion(t, math.radians(p.peak_flexion_deg))
    floor_y = 0.84 * height
    leg = p.leg_length_frac * height * scale
    thigh, shank = leg * p.thigh_ratio, leg * (1 - p.thigh_ratio)
    centre_x = p.centre_x_frac * width
    # Far away (on the box) the body sits higher in the image: the floor recedes.
    base_y = floor_y - (1 - scale) / 0.16 * 0.2 * height - foot_height * leg
    fold = math.cos(flexion / 2)
    out: dict[str, tuple[float, float]] = {}
    # Participant's right side is image left (facing the camera); medial is toward centre_x.
    for side, sign in (("right", -1.0), ("left", 1.0)):
        lift = lead_lift * leg if side == "right" else 0.0
        side_flex = flexion + (math.radians(30) * (lead_lift / 0.12) if side == "right" else 0.0)
        side_fold = math.cos(side_flex / 2)
        ankle = (centre_x + sign * p.stance_half_width * leg, base_y - lift)
        hip_y = base_y - leg * fold
        hip = (centre_x + sign * p.hip_half_width * leg, hip_y)
        knee_y = hip_y + thigh * side_fold
        knee_x = hip[0] + (ankle[0] - hip[0]) * p.thigh_ratio
        knee_x -= sign * p.valgus * thigh * math.sin(side_flex / 2)
        foot_drop = 0.10 * leg
        out[f"{side}_hip"] = hip
        out[f"{side}_knee"] = (knee_x, knee_y)
        out[f"{side}_ankle"] = ankle
        out[f"{side}_medial_foot"] = (ankle[0] - sign * 0.045 * leg, ankle[1] + foot_drop)
        out[f"{side}_lateral_foot"] = (ankle[0] + sign * 0.055 * leg, ankle[1] + foot_drop * 0.85)
    _ = shank
    return out


def _render_frame(p: Participant, points: dict[str, tuple[float, float]], width: int, height: int,
                  rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    import cv2

    img = background.copy()
    leg = p.leg_length_frac * height
    shift = 4  # fixed-point bits for sub-pixel drawing

    def pt(xy: tuple[float, float]) -> tuple[int, int]:
        return int(round(xy[0] * (1 << shift))), int(round(xy[1] * (1 << shift)))

    def thick(a, b, width_frac, colour):
        cv2.line(img, pt(a), pt(b), colour, max(1, int(width_frac * leg)), cv2.LINE_AA, shift)

    rh, lh = points["right_hip"], points["left_hip"]
    waist_y = min(rh[1], lh[1]) - 0.18 * leg
    # torso (shirt) up out of frame, pelvis (shorts)
    torso = np.array([pt((rh[0] - 0.02 * leg, waist_y)), pt((lh[0] + 0.02 * leg, waist_y)),
                      pt((lh[0] + 0.05 * leg, -10)), pt((rh[0] - 0.05 * leg, -10))], np.int32)
    cv2.fillConvexPoly(img, torso, p.shirt_bgr, cv2.LINE_AA, shift)
    for side in ("right", "left"):
        hip, knee, ankle = points[f"{side}_hip"], points[f"{side}_knee"], points[f"{side}_ankle"]
        thick(knee, ankle, 0.11, p.skin_bgr)
        mid = ((hip[0] + knee[0]) / 2, (hip[1] + knee[1]) / 2)
        thick(hip, knee, 0.15, p.skin_bgr)
        thick(hip, mid, 0.17, p.shorts_bgr)
        med, lat = points[f"{side}_medial_foot"], points[f"{side}_lateral_foot"]
        shoe = np.array([pt((ankle[0] - 0.06 * leg, ankle[1] - 0.03 * leg)),
                         pt((ankle[0] + 0.06 * leg, ankle[1] - 0.03 * leg)),
                         pt((max(med[0], lat[0]) + 0.03 * leg, max(med[1], lat[1]) + 0.03 * leg)),
                         pt((min(med[0], lat[0]) - 0.03 * leg, max(med[1], lat[1]) + 0.03 * leg))], np.int32)
        cv2.fillConvexPoly(img, shoe, p.shoe_bgr, cv2.LINE_AA, shift)
    pelvis = np.array([pt((rh[0] - 0.03 * leg, waist_y)), pt((lh[0] + 0.03 * leg, waist_y)),
                       pt((lh[0] + 0.03 * leg, lh[1] + 0.12 * leg)), pt((rh[0] - 0.03 * leg, rh[1] + 0.12 * leg))],
                      np.int32)
    cv2.fillConvexPoly(img, pelvis, p.shorts_bgr, cv2.LINE_AA, shift)
    radius = max(1, int(round(0.025 * leg * (1 << shift))))
    for name in ("right_hip", "left_hip", "right_medial_foot", "right_lateral_foot",
                 "left_medial_foot", "left_lateral_foot"):
        cv2.circle(img, pt(points[name]), radius, MARKER_BGR, -1, cv2.LINE_AA, shift)
    noise = rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) * p.brightness + noise, 0, 255).astype(np.uint8)


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    img = np.zeros((height, width, 3), np.uint8)
    wall = rng.integers(150, 200)
    img[:] = (wall, wall - 5, wall - 15)
    horizon = int(0.55 * height)
    img[horizon:] = (95, 110, 125)
    # the box participants step off, behind the landing area
    bw, top = 0.32 * width, 0.47 * height
    cv2.rectangle(img, (int(width / 2 - bw / 2), int(top)), (int(width / 2 + bw / 2), int(0.64 * height)),
                  (60, 90, 120), -1)
    square = np.array(landing_square_corners_px(width, height), np.int32)
    cv2.polylines(img, [square], True, (230, 230, 230), max(1, height // 120), cv2.LINE_AA)
    return img


def landing_square_corners_px(width: int, height: int) -> list[list[float]]:
    """The taped 61x61 cm landing square in perspective: far-left, far-right, near-right, near-left."""
    near_y, far_y = 0.98 * height, 0.70 * height
    near_half, far_half = 0.33 * width, 0.25 * width
    return [[width / 2 - far_half, far_y], [width / 2 + far_half, far_y],
            [width / 2 + near_half, near_y], [width / 2 - near_half, near_y]]


def truth_file(video: Path) -> Path:
    return video.with_name(f"{video.stem}.truth.csv")


def write_video_h264(path: Path, frames_bgr: Iterable[np.ndarray], width: int, height: int, fps: float) -> str:
    """Stream frames into an H.264 mp4 with the ffmpeg shipped by imageio-ffmpeg; returns the codec used."""
    import imageio_ffmpeg

    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=fps, codec="libx264", pix_fmt_in="bgr24",
            pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-crf", "16", "-preset", "fast", "-f", "mp4"],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames_bgr:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return "h264"


def generate_cohort(out_dir: Path, options: SynthOptions) -> Path:
    """Write videos, per-frame ground truth and ``cohort.json``; skip participants already written."""
    out_dir = Path(out_dir)
    videos_dir = out_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(options.seed)
    participants = [_draw_participant(rng, i) for i in range(options.participants)]
    n = options.frame_count
    for p in participants:
        video = videos_dir / f"{p.participant_id}.mp4"
        truth = truth_file(video)
        if video.exists() and truth.exists():
            log.info("participant %s: video already written, skipped", p.participant_id)
            continue
        p_rng = np.random.default_rng([options.seed, int(p.participant_id[1:])])
        background = _background(options.width_px, options.height_px, p_rng)
        positions = [landmark_positions(p, i / (n - 1), options.width_px, options.height_px) for i in range(n)]
        frames = (_render_frame(p, points, options.width_px, options.height_px, p_rng, background)
                  for points in positions)
        write_video_h264(video, frames, options.width_px, options.height_px, options.fps)
        rows = [{"frame_index": i, **{f"{name}_{axis}": points[name][k] for name in FRONTAL_BODYPARTS
                                      for k, axis in enumerate("xy")}} for i, points in enumerate(positions)]
        with atomic_path(truth) as tmp:  # written last: a video with its truth file is complete
            pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.3f")
        log.info("participant %s: %d frames at %dx%d, %.0f fps -> %s", p.participant_id, n,
                 options.width_px, options.height_px, options.fps, video)
    write_json_atomic(out_dir / COHORT_FILE, {
        "kind": "synthetic",
        "bodyparts": list(FRONTAL_BODYPARTS),
        "scorer": SCORER,
        "options": asdict(options),
        "label_noise_sd_px": label_noise_sd_px(options.height_px),
        # where the tape is in the image (integer pixels, as drawn): gives errors in mm (posesweep.scale)
        "landing_square": {"corners_px": [[int(x), int(y)] for x, y in
                                          landing_square_corners_px(options.width_px, options.height_px)],
                           "side_mm": 610},
        "participants": [asdict(p) for p in participants],
    })
    return out_dir


def label_noise_sd_px(image_height_px: int) -> dict[str, float]:
    scale = image_height_px / 1080
    out = {}
    for name in FRONTAL_BODYPARTS:
        kind = name.split("_", 1)[1]
        out[name] = LABEL_NOISE_SD_PX_AT_1080[kind] * scale
    return out


def simulate_labels(truth_csv: Path, frame_indices: list[int], image_height_px: int, seed: int) -> pd.DataFrame:
    """What a careful human labeler would click: truth plus per-landmark Gaussian noise.

    Returns a wide frame indexed by frame index with ``<landmark>_x``/``_y`` columns.
    """
    truth = pd.read_csv(truth_csv).set_index("frame_index")
    missing = sorted(set(frame_indices) - set(truth.index))
    if missing:
        raise ValueError(f"{truth_csv}: no ground truth for frames {missing[:10]}")
    picked = truth.loc[list(frame_indices)].copy()
    sd = label_noise_sd_px(image_height_px)
    stem_code = int.from_bytes(Path(truth_csv).name.encode()[:8].ljust(8, b"\0"), "little")
    for frame_index in picked.index:
        rng = np.random.default_rng([seed, stem_code, int(frame_index)])
        for name in FRONTAL_BODYPARTS:
            dx, dy = rng.normal(0, sd[name], 2)
            picked.loc[frame_index, f"{name}_x"] += dx
            picked.loc[frame_index, f"{name}_y"] += dy
    return picked

