"""Dynamic loss scaling for fp16 training, with nothing that waits for the host (a CUDA graph can hold it).

GPUs of compute capability 7 (V100, T4, RTX 20xx: common in clusters and Colab) have fp16 tensor cores and no bf16
ones; there the step runs under fp16 autocast. fp16's smallest normal number is 6e-5, and many gradients are
smaller: the loss is multiplied by a scale before the backward pass and the gradients divided by it after, as
``torch.amp.GradScaler`` does. Where a scaled gradient overflowed (inf or NaN), the update is skipped and the scale
halved; after ``GROWTH_INTERVAL`` steps without overflow it doubles (GradScaler's defaults).

GradScaler itself asks the host whether to step (``found_inf.item()``), which a CUDA graph cannot hold. Here the
check and the skip stay on the device: ``torch._amp_foreach_non_finite_check_and_unscale_`` unscales the gradients and
sets ``found_inf``, AdamW's fused kernel skips its update (and its step count) where ``found_inf`` is set, and
``torch._amp_update_scale_`` moves the scale: the same three operations GradScaler runs with a fused optimizer.

A skipped step leaves the weights as they were, so an fp16 training never takes a non-finite update; one whose
scale keeps falling has gradients that fp16 cannot hold even unscaled (or a loss that overflows in the forward pass,
which no scale changes): ``collapsed`` says so, and the trainer fails it with ``precision=fp32`` as the fix.
"""

from __future__ import annotations

import torch

INITIAL_SCALE = 2.0 ** 16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000
# Below this the unscaled gradients overflow fp16 (max 65504) by a factor of 1000 or more, or every step overflows
# whatever the scale (from 2**16, 26 skipped steps in a row without growth get here): the training cannot go on in fp16.
COLLAPSED_BELOW = 2.0 ** -10


class LossScaler:
    """The scale, its growth tracker and the last step's overflow flag, as device tensors."""

    def __init__(self, device: torch.device, scale: float | None = None, growth_tracker: int = 0):
        scale = INITIAL_SCALE if scale is None else scale
        self.scale = torch.full((), float(scale), dtype=torch.float32, device=device)
        self.growth_tracker = torch.full((), int(growth_tracker), dtype=torch.int32, device=device)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss.float() * self.scale).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale the gradients, note an overflow, update where there was none (``optimizer`` must be fused: its
        kernel reads ``found_inf``), then move the scale."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.found_inf.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(grads, self.found_inf, self.scale.reciprocal())
        optimizer.found_inf, optimizer.grad_scale = self.found_inf, None
        try:
            optimizer.step()
        finally:
            optimizer.found_inf = None
        torch._amp_update_scale_(self.scale, self.growth_tracker, self.found_inf, GROWTH_FACTOR, BACKOFF_FACTOR,
                                 GROWTH_INTERVAL)

    def state(self) -> dict:
        """What a resumed training needs to scale as this one would have (read from the device: a host wait)."""
        return {"scale": float(self.scale.item()), "growth_tracker": int(self.growth_tracker.item())}

    @classmethod
    def resumed(cls, device: torch.device, saved: dict | None) -> "LossScaler":
        """The scaler of a training that starts where ``saved`` was taken, or a fresh one (none saved: a resume
        point of a bf16 or fp32 training, or an older one)."""
        if not saved:
            return cls(device)
        return cls(device, float(saved["scale"]) if "scale" in saved else None, int(saved.get("growth_tracker", 0)))

    def collapsed(self) -> float | None:
        """The scale where it has fallen below ``COLLAPSED_BELOW`` (a host wait), else None."""
        value = float(self.scale.item())
        return value if value < COLLAPSED_BELOW else None
