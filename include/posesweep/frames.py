"""k-means frame selection per video, written where DeepLabCut's GUI expects it.

One sequential decode pass downsamples every frame (grayscale, 30 px wide, as
DeepLabCut does) into a float32 matrix bounded by the downsampled size; a seeded
MiniBatchKMeans clusters it and the member nearest each centroid is picked, so
the same seed gives the same frames. A second sequential pass writes the picked
frames as ``labeled-data/<video stem>/img<index>.png``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import atomic_path, read_json, write_json_atomic

log = logging.getLogger(__name__)

DOWNSAMPLED_WIDTH_PX = 30


class VideoError(RuntimeError):
    """A video cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frame_count: int
    fps: float
    width_px: int
    height_px: int


def probe_video(video: Path) -> VideoInfo:
    import cv2

    video = Path(video)
    if not video.is_file():
        raise VideoError(f"{video}: file does not exist")
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise VideoError(f"{video}: cannot be opened as a video (unreadable or not a video file)")
        info = VideoInfo(video, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS)),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    if info.frame_count <= 0 or info.width_px <= 0:
        raise VideoError(f"{video}: reports {info.frame_count} frames of {info.width_px}x{info.height_px} px")
    return info


def image_name(frame_index: int, frame_count: int) -> str:
    """DeepLabCut's name for an extracted frame: ``img`` + zero-padded index."""
    width = int(math.ceil(math.log10(max(frame_count, 2))))
    return f"img{str(frame_index).zfill(width)}.png"


def _downsampled_features(video: Path, info: VideoInfo, indices: np.ndarray) -> np.ndarray:
    import cv2

    height = max(1, int(round(info.height_px * DOWNSAMPLED_WIDTH_PX / info.width_px)))
    wanted = np.zeros(info.frame_count + 1, bool)
    wanted[indices] = True
    features = np.empty((len(indices), height * DOWNSAMPLED_WIDTH_PX), np.float32)
    cap = cv2.VideoCapture(str(video))
    row, frame_index = 0, 0
    try:
        last = int(indices[-1])
        while frame_index <= last:
            if wanted[frame_index]:
                ok, frame = cap.read()
                if not ok:
                    break
                small = cv2.resize(frame, (DOWNSAMPLED_WIDTH_PX, height), interpolation=cv2.INTER_AREA)
                features[row] = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).ravel()
                row += 1
            elif not cap.grab():
                break
            frame_index += 1
    finally:
        cap.release()
    if row < len(indices):
        raise VideoError(f"{video}: decoding stopped at frame {frame_index} of {info.frame_count} "
                         f"(truncated or corrupt file)")
    return features


def select_frames_kmeans(features: np.ndarray, n_frames: int, seed: int) -> np.ndarray:
    """Row indices of the member nearest each k-means centroid, ascending."""
    from sklearn.cluster import MiniBatchKMeans

    kmeans = MiniBatchKMeans(n_clusters=n_frames, random_state=seed, n_init=3,
                             batch_size=max(256, 4 * n_frames))
    labels = kmeans.fit_predict(features)
    distances = np.linalg.norm(features - kmeans.cluster_centers_[labels], axis=1)
    picked = []
    for cluster in range(n_frames):
        members = np.flatnonzero(labels == cluster)
        if len(members):
            picked.append(members[np.argmin(distances[members])])
    # Empty clusters (duplicate frames): fill with the frames farthest from any pick.
    if len(picked) < n_frames:
        chosen = set(picked)
        order = np.argsort(-distances)
        picked += [i for i in order if i not in chosen][: n_frames - len(picked)]
    return np.sort(np.asarray(picked, int))


def _write_picked(video: Path, frame_indices: list[int], out_dir: Path, frame_count: int) -> None:
    import cv2

    todo = set(frame_indices)
    cap = cv2.VideoCapture(str(video))
    frame_index = 0
    try:
        while todo and frame_index <= max(frame_indices):
            if frame_index in todo:
                ok, frame = cap.read()
                if not ok:
                    break
                ok, png = cv2.imencode(".png", frame)
                with atomic_path(out_dir / image_name(frame_index, frame_count)) as tmp:
                    tmp.write_bytes(png.tobytes())
                todo.discard(frame_index)
            elif not cap.grab():
                break
            frame_index += 1
    finally:
        cap.release()
    if todo:
        raise VideoError(f"{video}: frames {sorted(todo)[:5]} could not be decoded for writing")


def extract_frames(video: Path, labeled_data_dir: Path, record_file: Path, n_frames: int, seed: int,
                   start_fraction: float = 0.0, stop_fraction: float = 1.0, step: int = 1) -> dict:
    """Pick ``n_frames`` frames of ``video`` by k-means and write them; skip if already complete."""
    video = Path(video)
    out_dir = Path(labeled_data_dir) / video.stem
    if record_file.exists():
        record = read_json(record_file)
        if all((out_dir / name).exists() for name in record["image_names"]):
            log.info("%s: %d frames already extracted, skipped", video.name, len(record["frame_indices"]))
            return record
    if not 0.0 <= start_fraction < stop_fraction <= 1.0 or step < 1:
        raise ValueError(f"invalid range start={start_fraction} stop={stop_fraction} step={step}")
    started = time.perf_counter()
    info = probe_video(video)
    candidates = np.arange(int(start_fraction * info.frame_count),
                           max(1, int(math.ceil(stop_fraction * info.frame_count))), step)
    if len(candidates) < n_frames:
        raise VideoError(f"{video}: {len(candidates)} candidate frames, fewer than the {n_frames} asked for")
    features = _downsampled_features(video, info, candidates)
    rows = select_frames_kmeans(features, n_frames, seed)
    frame_indices = [int(candidates[r]) for r in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_picked(video, frame_indices, out_dir, info.frame_count)
    record = {
        "video": str(video),
        "video_stem": video.stem,
        "frame_count": info.frame_count,
        "fps": info.fps,
        "width_px": info.width_px,
        "height_px": info.height_px,
        "frame_indices": frame_indices,
        "image_names": [image_name(i, info.frame_count) for i in frame_indices],
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(record_file, record)
    log.info("%s: picked %d of %d frames by k-means in %.1f s", video.name, n_frames, info.frame_count,
             record["seconds"])
    return record
