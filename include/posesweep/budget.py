"""What a study will cost before it starts: training time on the configured backend, and disk.

Stated by ``prepare_run`` before anyone labels or trains. On the local backend
(this machine's CPU) a study expected to train for more than a day stops there,
with the estimate and the two ways out, unless ``allow_long_cpu_run`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import StudyConfig
from .errors import StudyConfigError

# DeepLabCut's TensorFlow ResNet-50 at batch 1 on this project's 2-core CPU: 0.15 s per iteration at 160x120,
# 0.9 s at 640x480; a line through both, in pixels per frame.
# posesweep's PyTorch trainer (ResNet-50, batch 1) on the same CPU: ~0.4 s per iteration at 160x120, ~1.0 s at
# 320x240 (benchmarks/training_throughput.py); a line through both.
CPU_SECONDS_PER_ITERATION = {"tensorflow": (0.10, 2.6e-6), "pytorch": (0.20, 1.04e-5)}
# a snapshot: DeepLabCut TF (.data + .index + .meta), or a PyTorch state dict (ResNet-50 plus heads: ~100 MB)
SNAPSHOT_BYTES = {"resnet_50": 110e6, "resnet_101": 180e6, "resnet_50_bn": 100e6}
PNG_BYTES_PER_PIXEL = 1.5  # an extracted frame, twice: the shared frame store and the run's project links none
MAX_CPU_HOURS = 24.0


@dataclass(frozen=True)
class Budget:
    backend: str
    seconds_per_iteration: float
    training_hours: float
    disk_bytes: float

    def describe(self, study: StudyConfig) -> str:
        return (f"{len(study.frame_set_sizes)} networks x {study.max_iterations:,} iterations x "
                f"{self.seconds_per_iteration:.3g} s/iteration = {self.training_hours:.1f} h of training on the "
                f"{self.backend} backend; about {self.disk_bytes / 1e9:.1f} GB of disk")


def estimate(study: StudyConfig, frame_size_px: tuple[int, int], frames: int, backend: str,
             gpu_seconds_per_iteration: float) -> Budget:
    if backend == "local":
        a, b = CPU_SECONDS_PER_ITERATION[study.engine]
        per_iteration = (a + b * frame_size_px[0] * frame_size_px[1]) * study.batch_size
    else:
        per_iteration = gpu_seconds_per_iteration * study.batch_size
    networks = len(study.frame_set_sizes)
    snapshots = study.max_iterations // study.snapshot_interval
    disk = (networks * snapshots * SNAPSHOT_BYTES[study.network]
            + frames * frame_size_px[0] * frame_size_px[1] * PNG_BYTES_PER_PIXEL)
    return Budget(backend, per_iteration, networks * study.max_iterations * per_iteration / 3600, disk)


def check(budget: Budget, study: StudyConfig, free_bytes: int, data_root: str) -> None:
    """Refuse a study the machine cannot finish: too little disk, or days of CPU training unasked."""
    if budget.disk_bytes > free_bytes:
        raise StudyConfigError(
            "not enough free disk for the study's snapshots and frames", file=data_root,
            found=f"{free_bytes / 1e9:.1f} GB free", allowed=f"about {budget.disk_bytes / 1e9:.1f} GB needed",
            fix="free disk under the data root, or keep fewer snapshots (raise snapshot_interval) or frame sets")
    if budget.backend == "local" and budget.training_hours > MAX_CPU_HOURS and not study.allow_long_cpu_run:
        raise StudyConfigError(
            "training would take more than a day on this machine's CPU", found=budget.describe(study),
            allowed=f"at most {MAX_CPU_HOURS:.0f} h on the local backend",
            fix="run it on GPUs (POSESWEEP_TRAINING_BACKEND=kubernetes), lower max_iterations, or trigger with "
                "allow_long_cpu_run=true to train on this CPU anyway")
