"""Training augmentation on the device: DeepLabCut's affine and pixel-noise augmentation for a whole batch.

DeepLabCut 3 augments each frame on the CPU with albumentations (``data/transforms.py``:
``A.Affine(scale, rotate, translate_px, keep_ratio=True)`` then ``A.GaussNoise``).
Here the same transforms, with the same parameter meanings, run on a batch of uint8
frames where they live (a GPU when there is one):

- affine, with probability ``p`` per frame: a scale ``s`` (one for both axes), a
  rotation by ``rotation_deg`` and a translation in whole pixels, about the image
  centre ``((W - 1) / 2, (H - 1) / 2)``; keypoint ``p`` goes to
  ``s R(-rotation) (p - c) + c + t`` (albumentations' convention, image y down),
  the image is resampled bilinearly with black borders, and the output keeps the
  input's size;
- pixel noise, with probability 0.5 per frame: per pixel and channel Gaussian noise
  whose variance is drawn from ``[0, gaussian_noise**2]``, clipped to 0..255;
- ImageNet normalisation, as DeepLabCut's ``normalize_images``.

A keypoint that leaves the image is marked not visible (DeepLabCut sets its
visibility to 0), as is a missing label.

Frames of different sizes (several cameras) sit padded in one batch; each is then
augmented about its own centre, its keypoints are visible only inside its own
extent, and whatever the warp moves beyond that extent is blacked out: the frame
is augmented as DeepLabCut augments it alone (``height``/``width`` per frame).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentationConfig:
    """The augmentation entries of DeepLabCut's ``pytorch_config.yaml`` (``data.train``) that posesweep applies."""

    affine_p: float = 0.5
    rotation_deg: float = 30.0
    scaling: tuple[float, float] = (0.5, 1.25)
    translation_px: int = 0
    gaussian_noise: float = 12.75  # std in 0-255 units at most; 0 turns it off

    @classmethod
    def from_dlc(cls, train: dict) -> "AugmentationConfig":
        affine = train.get("affine") or {}
        noise = train.get("gaussian_noise") or 0
        return cls(affine_p=float(affine.get("p", 0.9)) if affine else 0.0,
                   rotation_deg=float(affine.get("rotation") or 0.0),
                   scaling=tuple(float(s) for s in (affine.get("scaling") or (1.0, 1.0))),
                   translation_px=int(affine.get("translation") or 0),
                   gaussian_noise=float(noise if isinstance(noise, (int, float)) and noise is not True
                                        else 0.05 * 255))


@dataclass(frozen=True)
class AugmentationParams:
    """One batch's augmentation draws, one row per frame (all on the batch's device)."""

    scale: torch.Tensor  # (B,)
    rotation_deg: torch.Tensor  # (B,)
    translation_px: torch.Tensor  # (B, 2): x, y
    noise_std: torch.Tensor  # (B,), 0 for frames without noise

    @classmethod
    def identity(cls, batch: int, device: torch.device | str = "cpu") -> "AugmentationParams":
        zeros = torch.zeros(batch, device=device)
        return cls(torch.ones(batch, device=device), zeros, torch.zeros(batch, 2, device=device), zeros)


def sample_params(config: AugmentationConfig, batch: int, generator: torch.Generator,
                  device: torch.device) -> AugmentationParams:
    """Random draws as DeepLabCut's albumentations pipeline makes them, for a batch."""
    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device) * (high - low) + low

    affine = torch.rand(batch, generator=generator, device=device) < config.affine_p
    scale = torch.where(affine, uniform(*config.scaling, batch), torch.ones(batch, device=device))
    rotation = torch.where(affine, uniform(-config.rotation_deg, config.rotation_deg, batch),
                           torch.zeros(batch, device=device))
    t = config.translation_px
    translation = torch.randint(-t, t + 1, (batch, 2), generator=generator, device=device).float() \
        * affine[:, None]
    noisy = torch.rand(batch, generator=generator, device=device) < 0.5
    noise_std = torch.where(noisy, uniform(0.0, config.gaussian_noise ** 2, batch).sqrt(),
                            torch.zeros(batch, device=device))
    return AugmentationParams(scale, rotation, translation, noise_std)


Size = int | torch.Tensor  # one size for the batch, or one per frame (B,)


def affine_matrices(params: AugmentationParams, height: Size, width: Size) -> torch.Tensor:
    """(B, 3, 3) pixel-space matrices taking a source point to its augmented position, about each frame's
    centre."""
    angle = -params.rotation_deg * (math.pi / 180.0)  # albumentations rotates by minus the drawn angle
    cos, sin = torch.cos(angle) * params.scale, torch.sin(angle) * params.scale
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    matrix = torch.zeros(len(angle), 3, 3, device=angle.device, dtype=torch.float32)
    matrix[:, 0, 0], matrix[:, 0, 1] = cos, -sin
    matrix[:, 1, 0], matrix[:, 1, 1] = sin, cos
    matrix[:, 0, 2] = cx - cos * cx + sin * cy + params.translation_px[:, 0]
    matrix[:, 1, 2] = cy - sin * cx - cos * cy + params.translation_px[:, 1]
    matrix[:, 2, 2] = 1.0
    return matrix


def _per_frame(size: Size) -> Size:
    """A per-frame size as a (B, 1) column, to compare with (B, K) keypoint coordinates."""
    return size[:, None] if isinstance(size, torch.Tensor) else size


def transform_keypoints(keypoints: torch.Tensor, matrices: torch.Tensor, height: Size,
                        width: Size) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented (B, K, 2) keypoints and their visibility (B, K): False where missing or outside the frame."""
    xy1 = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], dim=-1)
    moved = torch.einsum("bij,bkj->bki", matrices, xy1)[..., :2]
    x, y = moved[..., 0], moved[..., 1]
    visible = (~torch.isnan(x) & ~torch.isnan(y) & (x >= 0) & (x <= _per_frame(width)) & (y >= 0)
               & (y <= _per_frame(height)))
    return moved, visible


def black_outside(frames: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) frames with every pixel beyond each frame's own (height, width) set to 0 (the padding a
    warp may have moved image content into)."""
    _, _, h, w = frames.shape
    rows = torch.arange(h, device=frames.device, dtype=heights.dtype)
    columns = torch.arange(w, device=frames.device, dtype=widths.dtype)
    inside = (rows[None, :, None] < heights[:, None, None]) & (columns[None, None, :] < widths[:, None, None])
    return frames * inside[:, None]


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) inverses of affine matrices, in closed form (no solver: nothing waits for the device)."""
    a, b, tx = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 0, 2]
    c, d, ty = matrices[:, 1, 0], matrices[:, 1, 1], matrices[:, 1, 2]
    det = a * d - b * c
    inverse = torch.zeros_like(matrices)
    inverse[:, 0, 0], inverse[:, 0, 1] = d / det, -b / det
    inverse[:, 1, 0], inverse[:, 1, 1] = -c / det, a / det
    inverse[:, 0, 2] = -(inverse[:, 0, 0] * tx + inverse[:, 0, 1] * ty)
    inverse[:, 1, 2] = -(inverse[:, 1, 0] * tx + inverse[:, 1, 1] * ty)
    inverse[:, 2, 2] = 1.0
    return inverse


@functools.lru_cache(maxsize=32)
def _pixels_to_grid(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample's [-1, 1] units from pixels and back (pixel centres at (2 i + 1) / size - 1 with
    align_corners=False). Made once per size and device, so a step captured in a CUDA graph copies nothing
    from the host."""
    to_grid = torch.tensor([[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0],
                            [0.0, 0.0, 1.0]])
    return to_grid.to(device), invert_affine(to_grid[None])[0].to(device)


def warp_images(frames_uint8: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float 0..255 frames resampled through the matrices (bilinear, black outside)."""
    b, _, h, w = frames_uint8.shape
    frames = frames_uint8.float()
    if matrices.device.type == "cpu" and torch.equal(matrices, torch.eye(3).expand_as(matrices)):
        return frames  # nothing to warp (on a GPU the check itself would wait for the device)
    # grid_sample wants, per output pixel, where to read in the input: normalised = N @ inverse(M) @ inverse(N)
    to_grid, from_grid = _pixels_to_grid(h, w, matrices.device)
    theta = to_grid @ invert_affine(matrices) @ from_grid
    grid = F.affine_grid(theta[:, :2], [b, 3, h, w], align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def add_noise(frames: torch.Tensor, noise_std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-pixel, per-channel Gaussian noise of each frame's std, clipped to 0..255."""
    if noise_std.device.type == "cpu" and not bool((noise_std > 0).any()):
        return frames  # no frame is noisy (on a GPU the check itself would wait for the device)
    noise = torch.randn(frames.shape, generator=generator, device=frames.device) * noise_std[:, None, None, None]
    return (frames + noise).clamp_(0.0, 255.0)


@functools.lru_cache(maxsize=8)
def _imagenet_mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Made once per device (a step captured in a CUDA graph copies nothing from the host)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
    return mean.to(device), std.to(device)


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """0..255 RGB frames to the network's input (ImageNet mean and std, DeepLabCut's ``normalize_images``)."""
    mean, std = _imagenet_mean_std(frames.device)
    return (frames - mean) / std
