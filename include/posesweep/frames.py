"""k-means frame selection per video, written where DeepLabCut's GUI expects it.

One sequential, multi-threaded ffmpeg decode pass downsamples every frame in
native code (grayscale, 30 px wide, as DeepLabCut does) and streams it into a
float32 matrix bounded by the downsampled size, not by the video's length; a
seeded MiniBatchKMeans clusters it and the member nearest each centroid is
picked, so the same seed gives the same frames. A second pass decodes only up
to the last picked frame and writes the picks as
``labeled-data/<video stem>/img<index>.png``. No per-frame seeking.

ffmpeg is the one shipped inside the imageio-ffmpeg wheel.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import VideoError
from .layout import atomic_path, read_json, visible_entries, write_json_atomic

log = logging.getLogger(__name__)

DOWNSAMPLED_WIDTH_PX = 30
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # the frames a DeepLabCut project's labeled-data folders hold
PROGRESS_INTERVAL_S = 30.0  # a decode pass of a long recording says where it is this often in the task log


class DecodeProgress:
    """A task-log line every ``PROGRESS_INTERVAL_S`` while one decode pass reads a video: the frame it is at, of how
    many, its speed and the time left (a 10-minute 1080p recording takes minutes per pass on a small machine, and
    several are decoded at once: without it the log said nothing until each video was done)."""

    def __init__(self, video: Path, doing: str, frames: int):
        self.video, self.doing, self.frames = video, doing, frames
        self.started = self.said = time.monotonic()

    def at(self, frame: int) -> None:
        """Frame ``frame`` (counted from 1) was just read."""
        now = time.monotonic()
        if now - self.said < PROGRESS_INTERVAL_S:
            return
        self.said = now
        rate = frame / max(now - self.started, 1e-9)
        log.info("%s: %s, frame %d of %d (%.0f frames/s, ETA %.1f min)", self.video.name, self.doing, frame,
                 self.frames, rate, (self.frames - frame) / rate / 60)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frame_count: int
    fps: float
    width_px: int
    height_px: int
    display_rotation_deg: int = 0  # a phone's rotation tag; frames are used as stored, as DeepLabCut reads them
    opencv_decodes: bool = True  # OpenCV (DeepLabCut's analyze_videos) decodes its first frame on this machine
    codec: str = ""  # the four-character code OpenCV reports (avc1, hvc1, av01, ...)


def probe_video(video: Path) -> VideoInfo:
    import cv2

    video = Path(video)
    if not video.is_file():
        raise VideoError(f"{video}: file does not exist")
    size_bytes = video.stat().st_size
    if size_bytes == 0:
        raise VideoError(f"{video}: the file is empty (0 bytes): a copy that did not finish? Copy the video again")
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise VideoError(f"{video}: cannot be opened as a video ({_size(size_bytes)}: a copy cut short, a damaged "
                             f"file or not a video at all; compare its size with the original's)")
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        info = VideoInfo(video, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS)),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                         int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360, bool(cap.read()[0]),
                         "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 "))
    finally:
        cap.release()
    if info.frame_count <= 0 or info.width_px <= 0:
        raise VideoError(f"{video}: reports {info.frame_count} frames of {info.width_px}x{info.height_px} px")
    return info


def _size(size_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} bytes"


def video_fingerprint(video: Path) -> str:
    """Size and modification time: a replaced or re-encoded video is extracted again."""
    stat = Path(video).stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def link_frames(record: dict, source_labeled_data: Path, target_labeled_data: Path, target_record: Path) -> dict:
    """Put already extracted frames into another project (hard links where possible, else copies)."""
    source = Path(source_labeled_data) / record["video_stem"]
    target = Path(target_labeled_data) / record["video_stem"]
    target.mkdir(parents=True, exist_ok=True)
    for name in record["image_names"]:
        if (target / name).exists():
            continue
        try:
            os.link(source / name, target / name)
        except OSError:
            with atomic_path(target / name) as tmp:
                tmp.write_bytes((source / name).read_bytes())
    write_json_atomic(target_record, record)
    return record


def image_name(frame_index: int, frame_count: int) -> str:
    """DeepLabCut's name for an extracted frame: ``img`` + zero-padded index."""
    width = int(math.ceil(math.log10(max(frame_count, 2))))
    return f"img{str(frame_index).zfill(width)}.png"


def frame_index_of(image: str) -> int:
    """The video frame an image holds, from DeepLabCut's name for it (``img0042.png`` -> 42); -1 for images named
    otherwise (another tool's ``cam1_0042.png``: its digits are not known to be a frame index)."""
    named = re.fullmatch(r"img(\d+)", Path(image).stem)
    return int(named.group(1)) if named else -1


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class FfmpegFrames:
    """Raw frames from one ffmpeg decode pass; ``pts_s`` holds each frame's timestamp once iterated."""

    _pts = re.compile(r"pts_time:\s*([-0-9.e]+)")

    def __init__(self, video: Path, filters: str, frame_bytes: int, max_frames: int | None = None):
        self.video, self.frame_bytes = video, frame_bytes
        # -noautorotate: a rotation tag must not turn the frames (nor swap their width and height): DeepLabCut
        # reads videos through OpenCV, which returns them as stored, and the labels must match those pixels
        self.command = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "info", "-threads", "0", "-noautorotate",
                        "-i", str(video), "-map", "0:v:0", "-an", "-vf", filters, "-fps_mode", "passthrough"]
        if max_frames is not None:
            self.command += ["-frames:v", str(max_frames)]
        self.command += ["-f", "rawvideo", "-"]
        self.pts_s: list[float] = []

    def __iter__(self):
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   bufsize=self.frame_bytes * 8)
        messages: list[str] = []

        def read_stderr() -> None:  # showinfo prints one line per frame, with its pts
            for raw in process.stderr:
                line = raw.decode(errors="replace")
                match = self._pts.search(line)
                if match:
                    self.pts_s.append(float(match.group(1)))
                elif line.strip():
                    messages.append(line.strip())

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            while len(chunk := process.stdout.read(self.frame_bytes)) == self.frame_bytes:
                yield chunk
        finally:
            process.stdout.close()
            process.wait()
            reader.join(timeout=10)
        if process.returncode != 0:
            raise VideoError(f"{self.video}: ffmpeg could not decode it ({messages[-1] if messages else 'no message'})")


def _check_constant_rate(video: Path, pts: list[float], fps: float) -> None:
    if len(pts) < 3:
        return
    deltas = np.diff(np.asarray(pts))
    nominal = 1.0 / fps if fps > 0 else float(np.median(deltas))
    irregular = np.abs(deltas - nominal) > 0.5 * nominal
    if irregular.mean() > 0.01:
        raise VideoError(f"{video}: variable frame rate ({int(irregular.sum())} of {len(deltas)} frame intervals "
                         f"differ from 1/{fps:g} s by more than half); frame indices would not match DeepLabCut's. "
                         f"Re-encode it at a constant rate, `ffmpeg -i {video.name} -fps_mode cfr -r {fps:g} -c:v "
                         f"libx264 -crf 18 -pix_fmt yuv420p {video.stem}_cfr.mp4`, then move the original out of "
                         f"videos/ and name the new file {video.stem}.mp4")


def _downsampled_features(video: Path, info: VideoInfo, indices: np.ndarray) -> np.ndarray:
    height = max(2, int(round(info.height_px * DOWNSAMPLED_WIDTH_PX / info.width_px / 2)) * 2)
    frame_bytes = DOWNSAMPLED_WIDTH_PX * height
    wanted = np.zeros(info.frame_count + 1, bool)
    wanted[indices[indices <= info.frame_count]] = True
    features = np.empty((len(indices), frame_bytes), np.float32)
    filters = f"scale={DOWNSAMPLED_WIDTH_PX}:{height}:flags=area,format=gray,showinfo"
    row = decoded = 0
    stream = FfmpegFrames(video, filters, frame_bytes)
    progress = DecodeProgress(video, "reading every frame for k-means", info.frame_count)
    for frame_index, chunk in enumerate(stream):
        decoded += 1
        progress.at(decoded)
        if frame_index < len(wanted) and wanted[frame_index]:
            features[row] = np.frombuffer(chunk, np.uint8)
            row += 1
    if decoded < 0.98 * info.frame_count or row < len(indices):
        raise VideoError(f"{video}: decoded {decoded} of the {info.frame_count} frames its header announces "
                         f"(truncated or corrupt file)")
    _check_constant_rate(video, stream.pts_s, info.fps)
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


def _write_picked(video: Path, frame_indices: list[int], out_dir: Path, info: VideoInfo) -> None:
    """Decode up to the last picked frame, keep only the picked ones (ffmpeg's select filter), write PNGs."""
    import cv2

    todo = [i for i in frame_indices if not (out_dir / image_name(i, info.frame_count)).exists()]
    if not todo:
        return
    select = "+".join(f"eq(n\\,{i})" for i in todo)
    frame_bytes = info.width_px * info.height_px * 3
    shape = (info.height_px, info.width_px, 3)
    written = 0
    progress = DecodeProgress(video, f"writing the {len(todo)} picked frames (decoding up to the last)", todo[-1] + 1)
    for frame_index, chunk in zip(todo, FfmpegFrames(video, f"select={select},format=bgr24", frame_bytes,
                                                     max_frames=len(todo))):
        progress.at(frame_index + 1)
        ok, png = cv2.imencode(".png", np.frombuffer(chunk, np.uint8).reshape(shape))
        with atomic_path(out_dir / image_name(frame_index, info.frame_count)) as tmp:
            tmp.write_bytes(png.tobytes())
        written += 1
    if written < len(todo):
        raise VideoError(f"{video}: frames {todo[written:][:5]} could not be decoded for writing")


def extract_frames(video: Path, labeled_data_dir: Path, record_file: Path, n_frames: int, seed: int) -> dict:
    """Pick ``n_frames`` frames of ``video`` by k-means and write them; skip if already complete."""
    video = Path(video)
    out_dir = Path(labeled_data_dir) / video.stem
    fingerprint = video_fingerprint(video) if video.exists() else None
    if record_file.exists():
        record = read_json(record_file)
        if record.get("video_fingerprint") == fingerprint and all(
                (out_dir / name).exists() for name in record["image_names"]):
            log.info("%s: %d frames already extracted, skipped", video.name, len(record["frame_indices"]))
            return record
        for name in record["image_names"]:  # the video changed: its old frames must not mix with the new
            (out_dir / name).unlink(missing_ok=True)
    started = time.perf_counter()
    info = probe_video(video)
    if info.display_rotation_deg:
        log.warning("%s: tagged to be shown rotated by %d degrees; its frames are extracted as stored, as DeepLabCut "
                    "reads the video (they look rotated against a video player)", video.name,
                    info.display_rotation_deg)
    if not info.opencv_decodes:
        log.warning("%s: OpenCV cannot decode this video on this machine (codec %s), so DeepLabCut's analyze_videos "
                    "will not read it; its frames are extracted with ffmpeg and the study goes on. To analyse it with "
                    "the trained network later, re-encode it to H.264 (ffmpeg -i %s -c:v libx264 -crf 18 "
                    "-pix_fmt yuv420p %s.mp4)", video.name, info.codec or "unknown", video.name,
                    f"{video.stem}_h264")
    candidates = np.arange(info.frame_count)
    if len(candidates) < n_frames:
        raise VideoError(f"{video}: {len(candidates)} frames, fewer than the {n_frames} asked for (frames_per_video): "
                         f"lower frames_per_video to at most {len(candidates)}, or leave this video out")
    features = _downsampled_features(video, info, candidates)
    rows = select_frames_kmeans(features, n_frames, seed)
    frame_indices = [int(candidates[r]) for r in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_picked(video, frame_indices, out_dir, info)
    record = {
        "video": str(video),
        "video_stem": video.stem,
        "frame_count": info.frame_count,
        "fps": info.fps,
        "width_px": info.width_px,
        "height_px": info.height_px,
        "opencv_decodes": info.opencv_decodes,
        "frame_indices": frame_indices,
        "image_names": [image_name(i, info.frame_count) for i in frame_indices],
        "seed": seed,
        "video_fingerprint": fingerprint,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(record_file, record)
    log.info("%s: picked %d of %d frames by k-means in %.1f s", video.name, n_frames, info.frame_count,
             record["seconds"])
    return record


def import_extracted_frames(folder: Path, labeled_data_dir: Path, record_file: Path) -> dict:
    """Frames a DeepLabCut project already extracted: copied into the run's project, recorded like ours."""
    import cv2

    folder = Path(folder)
    out_dir = Path(labeled_data_dir) / folder.name
    images = [p for p in visible_entries(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise VideoError(f"{folder}: no extracted frames (png/jpg)")
    first = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise VideoError(f"{images[0]}: not a readable image")
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in images:
        target = out_dir / image.name
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_bytes(image.read_bytes())
    record = {
        "video": str(folder),
        "video_stem": folder.name,
        "frame_count": None,
        "fps": None,
        "width_px": int(first.shape[1]),
        "height_px": int(first.shape[0]),
        "frame_indices": [frame_index_of(p.name) for p in images],
        "image_names": [p.name for p in images],
        "seed": None,
        "imported_from": str(folder),
    }
    write_json_atomic(record_file, record)
    log.info("%s: %d frames imported from an existing DeepLabCut project", folder.name, len(images))
    return record
