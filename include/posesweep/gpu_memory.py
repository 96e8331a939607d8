"""What to say when a training step runs out of GPU memory, and whether a retry can help.

A ResNet-50 at stride 8 on whole 1920x1080 frames needs several GiB of activations per image: a batch that fits
an 80 GiB H100 does not fit a lab's 12 or 24 GiB card. PyTorch's ``OutOfMemoryError`` and TensorFlow's
``ResourceExhaustedError`` say how much they tried to allocate, deep in a traceback; the task would retry the
same step on the same GPU. Here the error becomes one paragraph: an input error when the step alone held
(nearly) the whole GPU, so that only a smaller batch or a larger GPU helps; a transient one when other processes
held much of it (another training sharing the GPU), so that a retry once they end may fit, or when this process's
decoded frames or snapshot scorer held part of it, so that the retry runs without them on the GPU.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from .errors import (GpuMemorySharedWithFramesError, GpuMemorySharedWithScoringError, GpuMemoryTakenError,
                     GpuMemoryTooSmallError, PosesweepError)

# Other processes holding more than this share of the GPU make the shortage theirs, not the step's.
OTHERS_SHARE = 0.25
GIB = 2**30


@dataclass(frozen=True)
class GpuMemory:
    """The GPU's memory when the step failed, in bytes."""

    name: str
    total: int
    held_here: int  # reserved by this process's caching allocator
    free: int
    frames: int = 0  # of what is held here, the frame cache's

    @property
    def held_by_others(self) -> int:
        return max(0, self.total - self.held_here - self.free)

    @classmethod
    def of(cls, device, frames: int = 0) -> "GpuMemory":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return cls(torch.cuda.get_device_name(device), total, torch.cuda.memory_reserved(device), free, frames)

    @classmethod
    def of_tensorflow(cls) -> "GpuMemory":
        """TensorFlow's first GPU: what its allocator held at its peak (the trainer's and the snapshot scorer's),
        the GPU's size and use from ``nvidia-smi``; without it, as if this process held all of the GPU."""
        import tensorflow as tf

        gpu = tf.config.list_physical_devices("GPU")[0]
        name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        held = int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        total, used = nvidia_smi_memory(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]) or (held, held)
        return cls(name, total, held, max(0, total - used))


def nvidia_smi_memory(gpu: str) -> tuple[int, int] | None:
    """The GPU's total and used memory in bytes, as ``nvidia-smi`` reports it (every process's), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total,memory.used", "--format=csv,noheader,nounits",
                              "-i", gpu], capture_output=True, text=True, timeout=30)
        total_mib, used_mib = (int(v) for v in out.stdout.split(","))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return total_mib * 2**20, used_mib * 2**20


def step_out_of_memory(memory: GpuMemory, batch_size: int, width_px: int, height_px: int, precision: str,
                       frame_set_size: int) -> PosesweepError:
    """The error for a step that ran out of GPU memory, retryable where other processes held the memory or where
    the frame cache held part of it (the retry keeps the frames off the GPU)."""
    found = (f"batch_size={batch_size} of {width_px}x{height_px} px frames ({precision}) on {memory.name} with "
             f"{memory.total / GIB:.1f} GiB: this training held {memory.held_here / GIB:.1f} GiB"
             + (f" (its frames {memory.frames / GIB:.1f} GiB of it)" if memory.frames else "")
             + f", other processes {memory.held_by_others / GIB:.1f} GiB")
    what = f"frame set {frame_set_size}: the training step ran out of GPU memory"
    if memory.held_by_others > OTHERS_SHARE * memory.total:
        return GpuMemoryTakenError(what, found=found, allowed="the GPU to this training (or room beside others)",
                                   fix="train fewer networks per GPU at once (the Airflow pool POSESWEEP_GPU_POOL "
                                       "bounds them) or stop what else uses this GPU; the task is retried")
    if memory.frames:  # the frame cache took up to half of what was free: the step may fit without it
        return out_of_memory_beside_the_frames(what, found)
    smaller = "lower batch_size (the paper trains at 1)" if batch_size > 1 else \
        "downscale the videos before the study (each halving of width and height quarters the memory)"
    return GpuMemoryTooSmallError(what, found=found, allowed=f"a step that fits in {memory.total / GIB:.1f} GiB",
                                  fix=f"{smaller}, or train on a GPU with more memory (POSESWEEP_K8S_NODE_SELECTOR "
                                      f"picks the cluster's nodes)")


def out_of_memory_beside_the_scorer(error: GpuMemoryTooSmallError) -> GpuMemorySharedWithScoringError:
    """A step that ran out of GPU memory while the TensorFlow engine's snapshot scorer shared the process (and its
    GPU allocator, whose peak counts both): not yet known to be too large, since the scorer's batches of whole
    frames may have taken the room. The retry runs without the scorer beside it (``stages.train``)."""
    return GpuMemorySharedWithScoringError(
        f"{error.what}, while the snapshot scorer beside it held GPU memory too", found=error.found,
        allowed="the training step and the scorer's batches together in the GPU's memory",
        fix="nothing: the retry resumes from the newest snapshot without scoring beside the training (the "
            "evaluation task scores every snapshot); should the step still not fit alone, that retry says what to "
            "change")


def out_of_memory_beside_the_frames(what: str, found: str) -> GpuMemorySharedWithFramesError:
    """A PyTorch step that ran out of GPU memory while the frame set's cache of decoded frames was on the GPU too
    (it takes up to half of what was free): not yet known to be too large. The retry keeps the frames in pinned
    host memory, copied per batch (``stages.train``; at batch 1 without the CUDA graph, which needs them on the
    GPU)."""
    return GpuMemorySharedWithFramesError(
        f"{what}, with the frame set's decoded frames held on the GPU beside it", found=found,
        allowed="the training step and the frames together in the GPU's memory",
        fix="nothing: the retry resumes from the newest snapshot with the frames in pinned host memory, copied to "
            "the GPU per batch; should the step still not fit alone, that retry says what to change")
