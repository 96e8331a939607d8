"""What a study will cost before it starts: training time on the configured backend, and disk.

Stated by ``prepare_run`` before anyone labels or trains. On the local backend
without a GPU (this machine's CPU) a study expected to train for more than a day stops there,
with the estimate and the two ways out, unless ``allow_long_cpu_run`` is set. On the local
backend of a machine with GPUs (a lab's workstation; ``gpus.machine_gpus``) the estimate is a GPU's,
at the rate the operator expects of its GPUs (``POSESWEEP_K8S_SECONDS_PER_ITERATION``, as for pods), unless the
study's engine sees none of them (``gpus.gpus_not_seen``): its networks would then train on the CPU, the estimate's.
The CPU estimate is of the 2-core machine the table below was measured on; a
deployment whose CPU trains N times as fast says so with ``POSESWEEP_CPU_SPEEDUP=N``
(``benchmarks/cpu_training_cost.py`` measures N on the machine itself).

Once the deployment has trained a network of the same engine and backbone on the same kind of device (on a CPU:
this host), for ``MIN_ITERATIONS_FOR_A_RATE`` iterations or more, on frames of about the same size, the estimate is
that training's own speed instead (``measured_rate``): every training writes its speed, batch size, frame size and
device into its ``training.json``.
"""

from __future__ import annotations

import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from .config import StudyConfig
from .errors import StudyConfigError
from .layout import read_json, write_json_atomic

# Seconds per iteration at batch 1 on this project's 2-core CPU (no GPU), by frame size in pixels:
# benchmarks/cpu_training_cost.py on 2026-12-03 (DeepLabCut's TensorFlow training; posesweep's PyTorch trainer,
# DeepLabCut 3's resnet_50). Between two sizes a line through both; beyond the table, its last (or first) line.
# Machines differ (this one's speed varies up to 3x between days; more cores train faster): an estimate.
CPU_SECONDS_PER_ITERATION: dict[str, tuple[tuple[int, float], ...]] = {
    "tensorflow": ((160 * 120, 0.377), (320 * 240, 0.411), (640 * 480, 1.300), (1280 * 720, 3.263),
                   (1920 * 1080, 7.030)),
    "pytorch": ((160 * 120, 0.315), (320 * 240, 0.512), (640 * 480, 1.765), (1280 * 720, 5.030),
                (1920 * 1080, 15.40)),
}
# What each image of a batch beyond the first adds to an iteration on this CPU, as a fraction of a batch-1
# iteration, by frame size in pixels: (t4 / t1 - 1) / 3 from benchmarks/cpu_training_cost.py --batch-sizes 1 4 on
# 2026-12-06 (benchmarks/results/2026-12-06-cpu-batch/). Small frames pay a batch's fixed work once (the
# optimizer's step over ResNet-50's weights, per-step overhead): at 160x120 a batch of 4 took 1.8 times a batch of
# 1, not 4. Large ones cost more than in proportion with the PyTorch engine (at 1280x720, 5.7 times; why was not
# measured). Between sizes a line through both; beyond the table, its first (or last) value.
CPU_EXTRA_IMAGE_FRACTION: dict[str, tuple[tuple[int, float], ...]] = {
    "tensorflow": ((160 * 120, 0.26), (640 * 480, 0.60), (1280 * 720, 0.68)),
    "pytorch": ((160 * 120, 0.28), (640 * 480, 1.03), (1280 * 720, 1.55)),
}
# a snapshot: DeepLabCut TF (.data + .index + .meta: 98.8 MB for resnet_50), or a PyTorch state dict (96.3 MB);
# the initial weights are one more of the same size, and the PyTorch trainer keeps its newest resumable state
# (model and optimizer: two snapshots' size) per network, two of them while it writes the next; while a network
# trains, its resume point between snapshots (PyTorch: weights and optimizer, three; TensorFlow: the network, one;
# two of them while the next is written) is there too, and gone once the network is done (transient: counted for
# every network, as a GPU pool may train all at once)
SNAPSHOT_BYTES = {"resnet_50": 110e6, "resnet_101": 180e6, "resnet_50_bn": 100e6}
TRAIN_STATE_SNAPSHOTS = {"tensorflow": 0, "pytorch": 4}
RESUME_POINT_SNAPSHOTS = {"tensorflow": 2, "pytorch": 6}
# Scoring one frame at a snapshot (a forward pass, in batches) as a fraction of a batch-1 training iteration on the
# same device and frames (forward and backward), by engine and frame size in pixels (between sizes a line through
# both; beyond the table, its first or last value): every snapshot of every network scores all of its frames, train
# and test, so at the paper's scale (10 snapshots x 2,000 frames) scoring adds about a day on this CPU. Measured on
# this project's 2-core CPU on 2026-12-06, training's s/iteration against scoring's s/image (scoring alone, after
# training) in the same `make study` run (the machine's speed varies by day, the ratio less): the synthetic cohort's
# 160x120 frames, TensorFlow 0.037 s/image against 0.23 s/iteration, PyTorch 0.028 against 0.24; the Reaching
# project's 832x747, TensorFlow 0.49 against 0.80, PyTorch 0.80 against 2.4; on 2026-12-07, those frames upscaled to
# the paper's 1920x1080, PyTorch 3.5 against 14 (each alone; 0.33 there overstated scoring by a third). Small frames
# train at a fixed cost per step (the optimizer's update of ResNet-50's weights) that scoring does not pay. Not
# measured on a GPU: used there too.
SCORING_FRACTION: dict[str, tuple[tuple[int, float], ...]] = {
    "tensorflow": ((160 * 120, 0.16), (832 * 747, 0.61)),
    "pytorch": ((160 * 120, 0.12), (832 * 747, 0.33), (1920 * 1080, 0.25)),
}
PNG_BYTES_PER_PIXEL = 1.5  # an extracted frame, twice: the shared frame store and the run's project links none
MAX_CPU_HOURS = 24.0
FIRST_LOOK_HOURS = 0.5  # a run that shows a lab the whole study on its own data, not its answer
MIN_ITERATIONS_FOR_A_RATE = 1000  # fewer: a speed over a few progress lines (and start-up in older records' speed)
MAX_PIXEL_RATIO_FOR_A_RATE = 2.0  # a measured speed is scaled in pixels per frame only this far


@dataclass(frozen=True)
class MeasuredRate:
    """An earlier training's own speed, as seconds per iteration at batch 1 on this study's frame size (on a CPU a
    batch of n counted as ``cpu_batch_iterations`` batch-1 iterations, on a GPU as n)."""

    seconds_per_iteration: float
    record: Path  # its training.json
    described: str  # what was measured: frames, batch, device


def speed_fields(batch_size: int, frame_size_px: tuple[int, int], on_gpu: bool,
                 progress: tuple[tuple[float, int], tuple[float, int]] | None) -> dict:
    """What a training writes into its ``training.json`` beside its speed for a later study's estimate.

    ``progress`` is the (time in s, iteration) of its first and last progress line: the speed between them,
    ``iterations_per_second_after_start_up``, leaves out the start-up (imports, frame cache, compilation, a CUDA
    graph's capture), which on a GPU can take longer than a thousand iterations and would make a short
    training's overall speed a fraction of what a study's hours run at."""
    after_start_up = None
    if progress is not None:
        (first_s, first_iteration), (last_s, last_iteration) = progress
        if last_iteration > first_iteration and last_s > first_s:
            after_start_up = round((last_iteration - first_iteration) / (last_s - first_s), 3)
    return {"batch_size": batch_size, "frame_size_px": list(frame_size_px), "on_gpu": on_gpu,
            "host": socket.gethostname(), "iterations_per_second_after_start_up": after_start_up}


def _rate(record: dict) -> float:
    """A training's iterations per second once started (its overall speed where it has no progress lines'
    speed: recorded before that field, or too short for two lines)."""
    return record.get("iterations_per_second_after_start_up") or record["iterations_per_second"]


def measured_rate(data_root: Path, study: StudyConfig, frame_size_px: tuple[int, int],
                  on_gpu: bool) -> MeasuredRate | None:
    """The newest earlier training under the data root of the study's engine and network, on the same kind of
    device (a CPU: this host's; a GPU: at the study's ``precision``), of ``MIN_ITERATIONS_FOR_A_RATE`` or more
    iterations on frames within ``MAX_PIXEL_RATIO_FOR_A_RATE`` of this study's in pixels (time per iteration taken
    to grow with the pixels, and with the batch as ``cpu_batch_iterations`` says on a CPU, in proportion on a GPU);
    None where there is none."""
    pixels = frame_size_px[0] * frame_size_px[1]
    found = []
    for path in Path(data_root).glob("runs/*/*/training/frame_set_*/training.json"):
        try:
            record, written = read_json(path), path.stat().st_mtime
            measured_pixels = record["frame_size_px"][0] * record["frame_size_px"][1]
            trained = max(record["snapshot_iterations"]) - record["resumed_from_iteration"]
            usable = (record["engine"] == study.engine and record["network"] == study.network
                      and record["on_gpu"] is on_gpu and (on_gpu or record["host"] == socket.gethostname())
                      # a GPU's fp32 runs at a fraction of its bf16 or fp16 speed (a CPU trains in fp32 either way)
                      and (not on_gpu or record.get("precision", "auto") == study.precision)
                      and trained >= MIN_ITERATIONS_FOR_A_RATE and _rate(record) > 0
                      and 1 / MAX_PIXEL_RATIO_FOR_A_RATE <= pixels / measured_pixels <= MAX_PIXEL_RATIO_FOR_A_RATE)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):  # being written, or from before
            continue
        if usable:
            found.append((written, str(path), record, measured_pixels, trained))
    if not found:
        return None
    _, path, record, measured_pixels, trained = max(found, key=lambda item: item[:2])
    batch = record["batch_size"] if on_gpu else cpu_batch_iterations(study.engine, record["frame_size_px"],
                                                                    record["batch_size"])
    seconds = pixels / measured_pixels / _rate(record) / batch
    width, height = record["frame_size_px"]
    return MeasuredRate(seconds, Path(path), f"{trained:,} iterations at batch {record['batch_size']} on {width}x"
                                             f"{height} frames, {record['device']}")


@dataclass(frozen=True)
class Budget:
    backend: str
    seconds_per_iteration: float
    training_hours: float
    disk_bytes: float  # the study's outputs and, while networks train, their resume points (transient)
    cpu_speedup: float = 1.0  # POSESWEEP_CPU_SPEEDUP: this machine's CPU against the table's (local backend)
    transient_disk_bytes: float = 0.0  # the part of disk_bytes only needed while networks train
    local_gpus: int = 0  # the GPUs the local backend trains on (none: its CPU)
    measured: MeasuredRate | None = None  # an earlier training's own speed, where there is one
    scoring_hours: float = 0.0  # every network's frames scored at each of its snapshots
    scored_images_per_snapshot: int = 0  # over all networks: the sum of the frame-set sizes

    @property
    def hours(self) -> float:
        """Training and scoring: what a lab waits for."""
        return self.training_hours + self.scoring_hours

    @property
    def on_cpu(self) -> bool:
        return self.backend == "local" and not self.local_gpus

    def describe(self, study: StudyConfig) -> str:
        where = (f"{self.backend} backend" if not self.local_gpus else f"local backend's {self.local_gpus} GPU(s)")
        if self.measured is not None:
            where += (f", at the speed an earlier training measured ({self.measured.described}: "
                      f"{self.measured.record}, scaled to this study's frames and batch)")
        elif self.local_gpus:
            where += ", at the expected GPU rate (POSESWEEP_K8S_SECONDS_PER_ITERATION)"
        snapshots = study.max_iterations // study.snapshot_interval
        scoring = (f", and {_duration(self.scoring_hours * 3600)} scoring each network's frames at its "
                   f"{snapshots} snapshots ({self.scored_images_per_snapshot:,} frames each time)"
                   if self.scoring_hours else "")
        networks = len(study.frame_set_sizes)
        return (f"{networks} network{'s' if networks != 1 else ''} x {study.max_iterations:,} iterations x "
                f"{self.seconds_per_iteration:.3g} s/iteration = {_duration(self.training_hours * 3600)} of "
                f"training on the {where}{scoring}; about {self.disk_bytes / 1e9:.1f} GB of disk")


def _duration(seconds: float) -> str:
    """Hours from one hour on; a short study's minutes or seconds (it read "0.0 h")."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def record_expected_speed(budget: Budget, target: Path) -> None:
    """Keep the estimate's speed with the run: a pod's deadline follows it (``kubernetes.deadline_s``), so a
    deployment whose GPUs an earlier training measured slower than ``POSESWEEP_K8S_SECONDS_PER_ITERATION`` says
    does not have its pods stopped while they train as fast as they can."""
    write_json_atomic(target, {"seconds_per_iteration": budget.seconds_per_iteration,
                               "measured_by": str(budget.measured.record) if budget.measured else None})


def expected_seconds_per_iteration(target: Path) -> float | None:
    """What ``record_expected_speed`` kept; None for a run prepared before it did."""
    return float(read_json(target)["seconds_per_iteration"]) if target.exists() else None


def cpu_seconds_per_iteration(engine: str, frame_size_px: tuple[int, int]) -> float:
    """One training iteration at batch 1 on the local backend: the measured table, interpolated in pixels."""
    points = CPU_SECONDS_PER_ITERATION[engine]
    pixels = frame_size_px[0] * frame_size_px[1]
    (x0, y0), (x1, y1) = next(((a, b) for a, b in zip(points, points[1:]) if pixels <= b[0]), points[-2:])
    if pixels < x0:  # smaller than any measured: not less than half the smallest's time (fixed costs remain)
        return max(y0 / 2, y0 + (y1 - y0) * (pixels - x0) / (x1 - x0))
    return y0 + (y1 - y0) * (pixels - x0) / (x1 - x0)


def cpu_batch_iterations(engine: str, frame_size_px: tuple[int, int], batch_size: int) -> float:
    """An iteration at ``batch_size`` on a CPU, in batch-1 iterations: 1 plus each further image's measured share
    (``CPU_EXTRA_IMAGE_FRACTION``)."""
    extra = _within_table(CPU_EXTRA_IMAGE_FRACTION[engine], frame_size_px)
    return 1 + extra * (batch_size - 1)


def _within_table(points: tuple[tuple[int, float], ...], frame_size_px: tuple[int, int]) -> float:
    """A measured table by frame size in pixels: a line through the two sizes around this one; beyond the table,
    its first (or last) value."""
    pixels = frame_size_px[0] * frame_size_px[1]
    if pixels <= points[0][0]:
        return points[0][1]
    if pixels >= points[-1][0]:
        return points[-1][1]
    (x0, y0), (x1, y1) = next((a, b) for a, b in zip(points, points[1:]) if pixels <= b[0])
    return y0 + (y1 - y0) * (pixels - x0) / (x1 - x0)


def estimate(study: StudyConfig, frame_size_px: tuple[int, int], frames: int, backend: str,
             gpu_seconds_per_iteration: float, cpu_speedup: float = 1.0, local_gpus: int = 0,
             measured: MeasuredRate | None = None) -> Budget:
    """The study's cost; ``local_gpus``: the GPUs the local backend trains on (0: its CPU, the measured table);
    ``measured``: an earlier training's speed on the same kind of device, which then decides."""
    local_gpus = local_gpus if backend == "local" else 0
    on_cpu = backend == "local" and not local_gpus
    batch = cpu_batch_iterations(study.engine, frame_size_px, study.batch_size) if on_cpu else study.batch_size
    if measured is not None:
        per_iteration, cpu_speedup = measured.seconds_per_iteration * batch, 1.0
    elif on_cpu:
        per_iteration = cpu_seconds_per_iteration(study.engine, frame_size_px) * batch / cpu_speedup
    else:
        per_iteration = gpu_seconds_per_iteration * study.batch_size
    networks = len(study.frame_set_sizes)
    snapshots = study.max_iterations // study.snapshot_interval
    scored = sum(study.frame_set_sizes)  # each network scores its frame set, train and test, at every snapshot
    scoring_hours = (snapshots * scored * _within_table(SCORING_FRACTION[study.engine], frame_size_px)
                     * per_iteration / batch / 3600)
    snapshot = SNAPSHOT_BYTES[study.network]
    transient = networks * RESUME_POINT_SNAPSHOTS[study.engine] * snapshot
    disk = (snapshot + networks * (snapshots + TRAIN_STATE_SNAPSHOTS[study.engine]) * snapshot
            + frames * frame_size_px[0] * frame_size_px[1] * PNG_BYTES_PER_PIXEL + transient)
    return Budget(backend, per_iteration, networks * study.max_iterations * per_iteration / 3600, disk,
                  cpu_speedup if backend == "local" and not local_gpus else 1.0, transient, local_gpus, measured,
                  scoring_hours, scored)


def written_bytes(folders: list[Path]) -> int:
    """What is already on disk under the folders, each file once (the run's frames are links into the cohort's
    frame store)."""
    seen, total = set(), 0
    for folder in folders:
        for path in Path(folder).rglob("*") if Path(folder).is_dir() else []:
            try:
                info = path.stat(follow_symlinks=False)
            except OSError:  # removed while looking
                continue
            if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def iterations_within(budget: Budget, study: StudyConfig, hours: float) -> dict[str, int]:
    """``max_iterations`` and ``snapshot_interval`` that train and score the study's networks within ``hours`` at
    the budget's speed, with as many snapshots per network as the study asks where that fits, else as many as fit
    (halved down to 2, each scoring every network's frames); the interval rounded down to two significant digits.
    Nothing where not even one iteration per snapshot fits."""
    asked = study.max_iterations // study.snapshot_interval
    scoring_per_snapshot_s = budget.scoring_hours * 3600 / asked
    for snapshots in sorted({asked, *(n for n in (asked // 2, asked // 4, 2) if 2 <= n < asked)}, reverse=True):
        training_s = hours * 3600 - snapshots * scoring_per_snapshot_s
        interval = int(training_s / (len(study.frame_set_sizes) * budget.seconds_per_iteration) / snapshots)
        if interval >= 1:
            step = 10 ** max(0, len(str(interval)) - 2)
            interval = interval // step * step
            return {"max_iterations": interval * snapshots, "snapshot_interval": interval}
    return {}


def disk_problem(budget: Budget, free_bytes: int, data_root: str, written: int = 0) -> StudyConfigError | None:
    """Too little disk under the data root for the study's snapshots and frames."""
    if budget.disk_bytes > free_bytes + written:
        return StudyConfigError(
            "not enough free disk for the study's snapshots and frames", file=data_root,
            found=f"{free_bytes / 1e9:.1f} GB free" + (f" (and {written / 1e9:.1f} GB of the study's outputs already "
                                                        f"written)" if written else ""),
            allowed=f"about {budget.disk_bytes / 1e9:.1f} GB needed",
            fix="free disk under the data root, or keep fewer snapshots (raise snapshot_interval) or frame sets")
    return None


def cpu_time_problem(budget: Budget, study: StudyConfig) -> StudyConfigError | None:
    """More than ``MAX_CPU_HOURS`` of training and scoring on the local backend's CPU, unasked
    (``allow_long_cpu_run``)."""
    if budget.on_cpu and budget.hours > MAX_CPU_HOURS and not study.allow_long_cpu_run:
        shorter = iterations_within(budget, study, MAX_CPU_HOURS)
        glance = iterations_within(budget, study, FIRST_LOOK_HOURS)
        kept = shorter and shorter["max_iterations"] // shorter["snapshot_interval"]
        lower = "lower max_iterations" + (
            f" ({', '.join(f'{k}={v}' for k, v in shorter.items())} keep "
            + (f"the {kept}" if kept == study.max_iterations // study.snapshot_interval else f"{kept}")
            + f" snapshots per network and train and score in under {MAX_CPU_HOURS:.0f} h here" + (
                f"; a first look at the whole study on this cohort in about {FIRST_LOOK_HOURS * 60:.0f} min, too "
                f"short to learn from (the report says so): {', '.join(f'{k}={v}' for k, v in glance.items())}"
                if glance else "") + ")" if shorter else "")
        return StudyConfigError(
            "training would take more than a day on this machine's CPU", found=budget.describe(study),
            allowed=f"at most {MAX_CPU_HOURS:.0f} h on the local backend", parameters=shorter,
            first_look_parameters=glance or None,
            fix=f"run it on GPUs (POSESWEEP_TRAINING_BACKEND=kubernetes), {lower}, or trigger with "
                "allow_long_cpu_run=true to train on this CPU anyway" + (
                    " (the estimate is this machine's own earlier training's speed)" if budget.measured is not None
                    else " (the estimate is of a 2-core CPU" + (f" sped up {budget.cpu_speedup:g} times by "
                                                                  "POSESWEEP_CPU_SPEEDUP" if budget.cpu_speedup != 1
                                                                  else "") +
                    "; benchmarks/cpu_training_cost.py measures this machine's speed-up, for the operator to set as "
                    "POSESWEEP_CPU_SPEEDUP)"))
    return None
