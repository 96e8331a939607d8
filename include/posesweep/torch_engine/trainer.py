"""Train one frame set's DeepLabCut PyTorch network with the data path on the device.

One iteration is one optimizer step on ``batch_size`` frames (DeepLabCut 3 counts
epochs: one epoch is ``ceil(train frames / batch_size)`` iterations). Frames are
drawn without replacement, epoch by epoch, from a seeded generator. The optimizer and
learning-rate schedule are DeepLabCut's from ``pytorch_config.yaml`` (AdamW; the
``LRListScheduler`` milestones, given there in epochs of a ``train_settings.epochs``
run, are placed at the same fractions of ``max_iterations``).

On a CUDA device the step runs under bf16 autocast where the GPU computes in bf16 natively
(compute capability 8 or more: Ampere, Ada, Hopper), under fp16 autocast with dynamic loss scaling where it has
fp16 tensor cores and no bf16 ones (compute capability 7: V100, T4, RTX 20xx; ``loss_scale``), in fp32 on older
GPUs, on a CPU and where the study's ``precision`` is ``fp32``; BatchNorm backbones use channels_last
(GroupNorm runs slower that way on an H100).
The forward pass is compiled (``torch.compile``) where that was measured to help, on a CUDA device for a run
long enough to repay it (``compiling_pays``): at batch 2 or more (an H100 at 1080p, batch 8 bf16:
83 -> 114 images/s with a BatchNorm ResNet-50, 41 -> 74 with DeepLabCut's GroupNorm one), and at batch 1 for the
BatchNorm one (an H200: 69 -> 85 images/s, inside the CUDA graph); a compilation that fails falls back to
the eager step with a warning. On a CPU nothing is compiled: there it was measured slower (this project's 2-core
machine, ``resnet_50`` at 160x120, batch 1: 0.279 s per step compiled against 0.224 eager, after 53 s of compiling;
channels_last gained nothing there either). At batch 1 on a GPU, where launching kernels costs more than running
them, the whole step runs as one CUDA graph (``graphed_step``); a capture that fails falls back to the
eager step with a warning. Snapshots hold the model's own parameter names. Measured with this code on an
H200 at 1080p (README, "Measured on a GPU"): 0.96-0.99 of the bare model step; GroupNorm ``resnet_50`` 85
images/s at batch 8 (compiled), 27 at batch 1 (graphed); BatchNorm ``resnet_50_bn`` 122 at batch 8
(compiled), 69 at batch 1 (graphed), 85 at batch 1 (graphed and compiled).

Snapshots land at the study's iteration levels as DeepLabCut snapshots
(``snapshot-<iteration>.pt``, ``{"model": state_dict, "metadata": ...}``), written
atomically, with the optimizer and augmentation-generator state beside the newest one
(``train_state-<iteration>.pt``; a resume point between snapshots holds the same), so a killed training resumes
as if it had not stopped: the batch order is a function of the iteration, and on a CPU the resumed network is the
straight-through one weight for weight (GPU kernels are not bitwise deterministic).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from ..budget import speed_fields
from ..config import StudyConfig
from ..errors import TrainingDivergedError, TrainingFailedError
from ..layout import RunLayout, atomic_path, read_json, write_json_atomic
from ..splits import FrameSet, largest_frame
from . import augment
from ..gpu_memory import GpuMemory, step_out_of_memory
from ..gpus import gpu_given_but_unseen, torch_cannot_run_on, torch_kernel_problem
from .frame_cache import FrameCache, load_frame_cache
from .graphed_step import GraphedStep, graph_safe_loss, make_capturable, portable_optimizer_state
from .loss_scale import LossScaler
from .project import build_model, model_config_path, read_model_config
from ..provenance import record_fields
from ..resume_points import STOP_REQUESTED, resume_point_seconds, stopped
from .targets import TargetConfig, heatmap_targets

log = logging.getLogger(__name__)
# Compile only runs that see at least this many images: at the measured gains (on an H200, 1920x1080: >= 30 images/s
# more at batch 8, 69 -> 85 images/s for the BatchNorm ResNet-50 at batch 1) 100k images save 4.5 minutes or more;
# compilation takes about a minute (there, the cold compilation at batch 8, with the benchmark's set-up before it,
# ended within 156 s; at batch 1, inside the CUDA graph, about 60 s).
COMPILE_MIN_IMAGES = 100_000
TRAIN_STATE_PREFIX = "train_state"  # train_state-<iteration>.pt: the optimizer state of that snapshot
# Between snapshots a resume point (weights and optimizer state, not a snapshot: nothing scores it) is saved every
# resume_point_seconds() (``resume_points``), so a killed or preempted training loses at most that much.
RESUME_POINT_FILE = "posesweep-resume.pt"


@dataclass(frozen=True)
class StepSettings:
    """How the step runs on this device."""

    device: torch.device
    bf16: bool
    channels_last: bool
    compiled: bool = False
    cuda_graph: bool = False  # the whole step as one CUDA graph (batch 1: launch-bound), with frames on the device
    fp16: bool = False  # fp16 autocast with dynamic loss scaling (a GPU with fp16 tensor cores and no bf16 ones)

    @classmethod
    def for_device(cls, device: torch.device, timm_model: str, batch_size: int = 1,
                   images_to_train: int = 0, precision: str = "auto") -> "StepSettings":
        cuda = device.type == "cuda"
        autocast = device_precision(device) if precision == "auto" else "fp32"
        return cls(device, bf16=autocast == "bf16", fp16=autocast == "fp16",
                   channels_last=cuda and not timm_model.endswith("_gn"),
                   compiled=cuda and compiling_pays(timm_model, batch_size, images_to_train),
                   cuda_graph=cuda and batch_size == 1)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        autocast = {"bf16": "bf16 autocast", "fp16": "fp16 autocast, dynamic loss scaling", "fp32": "fp32"}
        return (f"{name}, {autocast[self.precision]}" + (", channels_last" if self.channels_last else "")
                + (", torch.compile" if self.compiled else "") + (", CUDA graph" if self.cuda_graph else ""))


def compiling_pays(timm_model: str, batch_size: int, images_to_train: int) -> bool:
    """Whether torch.compile is worth its minute on a GPU: for runs of COMPILE_MIN_IMAGES or more, at batch > 1
    (measured with both ResNet-50s), and at batch 1 for BatchNorm backbones, compiled inside the CUDA graph (the
    BatchNorm ResNet-50: 69 -> 85 images/s on an H200; timm's resnet101 is taken to gain alike, not measured).
    DeepLabCut's GroupNorm one at batch 1 has not been measured compiled: left eager."""
    if images_to_train < COMPILE_MIN_IMAGES:
        return False
    return batch_size > 1 or not timm_model.endswith("_gn")


def device_precision(device: torch.device) -> str:
    """The autocast precision this device trains fastest in: ``bf16``, ``fp16`` or ``fp32`` (a CPU trains in fp32).
    ``torch.cuda.is_bf16_supported()`` also answers yes for GPUs that only emulate bf16 (compute
    capability 7: T4, V100, RTX 20xx: no bf16 tensor cores), and asks about the current device rather than this one."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.version.hip else precision_of_compute_capability(torch.cuda.get_device_capability(device))


def precision_of_compute_capability(compute_capability: tuple[int, int]) -> str:
    """bf16 from compute capability 8 (bf16 tensor cores); fp16 at 7 (fp16 tensor cores only: Volta, Turing);
    fp32 below (Pascal's GTX 10xx compute fp16 at a fraction of their fp32 rate)."""
    major = compute_capability[0]
    return "bf16" if major >= 8 else "fp16" if major == 7 else "fp32"


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def snapshot_iterations_in(train_dir: Path) -> list[int]:
    """Iterations of the snapshots in a PyTorch model folder (each file is written atomically)."""
    found = [re.fullmatch(r"snapshot-(\d+)\.pt", p.name) for p in Path(train_dir).glob("snapshot-*.pt")]
    return sorted(int(m.group(1)) for m in found if m)


def learning_rate_at(iteration: int, base_lr: float, scheduler: dict | None, epochs: int,
                     max_iterations: int) -> float:
    """DeepLabCut's LRListScheduler with its epoch milestones placed at the same fractions of the iterations."""
    if not scheduler or scheduler.get("type") != "LRListScheduler":
        return base_lr
    lr = base_lr
    params = scheduler["params"]
    for milestone, values in zip(params["milestones"], params["lr_list"]):
        if iteration >= milestone / epochs * max_iterations:
            lr = float(values[0])
    return lr


class BatchSampler:
    """Frame indices epoch by epoch, each epoch a seeded permutation; resumable at any iteration."""

    def __init__(self, frames: int, batch_size: int, seed: int):
        self.frames, self.batch_size, self.seed = frames, batch_size, seed

    def indices(self, iteration: int) -> torch.Tensor:
        per_epoch = math.ceil(self.frames / self.batch_size)
        epoch, step = divmod(iteration, per_epoch)
        order = torch.randperm(self.frames, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        chosen = order[step * self.batch_size:(step + 1) * self.batch_size]
        if len(chosen) < self.batch_size:  # the epoch's last batch is filled from its start
            chosen = torch.cat([chosen, order[:self.batch_size - len(chosen)]])
        return chosen


def augmented_batch(cache: FrameCache, indices: torch.Tensor, config: augment.AugmentationConfig,
                    generator: torch.Generator, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(network input, keypoints, visibility) of a batch, augmented on the device."""
    frames, keypoints, sizes = cache.batch(indices, device)
    params = augment.sample_params(config, len(indices), generator, device)
    # frames of several sizes: each augmented within its own size, as DeepLabCut augments it alone
    height, width = (cache.height, cache.width) if sizes is None else (sizes[:, 0], sizes[:, 1])
    matrices = augment.affine_matrices(params, height, width)
    moved, visible = augment.transform_keypoints(keypoints, matrices, height, width)
    images = augment.add_noise(augment.warp_images(frames, matrices), params.noise_std, generator)
    if sizes is not None:  # the padding stays black: nothing the warp or the noise put there
        images = augment.black_outside(images, height, width)
    return augment.normalise(images), moved, visible


def model_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               targets_for: Callable[[torch.Tensor], dict], settings: StepSettings,
               forward: Callable | None = None, loss_of: Callable | None = None,
               scaler: LossScaler | None = None) -> torch.Tensor:
    """Forward (``forward``: the model, or its compiled form; bf16 or fp16 autocast where set), DeepLabCut's loss
    against ``targets_for(heatmap output)`` (``loss_of``: ``model.get_loss`` or its graph-safe form), backward, update
    (through ``scaler`` where given: fp16): with precomputed targets, the step's ceiling."""
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    dtype = torch.float16 if settings.fp16 else torch.bfloat16
    # no autocast weight cache: each weight is cast once per forward pass anyway, and a CUDA graph may not keep one
    with torch.autocast(settings.device.type, dtype=dtype, enabled=settings.bf16 or settings.fp16,
                        cache_enabled=False):
        outputs = (model if forward is None else forward)(images)
    outputs = {head: {name: value.float() for name, value in out.items()} for head, out in outputs.items()}
    loss = (loss_of or model.get_loss)(outputs, targets_for(outputs["bodypart"]["heatmap"]))["total_loss"]
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.backward(loss)
        scaler.step(optimizer)
    return loss


@dataclass
class TrainingLoop:
    """What every step uses, built once: the model and optimizer on the device, the frame cache, the augmentation
    and target settings, the batch order and the device's random generator."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    base_lr: float
    cache: FrameCache
    augmentation: augment.AugmentationConfig
    targets: TargetConfig
    stride: float
    sampler: BatchSampler
    generator: torch.Generator
    settings: StepSettings
    forward: Callable  # the model, or its compiled forward pass (same parameters)
    compiled_step_done: bool = False
    graphed: GraphedStep | None = None  # the whole step as a CUDA graph, where settings.cuda_graph
    learning_rate: float | None = None
    scaler: LossScaler | None = None  # fp16's loss scale, where settings.fp16

    @classmethod
    def build(cls, model_cfg: dict, weights: Path | dict, labeled_data: Path, frames: list[tuple[str, str]],
              labels: pd.DataFrame, bodyparts: list[str], batch_size: int, seed: int, device: torch.device,
              optimizer_state: dict | None = None, start_iteration: int = 0, iterations_to_train: int = 0,
              settings: StepSettings | None = None, frames_on_device: bool = True,
              generator_state: dict | None = None, precision: str = "auto",
              loss_scale: dict | None = None) -> "TrainingLoop":
        settings = settings or StepSettings.for_device(device, model_cfg["model"]["backbone"]["model_name"],
                                                       batch_size, iterations_to_train * batch_size, precision)
        if settings.device.type == "cuda":  # every batch has one shape (frames padded to one size): tune once
            torch.backends.cudnn.benchmark = True  # (DeepLabCut turns it off: its crops vary in size)
        model = build_model(model_cfg)
        if not isinstance(weights, dict):  # a snapshot file, else the weights already read (a resume point's)
            weights = torch.load(weights, map_location="cpu", weights_only=True)["model"]
        model.load_state_dict(weights)
        model.to(device)
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        optimizer_cfg = model_cfg["runner"]["optimizer"]
        if optimizer_cfg["type"] != "AdamW":
            raise TrainingFailedError(f"posesweep's PyTorch trainer runs AdamW; the model configuration asks for "
                                      f"{optimizer_cfg['type']}")
        base_lr = float(optimizer_cfg["params"]["lr"])
        # fp16: AdamW's fused kernel, which skips an overflowed step on the device (LossScaler)
        optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr, fused=settings.fp16 or None)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
            for group in optimizer.param_groups:  # the saved kernel choice is the saving trainer's, not this one's
                group["fused"], group["foreach"] = settings.fp16 or None, None
                # the fused kernel (fp16) keeps its step counts beside the weights
                for parameter in group["params"] if settings.fp16 else ():
                    state = optimizer.state.get(parameter, {})
                    if "step" in state:
                        state["step"] = state["step"].to(parameter.device, torch.float32)
        cache = load_frame_cache(labeled_data, frames, labels, bodyparts, device, frames_on_device)
        if settings.cuda_graph and cache.frames.device.type != device.type:  # frames copied per batch from the host
            log.info("frames in %s: the step runs without a CUDA graph", cache.where)
            settings = dataclasses.replace(settings, cuda_graph=False)
        loop = cls(model, optimizer, base_lr, cache, augment.AugmentationConfig.from_dlc(model_cfg["data"]["train"]),
                   TargetConfig.from_dlc(model_cfg["model"]["heads"]["bodypart"]["target_generator"]),
                   float(model.get_stride("bodypart")), BatchSampler(len(cache), batch_size, seed),
                   resumed_generator(device, seed, start_iteration, generator_state), settings,
                   torch.compile(model) if settings.compiled else model,
                   scaler=LossScaler.resumed(device, loss_scale) if settings.fp16 else None)
        if settings.cuda_graph:
            loop.use_graph()
        return loop

    def generator_state(self) -> dict | None:
        """The augmentation generator's state, saved with the optimizer's so that a resumed training draws what
        the training would have drawn had it not stopped (``resumed_generator``). None where the generator will
        not give it (a CUDA graph's, on a torch that refuses): the resumed training then reseeds, as before."""
        try:
            return {"device": self.generator.device.type, "state": self.generator.get_state()}
        except RuntimeError as error:
            log.info("the augmentation generator's state cannot be saved (%s): a resumed training reseeds it",
                     str(error).splitlines()[0] if str(error) else type(error).__name__)
            return None

    def saved_state(self) -> dict:
        """What a snapshot's train state and a resume point keep beside the optimizer's: the augmentation
        generator's state and, in fp16, the loss scale."""
        generator = self.generator_state()
        return {**({"generator": generator} if generator else {}),
                **({"loss_scale": self.scaler.state()} if self.scaler is not None else {})}

    def use_graph(self) -> None:
        """Run every step through a ``GraphedStep`` (captured on a GPU; on a CPU the same body, eagerly)."""
        make_capturable(self.optimizer, self.settings.device)
        self.graphed = GraphedStep(self.graph_body, self.optimizer, self.generator, self.sampler.batch_size,
                                   self.settings.device)

    def set_learning_rate(self, lr: float) -> None:
        """The schedule's rate for the next step; a graph's rate (a device tensor) is filled in place."""
        if lr == self.learning_rate:
            return
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self.learning_rate = lr

    def step(self, iteration: int) -> torch.Tensor:
        """The iteration's batch, augmented on the device, and one optimizer step on it; returns the loss."""
        indices = self.sampler.indices(iteration)
        if self.graphed is not None:
            return self.graphed_step(indices)
        return self.step_on(indices)

    def step_on(self, indices: torch.Tensor, loss_of: Callable | None = None) -> torch.Tensor:
        images, keypoints, visible = augmented_batch(self.cache, indices, self.augmentation, self.generator,
                                                     self.settings.device)
        return self.model_step(images, lambda heatmap: {"bodypart": heatmap_targets(
            keypoints, visible, heatmap.shape[2], heatmap.shape[3], self.stride, self.targets)}, loss_of)

    def graph_body(self, indices: torch.Tensor) -> torch.Tensor:
        """What the CUDA graph holds: the step on the frames at ``indices`` with the graph-safe loss."""
        return self.step_on(indices, lambda outputs, targets: graph_safe_loss(self.model, outputs, targets))

    def graphed_step(self, indices: torch.Tensor) -> torch.Tensor:
        """The step through the graph. A capture that fails (before anything was replayed) leaves the model as it
        was: the step is then taken eagerly and training goes on without a graph."""
        try:
            return self.graphed(indices)
        except Exception as error:  # noqa: BLE001 - any capture failure; the eager step below re-raises real ones
            if self.graphed.captured:
                raise
            log.warning("the CUDA graph of the step failed (%s); training continues without it",
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
            self.graphed, self.settings = None, dataclasses.replace(self.settings, cuda_graph=False)
            return self.step_on(indices)

    def model_step(self, images: torch.Tensor, targets_for: Callable[[torch.Tensor], dict],
                   loss_of: Callable | None = None) -> torch.Tensor:
        """``model_step`` through this loop's forward pass. The first compiled step compiles; if compilation
        fails, the step is taken again eagerly (nothing was updated: the optimizer steps after backward) and
        training goes on uncompiled."""
        first_compiled = self.forward is not self.model and not self.compiled_step_done
        try:
            loss = model_step(self.model, self.optimizer, images, targets_for, self.settings, self.forward, loss_of,
                              self.scaler)
        except Exception as error:  # noqa: BLE001 - any compiler failure; the eager step below re-raises real ones
            if not first_compiled:
                raise
            log.warning("torch.compile failed (%s); training continues uncompiled", str(error).splitlines()[0])
            self.forward, self.settings = self.model, dataclasses.replace(self.settings, compiled=False)
            return model_step(self.model, self.optimizer, images, targets_for, self.settings, loss_of=loss_of,
                              scaler=self.scaler)
        self.compiled_step_done = self.forward is not self.model
        return loss


def train_network(layout: RunLayout, frame_set: FrameSet, study: StudyConfig, labels: pd.DataFrame,
                  bodyparts: list[str], device: torch.device | None = None,
                  frames_kept_off_gpu: str | None = None) -> dict:
    """Train to ``max_iterations`` with a snapshot at every level; skip a finished network, resume a killed one.
    With ``frames_kept_off_gpu`` (why), the decoded frames stay in host memory even where the GPU has room."""
    size = frame_set.frame_set_size
    record_file = layout.training_dir(size) / "training.json"
    expected = study.snapshot_iterations
    if record_file.exists() and read_json(record_file).get("snapshot_iterations") == expected:
        log.info("frame set %d: already trained (%d snapshots), skipped", size, len(expected))
        return read_json(record_file)
    config_path = model_config_path(layout.project_dir / "config.yaml", frame_set)
    model_cfg = read_model_config(config_path)
    train_dir = config_path.parent
    weights = read_json(layout.run_dir / "weights" / "initial_weights.json")
    prefix = f"[frame set {size}]"
    if device is None and (unseen := gpu_given_but_unseen("pytorch", torch.cuda.is_available())):
        log.warning("%s %s", prefix, unseen)
    device = device or default_device()
    if device.type == "cuda" and (problem := torch_kernel_problem(device)):  # a pod on an older GPU's node, say
        raise torch_cannot_run_on(os.environ.get("CUDA_VISIBLE_DEVICES") or str(device), problem)

    done = [it for it in snapshot_iterations_in(train_dir) if it in expected]
    start = max(done, default=0)
    state_file = train_state_file(train_dir, start)
    state = torch.load(state_file, map_location="cpu", weights_only=True) if start and state_file.exists() else None
    start_weights = train_dir / f"snapshot-{start}.pt" if start else Path(weights["path"])
    resume_point = read_resume_point(train_dir, start, study.max_iterations)
    if resume_point is not None:
        start, state, start_weights = resume_point["iteration"], resume_point, resume_point["model"]
    loop = TrainingLoop.build(model_cfg, start_weights,
                              layout.project_dir / "labeled-data", list(frame_set.train), labels, bodyparts,
                              study.batch_size, study.seed + size, device,
                              state["optimizer"] if state is not None else None, start, study.max_iterations - start,
                              frames_on_device=frames_kept_off_gpu is None,
                              generator_state=state.get("generator") if state is not None else None,
                              precision=study.precision,
                              loss_scale=state.get("loss_scale") if state is not None else None)
    if resume_point is not None:
        print(f"{prefix} resuming from the resume point at iteration {start} ({len(done)} of {len(expected)} "
              f"snapshots complete, optimizer state restored)", flush=True)
    elif start:
        print(f"{prefix} resuming from snapshot {start} ({len(done)} of {len(expected)} snapshots complete"
              f"{', optimizer state restored' if state is not None else ''})", flush=True)
    epochs = int(model_cfg["train_settings"].get("epochs") or 200)
    display = study.progress_interval
    print(f"{prefix} training {study.network} ({model_cfg['model']['backbone']['model_name']}, PyTorch) on "
          f"{len(loop.cache)} frames to {study.max_iterations} iterations at batch {study.batch_size}, snapshot "
          f"every {study.snapshot_interval} ({loop.settings.describe()}; frames in {loop.cache.where}; initial "
          f"weights: {weights['kind']})", flush=True)

    started = last_time = last_resume_point = time.perf_counter()
    last_iteration = start
    first_progress: tuple[float, int] | None = None  # (time, iteration) of the first progress line: start-up is over
    resume_every = resume_point_seconds()
    for iteration in range(start, study.max_iterations):
        lr = learning_rate_at(iteration, loop.base_lr, model_cfg["runner"].get("scheduler"), epochs,
                              study.max_iterations)
        loop.set_learning_rate(lr)
        try:
            loss = loop.step(iteration)
        except torch.OutOfMemoryError:
            if loop.settings.device.type != "cuda":
                raise
            cached = loop.cache.frames.nbytes if loop.cache.frames.device.type == "cuda" else 0
            raise step_out_of_memory(GpuMemory.of(loop.settings.device, cached), study.batch_size, loop.cache.width,
                                     loop.cache.height, loop.settings.precision, size) from None
        done_iterations = iteration + 1
        if done_iterations % display == 0 or done_iterations == study.max_iterations:
            value = float(loss.detach())
            now = time.perf_counter()
            rate = (done_iterations - last_iteration) / max(now - last_time, 1e-9)
            last_time, last_iteration = now, done_iterations
            first_progress = first_progress or (now, done_iterations)
            eta = (study.max_iterations - done_iterations) / rate
            print(f"{prefix} iteration {done_iterations}/{study.max_iterations} loss {value:.5f} lr {lr:g} "
                  f"{rate * study.batch_size:.3g} images/s {1 / rate:.3g} s/iteration ETA {eta / 60:.1f} min",
                  flush=True)  # (3 digits: 1080p on a CPU trains at about 0.07 images/s)
            diverged_at = diverged(value, loop.scaler)
            if diverged_at:
                raise TrainingDivergedError.of_network(size, f"{diverged_at} at iteration {done_iterations}",
                                                       f"{diverged_at} at iteration {done_iterations}, learning "
                                                       f"rate {lr:g}", str(config_path),
                                                       in_fp16=loop.scaler is not None)
        stop = STOP_REQUESTED.is_set() and done_iterations < study.max_iterations  # SIGTERM: save, then end
        if done_iterations in expected:
            _save_snapshot(loop.model, loop.optimizer, train_dir, done_iterations, loop.saved_state())
            (train_dir / RESUME_POINT_FILE).unlink(missing_ok=True)  # the snapshot is newer
            last_resume_point = time.perf_counter()
        elif stop or (done_iterations % display == 0 and time.perf_counter() - last_resume_point >= resume_every):
            _save_resume_point(loop.model, loop.optimizer, train_dir, done_iterations, loop.saved_state())
            last_resume_point = time.perf_counter()
            print(f"{prefix} resume point saved at iteration {done_iterations} (a killed training goes on from "
                  f"here)", flush=True)
        if stop:
            raise stopped(size, done_iterations)

    seconds = time.perf_counter() - started
    snapshots = [it for it in snapshot_iterations_in(train_dir) if it in expected]
    if snapshots != expected:
        raise TrainingFailedError(f"frame set {size}: expected snapshots {expected}, found {snapshots} in {train_dir}")
    trained_here = study.max_iterations - start
    record = {
        "frame_set_size": size,
        "shuffle": frame_set.shuffle,
        "network": study.network,
        "engine": "pytorch",
        "backbone": model_cfg["model"]["backbone"]["model_name"],
        "snapshot_iterations": snapshots,
        "train_dir": str(train_dir),
        "resumed_from_iteration": start,
        "seconds": round(seconds, 1),
        "iterations_per_second": round(trained_here / seconds, 3) if trained_here else None,
        "images_per_second": round(trained_here * study.batch_size / seconds, 2) if trained_here else None,
        "initial_weights": weights,
        "device": loop.settings.describe(),
        "precision": study.precision,  # the study's setting (loop.settings.precision: what this device made of it)
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU the local backend gave it
        "frames_cached_in": loop.cache.where,
        "frames_kept_off_gpu": frames_kept_off_gpu,
        **record_fields(record_file.parent, "pytorch"),
        **speed_fields(study.batch_size, largest_frame(layout, frame_set), loop.settings.device.type == "cuda",
                       (first_progress, (last_time, last_iteration)) if first_progress else None),
    }
    write_json_atomic(record_file, record)
    print(f"{prefix} done: {len(snapshots)} snapshots in {seconds / 60:.1f} min", flush=True)
    return record


def diverged(loss: float, scaler: LossScaler | None) -> str | None:
    """What shows a training diverged, else None. In bf16 and fp32 a non-finite loss: its gradients have already
    reached the weights. In fp16 an overflowing step is skipped (the weights stay as they were) and the scale
    halved, so one non-finite loss is no failure; a scale that keeps falling is (``LossScaler.collapsed``)."""
    if scaler is None:
        return None if math.isfinite(loss) else f"loss {loss}"
    collapsed = scaler.collapsed()
    if collapsed is not None:
        return f"loss {loss} with the fp16 loss scale fallen to {collapsed:.3g} (every recent step overflowed)"
    if not math.isfinite(loss):
        log.warning("the loss overflowed fp16 (%s); that step was skipped, the weights are as they were", loss)
    return None


def resumed_generator(device: torch.device, seed: int, start_iteration: int,
                      saved: dict | None = None) -> torch.Generator:
    """The augmentation generator of a training starting at ``start_iteration``: seeded at the start, and where a
    stopped training saved its generator's state on the same kind of device, that state, so that the resumed
    training draws the augmentations it would have drawn had it run straight through (on a CPU the same network,
    weight for weight). A state from another kind of device, or none (an older resume point), reseeds."""
    generator = torch.Generator(device=device)
    if saved is not None and saved.get("device") == generator.device.type:
        try:
            return generator.set_state(saved["state"])
        except (RuntimeError, TypeError, KeyError) as error:  # another torch's format: reseeded below
            log.info("the saved augmentation state cannot be restored (%s): augmentation reseeded", error)
    return generator.manual_seed(seed + start_iteration)


def train_state_file(train_dir: Path, iteration: int) -> Path:
    return Path(train_dir) / f"{TRAIN_STATE_PREFIX}-{iteration}.pt"


def read_resume_point(train_dir: Path, newest_snapshot: int, max_iterations: int) -> dict | None:
    """The resume point to go on from: one saved after the newest snapshot and before the end, else None. A file
    that cannot be read (copied in from elsewhere, another torch's format) is passed over with a warning: the newest
    snapshot is still there."""
    path = Path(train_dir) / RESUME_POINT_FILE
    if not path.exists():
        return None
    try:
        point = torch.load(path, map_location="cpu", weights_only=True)
        iteration = int(point["iteration"])
        missing = {"model", "optimizer"} - set(point)
        if missing:
            raise KeyError(f"no {', '.join(sorted(missing))} in it")
    except Exception as error:  # noqa: BLE001 - any unreadable file: the snapshot is the fallback
        log.warning("%s cannot be read (%s); training goes on from snapshot %d", path, error, newest_snapshot)
        return None
    return point if newest_snapshot < iteration < max_iterations else None


def _save_resume_point(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_dir: Path,
                       iteration: int, loop_state: dict | None = None) -> None:
    """Weights, optimizer state and ``loop_state`` (``TrainingLoop.saved_state``) at ``iteration``, in one file
    written atomically (not a DeepLabCut snapshot)."""
    weights = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    with atomic_path(Path(train_dir) / RESUME_POINT_FILE) as tmp:
        torch.save({"iteration": iteration, "model": weights, "optimizer": portable_optimizer_state(optimizer),
                    **(loop_state or {})}, tmp)


def _save_snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_dir: Path, iteration: int,
                   loop_state: dict | None = None) -> None:
    """The optimizer state (and ``loop_state``) of the iteration, then DeepLabCut's snapshot; older optimizer states
    go only once the snapshot is complete, so a kill at any point leaves the newest snapshot with its own state."""
    with atomic_path(train_state_file(train_dir, iteration)) as tmp:
        torch.save({"iteration": iteration, "optimizer": portable_optimizer_state(optimizer),
                    **(loop_state or {})}, tmp)
    weights = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    with atomic_path(train_dir / f"snapshot-{iteration}.pt") as tmp:
        torch.save({"model": weights, "metadata": {"iteration": iteration, "epoch": iteration}}, tmp)
    for old in Path(train_dir).glob(f"{TRAIN_STATE_PREFIX}-*.pt"):
        if old.name != train_state_file(train_dir, iteration).name:
            old.unlink(missing_ok=True)
