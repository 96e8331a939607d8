"""DeepLabCut TensorFlow training: initial weights, training datasets, one network per frame set.

Runs inside the ``posesweep`` CLI (a child process locally, a pod on a cluster),
never inside the Airflow worker, so TensorFlow stays out of the scheduler.

Initial weights: DeepLabCut's TF engine downloads ImageNet ResNet weights on
first use, which cannot work offline. posesweep resolves weights itself:
``POSESWEEP_PRETRAINED_CHECKPOINT`` (TF-slim's one-file checkpoint, or a prefix), else a checkpoint
baked into DeepLabCut's ``models/pretrained`` folder (the trainer image does this),
else -- only if the run allows it -- a randomly initialised ResNet whose
BatchNorm statistics are calibrated on the cohort's own frames (uncalibrated,
the loss turns NaN within 20 iterations). Random weights are logged as a
warning and flagged in the report.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .budget import speed_fields
from .config import StudyConfig
from .errors import TrainingDivergedError, TrainingFailedError
from .images import read_rgb
from .gpu_memory import GpuMemory, step_out_of_memory
from .gpus import gpu_given_but_unseen
from .pretrained import checkpoint_exists, tensorflow_checkpoint, unavailable
from .layout import RunLayout, atomic_path, read_json, write_json_atomic, write_text_atomic
from .provenance import record_fields
from .quiet import library_prints_silenced, logging_setup_skipped
from .resume_points import (TensorflowResumePoints, remove_tensorflow_resume_points, resume_point_seconds,
                            tensorflow_resume_point)
from .shuffles import DATASET_DONE, frame_positions, model_folder
from .splits import FrameSet, largest_frame

log = logging.getLogger(__name__)

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # DeepLabCut's mean_pixel
RESNET_SCOPES = {"resnet_50": "resnet_v1_50", "resnet_101": "resnet_v1_101"}
MIN_INPUT_SIZE_PX = 32  # DeepLabCut's default 64 rejects small frames after 0.5x scale jitter


@dataclass(frozen=True)
class InitialWeights:
    path: str  # TF checkpoint prefix
    kind: str  # "imagenet" | "random_init"

    def to_json_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind}


def resolve_initial_weights(network: str, allow_random_init: bool, weights_dir: Path,
                            calibration_images: list[Path], seed: int) -> InitialWeights:
    pretrained = tensorflow_checkpoint(network)
    if pretrained:
        log.info("initial weights: ImageNet-pretrained %s from %s", network, pretrained)
        return InitialWeights(pretrained, "imagenet")
    if not allow_random_init:
        raise unavailable("tensorflow", network)
    prefix = Path(weights_dir) / f"{RESNET_SCOPES[network]}_random_init.ckpt"
    if not checkpoint_exists(prefix):
        make_random_init_checkpoint(prefix, network, calibration_images, seed)
    log.warning("INITIAL WEIGHTS ARE RANDOM (no ImageNet checkpoint available): %s. Errors will be far higher "
                "than with pretrained weights; the report says so.", prefix)
    return InitialWeights(str(prefix), "random_init")


def make_random_init_checkpoint(prefix: Path, network: str, calibration_images: list[Path], seed: int) -> None:
    """A seeded random ResNet checkpoint whose BatchNorm moving statistics match the cohort's frames.

    DeepLabCut runs the backbone with ``is_training=False``, i.e. normalises with the
    moving statistics. Freshly initialised (mean 0, variance 1) they let activations
    explode through 50 layers. One forward pass in training mode with momentum 0
    sets every layer's moving statistics to the batch statistics of its actual input.
    """
    # DeepLabCut's shim: tf-slim's batch_norm needs tf_keras.legacy_tf_layers, which tf-keras keeps under src/
    import deeplabcut.pose_estimation_tensorflow._tf_legacy  # noqa: F401
    import tensorflow as tf
    import tf_slim as slim
    from tf_slim.nets import resnet_v1

    images = [read_rgb(p) for p in calibration_images]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:  # calibrate on the most common size
        common = max(shapes, key=lambda s: sum(im.shape == s for im in images))
        images = [im for im in images if im.shape == common]
    batch = np.stack(images[:16]).astype(np.float32)
    net_fn = {"resnet_50": resnet_v1.resnet_v1_50, "resnet_101": resnet_v1.resnet_v1_101}[network]
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        inputs = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3])
        centred = inputs - tf.constant(IMAGENET_MEAN_RGB, tf.float32, [1, 1, 1, 3])
        with slim.arg_scope(resnet_v1.resnet_arg_scope(batch_norm_decay=0.0)):
            net_fn(centred, global_pool=False, output_stride=16, is_training=True)
        updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        variables = slim.get_variables_to_restore(include=["resnet_v1"])
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(updates, feed_dict={inputs: batch})
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tmp = prefix.with_name(prefix.name + ".partial")
            tf.compat.v1.train.Saver(variables).save(sess, str(tmp), write_meta_graph=False)
    # checkpoint prefix files: <prefix>.index is written last, so it marks completeness
    for suffix in (".data-00000-of-00001", ".index"):
        os.replace(f"{tmp}{suffix}", f"{prefix}{suffix}")
    log.info("random-init %s checkpoint with BatchNorm calibrated on %d frames: %s", network, len(batch), prefix)


@contextlib.contextmanager
def _weights_resolved_by_posesweep(weights: InitialWeights):
    """Stop DeepLabCut from downloading weights while it creates a training dataset.

    ``create_training_dataset`` looks up (and downloads) ImageNet weights for the
    ``init_weights`` entry of pose_cfg.yaml; posesweep has already resolved them.
    """
    import deeplabcut.utils.auxfun_models as models

    original = models.check_for_weights
    models.check_for_weights = lambda modeltype, parent_path: weights.path
    try:
        yield
    finally:
        models.check_for_weights = original


def pose_cfg_paths(project_config: Path, frame_set: FrameSet) -> tuple[Path, Path, Path]:
    """(train pose_cfg.yaml, test pose_cfg.yaml, model folder) of a frame set's shuffle."""
    folder = model_folder(project_config, frame_set, _tf_engine())
    return folder / "train" / "pose_cfg.yaml", folder / "test" / "pose_cfg.yaml", folder


def _tf_engine():
    from deeplabcut.core.engine import Engine

    return Engine.TF


def create_training_datasets(project_config: Path, frame_sets: list[FrameSet], weights: InitialWeights,
                             study: StudyConfig, largest_frame_px: dict[int, tuple[int, int]]) -> None:
    """One DeepLabCut shuffle per frame set, with exactly our train/test frames; ``largest_frame_px``: each frame
    set's largest training frame (width, height), which DeepLabCut's loader must accept (``max_input_size``)."""
    import deeplabcut

    position = frame_positions(project_config, frame_sets)
    for fs in frame_sets:
        train_cfg_path, _, _ = pose_cfg_paths(project_config, fs)
        done = train_cfg_path.with_name(DATASET_DONE)
        if done.exists():
            log.info("frame set %d: DeepLabCut training dataset (shuffle %d) already exists, skipped",
                     fs.frame_set_size, fs.shuffle)
            continue
        with _weights_resolved_by_posesweep(weights), library_prints_silenced():
            deeplabcut.create_training_dataset(
                str(project_config), Shuffles=[fs.shuffle],
                trainIndices=[[position[f] for f in fs.train]], testIndices=[[position[f] for f in fs.test]],
                net_type=study.network, augmenter_type="imgaug", engine=_tf_engine(), userfeedback=False)
        pose_cfg = yaml.safe_load(train_cfg_path.read_text())
        edits = {"init_weights": weights.path, "min_input_size": MIN_INPUT_SIZE_PX, "batch_size": study.batch_size,
                 "multi_step": schedule_reaching(pose_cfg["multi_step"], study.max_iterations)}
        width, height = largest_frame_px[fs.frame_set_size]
        if (raised := max_input_size_for(width, height, pose_cfg)) is not None:
            edits["max_input_size"] = raised
            log.info("frame set %d: DeepLabCut's max_input_size raised from %d to %d px for the %dx%d px frames "
                     "(its loader stops training with 'Image size may be too large' on a frame over max_input_size "
                     "squared pixels after scaling)", fs.frame_set_size, pose_cfg.get("max_input_size", 1500),
                     raised, width, height)
        _edit_yaml(train_cfg_path, edits)
        write_text_atomic(done, "DeepLabCut's training dataset and posesweep's edits of pose_cfg.yaml are complete\n")
        log.info("frame set %d: shuffle %d with %d train / %d test frames", fs.frame_set_size, fs.shuffle,
                 len(fs.train), len(fs.test))


def max_input_size_for(width_px: int, height_px: int, pose_cfg: dict) -> int | None:
    """The ``max_input_size`` DeepLabCut's TensorFlow loader needs to accept a ``width_px`` x ``height_px`` frame at
    its largest training scale (``global_scale`` x ``scale_jitter_up``), where its own (1500 by default) is too
    small: it refuses a batch whose ceil-scaled frame has more than ``max_input_size`` squared pixels, and after
    ten refusals in a row stops training. None where the default already fits (every frame up to about 1080p)."""
    scale = float(pose_cfg.get("global_scale", 1.0))
    if "scale_jitter_lo" in pose_cfg and "scale_jitter_up" in pose_cfg:
        scale *= float(pose_cfg["scale_jitter_up"])
    pixels = math.ceil(width_px * scale) * math.ceil(height_px * scale)
    needed = math.isqrt(pixels - 1) + 1  # the least n with n * n >= pixels
    current = int(pose_cfg.get("max_input_size", 1500))
    return needed if needed > current else None


def schedule_reaching(multi_step: list[list[float]], max_iterations: int) -> list[list[float]]:
    """DeepLabCut stops at the last ``multi_step`` boundary: extend it so training reaches the requested max."""
    steps = [list(step) for step in multi_step]
    if steps[-1][1] < max_iterations:
        steps[-1][1] = max_iterations
    return steps


def _edit_yaml(path: Path, changes: dict) -> None:
    data = yaml.safe_load(Path(path).read_text())
    data.update(changes)
    write_text_atomic(Path(path), yaml.safe_dump(data, sort_keys=False))


def snapshot_iterations_in(train_dir: Path) -> list[int]:
    """Iterations of complete snapshots (their .index file is written last)."""
    found = []
    for index in Path(train_dir).glob("snapshot-*.index"):
        match = re.fullmatch(r"snapshot-(\d+)\.index", index.name)
        if match and Path(train_dir, f"snapshot-{match.group(1)}.data-00000-of-00001").exists():
            found.append(int(match.group(1)))
    return sorted(found)


class ProgressLog(logging.Filter):
    """Replaces DeepLabCut's "iteration: N loss: L lr: R" log lines by progress with speed and ETA; stops on NaN.

    Installed as a filter on the root logger (DeepLabCut logs there), so the raw line is dropped
    and one enriched line is printed instead.
    """

    pattern = re.compile(r"iteration: (\d+) loss: ([-+\w.]+) lr: ([-+\w.]+)")

    def __init__(self, frame_set_size: int, max_iterations: int,
                 on_progress: Callable[[int], None] | None = None, from_random_weights: bool = False):
        super().__init__()
        self.frame_set_size, self.max_iterations = frame_set_size, max_iterations
        self.from_random_weights = from_random_weights
        self.on_progress = on_progress  # called with the iteration of each line with a finite loss
        self.started = time.monotonic()
        self.first: tuple[float, int] | None = None  # (time, iteration) of the first line: start-up is over
        self.last: tuple[float, int] | None = None
        self.console = sys.stdout  # made before DeepLabCut's prints are silenced: its lines still reach the log

    def filter(self, record: logging.LogRecord) -> bool:
        match = self.pattern.search(record.getMessage())
        if not match:
            return True
        iteration, loss, lr = int(match.group(1)), float(match.group(2)), float(match.group(3))
        now = time.monotonic()
        prev_t, prev_it = self.last or (self.started, 0)
        s_per_it = (now - prev_t) / max(1, iteration - prev_it)
        self.last = (now, iteration)
        self.first = self.first or self.last
        eta = s_per_it * (self.max_iterations - iteration)
        print(f"[frame set {self.frame_set_size}] iteration {iteration}/{self.max_iterations} "
              f"loss {loss:.4f} lr {lr:g} {s_per_it:.3f} s/iteration ETA {eta / 60:.1f} min", flush=True,
              file=self.console)
        if not math.isfinite(loss):
            # through DeepLabCut's loop; the CLI reports it and ends the process
            raise TrainingDivergedError.of_network(
                self.frame_set_size, f"{loss} at iteration {iteration}",
                f"loss {loss} at iteration {iteration}, learning rate {lr:g}", "the network's pose_cfg.yaml",
                self.from_random_weights)
        if self.on_progress is not None:
            self.on_progress(iteration)
        return False


def shifted_schedule(multi_step: list[list[float]], start_iteration: int) -> list[list[float]]:
    """DeepLabCut's ``multi_step`` as seen from ``start_iteration``.

    On resume DeepLabCut counts the schedule from the restored snapshot; shifting
    the boundaries makes the learning rate continue where the killed run was.
    """
    return [[lr, int(boundary) - start_iteration] for lr, boundary in multi_step if boundary > start_iteration]


def _merge_learning_stats(before: Path, after: Path, start_iteration: int) -> None:
    """Keep the killed run's rows up to the resumed snapshot, then the resumed run's rows."""
    old = [line for line in before.read_text().splitlines() if line and int(line.split(",")[0]) <= start_iteration]
    new = [line for line in after.read_text().splitlines() if line] if after.exists() else []
    write_text_atomic(after, "\n".join(old + new) + "\n")


def seed_deeplabcuts_training(tf, seed: int) -> None:
    """Seed what DeepLabCut's TensorFlow training draws from: the new graph's initial weights of the heads, and
    its loader thread's frame picks (numpy) and augmentation (imgaug), so that a rerun on the same machine trains
    the same network (DeepLabCut leaves them unseeded)."""
    import imgaug

    tf.compat.v1.set_random_seed(seed)
    np.random.seed(seed % 2**32)
    imgaug.seed(seed % 2**32)


def train_frame_set(layout: RunLayout, frame_set: FrameSet, study: StudyConfig) -> dict:
    """Train the frame set's network to ``max_iterations``, keeping every snapshot.

    Skips a finished network; a killed one resumes from its newest resume point
    (``resume_points``) or, where there is none past it, its newest complete
    snapshot, with the learning-rate schedule continued and the learning-stats
    history kept.
    """
    record_file = layout.training_dir(frame_set.frame_set_size) / "training.json"
    expected = study.snapshot_iterations
    if record_file.exists():
        record = read_json(record_file)
        if record.get("snapshot_iterations") == expected:
            log.info("frame set %d: already trained (%d snapshots), skipped", frame_set.frame_set_size,
                     len(expected))
            return record
    import tensorflow as tf
    dlc_train_module = importlib.import_module("deeplabcut.pose_estimation_tensorflow.core.train")

    train_cfg, _, _ = pose_cfg_paths(layout.project_dir / "config.yaml", frame_set)
    original_cfg = train_cfg.with_name("pose_cfg.original.yaml")
    if not original_cfg.exists():
        _copy_atomic(train_cfg, original_cfg)
    stats = train_cfg.with_name("learning_stats.csv")
    weights = read_json(layout.run_dir / "weights" / "initial_weights.json")
    from_random_weights = weights["kind"] == "random_init"
    done = [it for it in snapshot_iterations_in(train_cfg.parent) if it in expected]
    start_iteration = max(done, default=0)
    start_weights = train_cfg.parent / f"snapshot-{start_iteration}"
    resume_point = tensorflow_resume_point(train_cfg.parent, start_iteration, study.max_iterations)
    remove_tensorflow_resume_points(train_cfg.parent, keep=resume_point[0] if resume_point else None)
    if resume_point is not None:
        start_iteration, start_weights = resume_point
    prefix = f"[frame set {frame_set.frame_set_size}]"
    if unseen := gpu_given_but_unseen("tensorflow", bool(tf.config.list_physical_devices("GPU"))):
        log.warning("%s %s", prefix, unseen)
    cfg = yaml.safe_load(original_cfg.read_text())
    if start_iteration:
        # DeepLabCut's snapshot prefix is derived from the config's own path, so the resume settings must live
        # in train/pose_cfg.yaml itself; the original is restored when training ends.
        cfg.update(init_weights=str(start_weights), multi_step=shifted_schedule(cfg["multi_step"], start_iteration))
        _copy_atomic(stats, stats.with_name(f"learning_stats.before-{start_iteration}.csv"))
        where = "the resume point at iteration" if resume_point is not None else "snapshot"
        print(f"{prefix} resuming from {where} {start_iteration} ({len(done)} of {len(expected)} snapshots "
              f"complete); learning-rate schedule continued", flush=True)
    write_text_atomic(train_cfg, yaml.safe_dump(cfg, sort_keys=False))
    display_iters = study.progress_interval
    # DeepLabCut's own train_network reloads the logging module, which would drop this progress filter;
    # its single-animal trainer is called directly with the shuffle's pose_cfg.yaml instead.
    root = logging.getLogger()
    resume_points = TensorflowResumePoints(train_cfg.parent, expected, resume_point_seconds(),
                                           frame_set.frame_set_size)
    progress = ProgressLog(frame_set.frame_set_size, study.max_iterations, resume_points.at_progress,
                           from_random_weights)
    root.addFilter(progress)
    started = time.perf_counter()
    print(f"{prefix} training {study.network} on {len(frame_set.train)} frames to {study.max_iterations} "
          f"iterations, snapshot every {study.snapshot_interval} (initial weights: {weights['kind']})", flush=True)
    try:
        if start_iteration < study.max_iterations:
            tf.compat.v1.reset_default_graph()
            seed_deeplabcuts_training(tf, study.seed + frame_set.frame_set_size + start_iteration)
            with (_quiet_loader_shutdown(prefix, tf.errors.CancelledError), library_prints_silenced(),
                  logging_setup_skipped(dlc_train_module), resume_points.session_caught(tf)):
                try:
                    dlc_train_module.train(str(train_cfg), display_iters, study.snapshot_interval,
                                           study.max_iterations - start_iteration, max_to_keep=None,
                                           keepdeconvweights=True, allow_growth=True)
                except tf.errors.InvalidArgumentError as error:  # tf-slim's check_numerics on the loss
                    if "is inf or nan" not in str(error):
                        raise
                    raise TrainingDivergedError.of_network(
                        frame_set.frame_set_size, "NaN or infinite", "TensorFlow: LossTensor is inf or nan",
                        str(train_cfg), from_random_weights) from None
                except tf.errors.ResourceExhaustedError as error:
                    if not ran_out_on_a_gpu(str(error)):
                        raise  # host memory: the kernel's out-of-memory killer and the runner say more
                    width, height = largest_frame(layout, frame_set)
                    raise step_out_of_memory(GpuMemory.of_tensorflow(), study.batch_size, width, height, "fp32",
                                             frame_set.frame_set_size) from None
    finally:
        root.removeFilter(progress)
    if start_iteration:
        _merge_learning_stats(stats.with_name(f"learning_stats.before-{start_iteration}.csv"), stats,
                              start_iteration)
    _copy_atomic(original_cfg, train_cfg)
    remove_tensorflow_resume_points(train_cfg.parent)  # the last snapshot is newer than any
    seconds = time.perf_counter() - started
    snapshots = snapshot_iterations_in(train_cfg.parent)
    if snapshots != expected:
        raise TrainingFailedError(f"frame set {frame_set.frame_set_size}: expected snapshots {expected}, "
                                  f"found {snapshots} in {train_cfg.parent}")
    trained_here = study.max_iterations - start_iteration
    record = {
        "frame_set_size": frame_set.frame_set_size,
        "shuffle": frame_set.shuffle,
        "network": study.network,
        "snapshot_iterations": snapshots,
        "train_dir": str(train_cfg.parent),
        "resumed_from_iteration": start_iteration,
        "seconds": round(seconds, 1),
        "iterations_per_second": round(trained_here / seconds, 3) if trained_here else None,
        "initial_weights": weights,
        "device": _device_name(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU the local backend gave it
        "engine": "tensorflow",
        **record_fields(record_file.parent, "tensorflow"),
        **speed_fields(study.batch_size, largest_frame(layout, frame_set),  # a later study's estimate
                       bool(tf.config.list_physical_devices("GPU")),
                       (progress.first, progress.last) if progress.first else None),
    }
    write_json_atomic(record_file, record)
    print(f"{prefix} done: {len(snapshots)} snapshots in {seconds / 60:.1f} min", flush=True)
    return record


# TensorFlow's ResourceExhaustedError from a GPU's allocator ("... on /job:localhost/replica:0/task:0/device:GPU:0
# by allocator GPU_0_bfc"), not from the host's (device:CPU:0, allocator mklcpu)
GPU_ALLOCATION_FAILED = re.compile(r"OOM when allocating tensor .* on \S*device:GPU:\d+")


def ran_out_on_a_gpu(message: str) -> bool:
    """Whether TensorFlow's ``ResourceExhaustedError`` is a GPU's allocator failing, not the host's."""
    return GPU_ALLOCATION_FAILED.search(message) is not None


@contextlib.contextmanager
def _quiet_loader_shutdown(prefix: str, cancelled: type[BaseException]):
    """DeepLabCut's loader thread dies with CancelledError when training closes its queue: expected, so one line
    instead of a traceback that reads like a failure. Any other thread exception is reported as usual."""
    previous = threading.excepthook

    def hook(args) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, cancelled):
            print(f"{prefix} data loader stopped: its queue was closed at the end of training", flush=True)
        else:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(Path(source).read_bytes())


def _device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"
