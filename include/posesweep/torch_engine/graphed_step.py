"""The whole training step as one CUDA graph: batch 1 on a GPU, where launching kernels is the step's cost.

At batch 1 a ResNet-50 step launches a few thousand small kernels, and on an H100 under bf16
launching them takes longer than running them (issue #13's prototype at 1080p: 25 steps/s
eager, 67 as one graph; this code on an H200: 29 -> 69 with the BatchNorm ResNet-50, 23 -> 27 with
DeepLabCut's GroupNorm one, whose step is GPU-bound there). The graph holds everything after the choice of
frames: the gather from the device's frame cache, the augmentation draws (from the loop's generator, registered
with the graph, so every replay draws anew), warping, targets, forward pass, loss, backward
pass and the AdamW update (``capturable``, its learning rate a device tensor the schedule
fills; in fp16 also the loss scaling and the skip of an overflowed step, ``loss_scale``).
Per iteration the host writes the batch's frame indices into the graph's input and
replays it.

Graph-safe means nothing in the step waits for the host. DeepLabCut's weighted criterion
asks ``if n_elems == 0`` (a wait); ``graph_safe_loss`` computes the same value with its own
criterion modules and aggregator, clamping the count instead. The first ``WARMUP_STEPS``
iterations run eagerly on a side stream (cuDNN picks its kernels, AdamW makes its state), as
PyTorch's documentation asks before a capture; they are real training iterations.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

WARMUP_STEPS = 3


class GraphUnsupportedError(RuntimeError):
    """This step cannot be captured (a criterion posesweep does not know how to compute without a host wait)."""


def _weighted_criterion_loss(criterion: torch.nn.Module, output: torch.Tensor, target: torch.Tensor,
                             weights: torch.Tensor | float = 1.0) -> torch.Tensor:
    """DeepLabCut's ``WeightedCriterion.forward`` without its host-side branch: the sum of the weighted
    element losses over the number of elements with a non-zero weight, that number at least 1."""
    from deeplabcut.pose_estimation_pytorch.models.criterions.weighted import WeightedCriterion

    if not isinstance(criterion, WeightedCriterion):
        raise GraphUnsupportedError(f"no graph-safe form of the criterion {type(criterion).__name__}")
    elements = criterion.criterion(output, target)
    if isinstance(weights, float):
        return torch.sum(elements * weights) / (elements.numel() if weights != 0.0 else 1)
    present = (torch.as_tensor(weights, dtype=torch.float32) != 0.0).to(torch.float32).expand_as(elements)
    return torch.sum(elements * weights) / torch.sum(present).clamp_min(1.0)


def graph_safe_loss(model: torch.nn.Module, outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
    """``PoseModel.get_loss`` (each head's criteria and aggregator, the heads' mean) with graph-safe criteria."""
    totals = []
    for name, head in model.heads.items():
        if head.aggregator is None:
            (key,) = outputs[name]
            totals.append(_weighted_criterion_loss(head.criterion, outputs[name][key], **targets[name][key]))
            continue
        losses = {part: _weighted_criterion_loss(criterion, outputs[name][part], **targets[name][part])
                  for part, criterion in head.criterion.items()}
        totals.append(head.aggregator(losses))
    return {"total_loss": torch.mean(torch.stack(totals))}


class GraphedStep:
    """One training step as a CUDA graph, after ``WARMUP_STEPS`` eager ones.

    ``body(indices)`` is the whole step for the frames at ``indices`` (a device tensor); it must read every
    per-iteration input from device tensors that persist (the indices here, the learning rate in the optimizer)
    and never wait for the host. ``generator`` is the step's random generator. On a CPU the body runs eagerly at
    every call (nothing to capture): the same arithmetic the graph replays, which the tests check."""

    def __init__(self, body: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                 generator: torch.Generator, batch_size: int, device: torch.device):
        self.body, self.optimizer, self.generator, self.device = body, optimizer, generator, device
        self.indices = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.warmup_steps = WARMUP_STEPS if device.type == "cuda" else float("inf")
        self.steps_taken = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        """One step on the frames at ``indices``; returns the loss (a device tensor the next step overwrites)."""
        source = indices.pin_memory() if self.device.type == "cuda" and indices.device.type == "cpu" else indices
        self.indices.copy_(source, non_blocking=True)
        if self.graph is None and self.steps_taken >= self.warmup_steps:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
            loss = self.loss
        else:
            with self._side_stream():
                loss = self.body(self.indices)
        self.steps_taken += 1
        return loss

    @contextlib.contextmanager
    def _side_stream(self):
        """Warm-up steps on a side stream (PyTorch's rule before a capture); on a CPU, nothing to do."""
        if self.device.type != "cuda":
            yield
            return
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            yield
        torch.cuda.current_stream(self.device).wait_stream(stream)

    def _capture(self) -> None:
        """Record the body once. Nothing runs while it is recorded: the replay that follows is this iteration's
        step. The gradients are freed first, so the backward pass allocates them in the graph's own memory."""
        if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
            raise GraphUnsupportedError(f"torch {torch.__version__} cannot replay a generator's draws in a graph")
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        # thread_local: the snapshot scorer's thread may use the device meanwhile (it waits for a new snapshot, so
        # this is rare; were it to break the capture, the step falls back to eager)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.loss = self.body(self.indices)
        self.graph = graph


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """An optimizer a graph can replay: its learning rate a device tensor (the schedule fills it in place) and,
    on a GPU, ``capturable`` with its step counts on the device (a state loaded from a snapshot included)."""
    capturable = device.type == "cuda"
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device if capturable else "cpu")
        group["capturable"] = capturable
    for state in optimizer.state.values():
        if "step" in state and capturable:
            state["step"] = state["step"].to(device=device, dtype=torch.float32)


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state as any trainer loads it: the learning rate a number, not captured for a graph, no
    kernel chosen (fp16's fused one)."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        group["lr"] = float(group["lr"])
        group["capturable"] = False
        group["fused"] = None
    return state
