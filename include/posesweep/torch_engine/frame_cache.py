"""A frame set's training frames, decoded once, and their labels, where the training step runs.

Frames are kept as uint8 (a 1920x1080 frame is 6.2 MB; the paper's largest frame set
of 720 training frames, 4.5 GB), in GPU memory when they fit in half of what is free,
else in pinned host memory (copied per batch without blocking); also there where a training
step ran out of GPU memory beside the frames (``frames_on_device=False``). Frames of different
sizes are padded with black to the largest (bottom and right), so one tensor holds
them; the labels do not move, and each frame's own size is kept (augmentation works
within it). Each frame is decoded straight into its slot (sizes come
from the label table), so building the cache never holds the frame set twice; a cache
the host could not hold fails before it is built, saying how much memory to give.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import LabelFileError, MemoryTooSmallError
from ..images import read_rgb

log = logging.getLogger(__name__)
GPU_SHARE = 0.5  # of the free device memory the cache may take; the rest is the model's
HOST_SHARE = 0.7  # of the available host memory a host-side cache may take; the rest is the process's


@dataclass
class FrameCache:
    frames: torch.Tensor  # (N, 3, H, W) uint8
    keypoints: torch.Tensor  # (N, K, 2) float32 x, y in px; NaN where not labelled
    names: list[tuple[str, str]]  # (video, image) of each frame
    where: str  # "device" or "pinned host memory" or "host memory"
    sizes: torch.Tensor | None = None  # (N, 2) float32 height, width in px of each frame where they differ, else None

    @property
    def height(self) -> int:
        return int(self.frames.shape[2])

    @property
    def width(self) -> int:
        return int(self.frames.shape[3])

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, indices: torch.Tensor, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(uint8 frames, keypoints, each frame's (height, width) or None where all have one size) of the indexed
        frames, on ``device``."""
        if self.frames.device.type == torch.device(device).type:  # "cuda" is not equal to the cache's "cuda:0"
            if device.type == "cuda" and indices.device.type == "cpu":  # a pageable copy would wait for the GPU
                indices = indices.pin_memory().to(device, non_blocking=True)
            return self.frames[indices], self.keypoints[indices], self._sizes_of(indices, device)
        host = indices.cpu()
        if not self.frames.is_pinned():
            return self.frames[host].to(device), self.keypoints[host].to(device), self._sizes_of(host, device)
        # gathered into pinned memory (an indexed tensor is pageable: its copy would wait); a new buffer per batch,
        # which PyTorch's host allocator reuses only once the copy from it has finished
        staged = torch.empty((len(host), *self.frames.shape[1:]), dtype=self.frames.dtype, pin_memory=True)
        torch.index_select(self.frames, 0, host, out=staged)
        return (staged.to(device, non_blocking=True), self.keypoints[host].to(device, non_blocking=True),
                self._sizes_of(host, device))

    def _sizes_of(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor | None:
        return None if self.sizes is None else self.sizes[indices].to(device, non_blocking=True)


def keypoints_of(labels: pd.DataFrame, frames: list[tuple[str, str]], bodyparts: list[str]) -> np.ndarray:
    """(frames, bodyparts, 2) label coordinates in px, NaN where a landmark is not labelled."""
    table = labels.set_index(["video", "image", "landmark"])[["x_px", "y_px"]]
    wanted = pd.MultiIndex.from_tuples([(video, image, bodypart) for video, image in frames for bodypart in bodyparts])
    return table.reindex(wanted).to_numpy(dtype=np.float32).reshape(len(frames), len(bodyparts), 2)


def available_host_bytes() -> int:
    """Memory this process can still take: the kernel's MemAvailable, or less where a cgroup (a pod's memory
    limit) leaves less."""
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    available = int(fields["MemAvailable"].split()[0]) * 1024
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):  # no cgroup v2 memory controller here
        pass
    return available


def check_fits_in_host_memory(nbytes: int, available: int, frames: int, height: int, width: int) -> None:
    """A host-side cache that would take more than HOST_SHARE of the available memory fails before it is built:
    the machine (or pod) would kill the trainer part way, and every retry on it the same."""
    if nbytes <= HOST_SHARE * available:
        return
    needed_gib = nbytes / HOST_SHARE / 2**30
    raise MemoryTooSmallError(
        f"the frame cache of {frames} frames of {width}x{height} px needs {nbytes / 2**30:.1f} GiB of host memory",
        found=f"{available / 2**30:.1f} GiB available", allowed=f"at most {HOST_SHARE:.0%} of it for frames",
        fix=f"give the trainer at least {needed_gib:.0f} GiB (POSESWEEP_K8S_MEMORY for a pod), train on a GPU "
            f"with room for the frames, or lower the largest of frame_set_sizes")


def frame_sizes(labels: pd.DataFrame, frames: list[tuple[str, str]]) -> np.ndarray:
    """(frames, 2) height, width in px of each frame, as the label table recorded them (cv2-decoded, validated)."""
    sizes = labels.drop_duplicates(["video", "image"]).set_index(["video", "image"])[
        ["image_height_px", "image_width_px"]]
    return sizes.reindex(pd.MultiIndex.from_tuples(frames)).to_numpy(dtype=np.int64)


def cache_placement(device_type: str, nbytes: int, free_device_bytes: int, frames_on_device: bool = True) -> str:
    """Where a cache of ``nbytes`` goes: ``device`` (a GPU with room: half of what is free, the rest is the
    model's), else ``pinned host memory`` beside a GPU (also when ``frames_on_device`` is False: a step ran out of
    GPU memory beside them), else ``host memory``."""
    if device_type != "cuda":
        return "host memory"
    return "device" if frames_on_device and nbytes <= GPU_SHARE * free_device_bytes else "pinned host memory"


def load_frame_cache(labeled_data: Path, frames: list[tuple[str, str]], labels: pd.DataFrame,
                     bodyparts: list[str], device: torch.device, frames_on_device: bool = True) -> FrameCache:
    """Decode each frame once, straight into its slot of the cache: on ``device`` if it fits there (host memory
    then holds one decoded frame at a time) and ``frames_on_device``, else in (pinned) host memory if that has
    room."""
    sizes = frame_sizes(labels, frames)
    height, width = (int(v) for v in sizes.max(axis=0))
    nbytes = len(frames) * 3 * height * width
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    where = cache_placement(device.type, nbytes, free, frames_on_device)
    on_device, pin = where == "device", where == "pinned host memory"
    if not on_device:
        check_fits_in_host_memory(nbytes, available_host_bytes(), len(frames), height, width)
    # on the device, each frame is copied there as it is decoded: host memory never holds the frame set
    stack = torch.zeros((len(frames), 3, height, width), dtype=torch.uint8, pin_memory=pin,
                        device=device if on_device else "cpu")
    for i, (video, image) in enumerate(frames):
        rgb = read_rgb(labeled_data / video / image)
        if rgb.shape[:2] != tuple(sizes[i]):
            raise LabelFileError("a labeled image changed after its labels were validated",
                                 file=labeled_data / video / image,
                                 found=f"{rgb.shape[1]}x{rgb.shape[0]} px",
                                 allowed=f"{sizes[i][1]}x{sizes[i][0]} px, the size validated with its labels",
                                 fix="put back the image the labels were made on, or trigger a new run")
        stack[i, :, :rgb.shape[0], :rgb.shape[1]] = torch.from_numpy(rgb).permute(2, 0, 1).to(stack.device)
    keypoints = torch.from_numpy(keypoints_of(labels, frames, bodyparts)).to(stack.device)
    padded = len(np.unique(sizes, axis=0)) > 1
    log.info("frame cache: %d frames of %dx%d px%s (%.0f MB uint8) in %s", len(frames), width, height,
             " (smaller ones padded)" if padded else "", nbytes / 1e6, where)
    own_sizes = torch.from_numpy(sizes.astype(np.float32)).to(stack.device) if padded else None
    return FrameCache(stack, keypoints, list(frames), where, own_sizes)
