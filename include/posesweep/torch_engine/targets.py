"""DeepLabCut's heatmap and location-refinement targets, for a whole batch on its device.

The arithmetic of DeepLabCut 3's ``HeatmapGaussianGenerator`` (KEYPOINT mode, one
individual), which loops over frames and keypoints in numpy: the heatmap cell
``(i, j)`` has its centre at ``(j * stride + stride / 2, i * stride + stride / 2)``;
a visible keypoint gives ``exp(-d^2 / (2 sigma^2))`` with ``sigma = 2 * pos_dist_thresh / 3``;
its location-refinement target is the offset from the cell centre times
``1 / locref_std`` over the whole map, weighted 1 where ``d <= pos_dist_thresh``. A
keypoint that is not visible (missing, or outside the augmented image) gives a zero
heatmap that still counts in the loss (weight 1) and no location-refinement weight,
as in DeepLabCut without gradient masking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TargetConfig:
    """The ``target_generator`` entry of a DeepLabCut heatmap head."""

    pos_dist_thresh: float = 17.0
    locref_std: float = 7.2801
    generate_locref: bool = True

    @classmethod
    def from_dlc(cls, generator: dict) -> "TargetConfig":
        if generator.get("type") != "HeatmapGaussianGenerator" or str(generator.get("heatmap_mode", "KEYPOINT")) \
                .upper() != "KEYPOINT" or generator.get("gradient_masking"):
            raise ValueError(f"posesweep's targets follow HeatmapGaussianGenerator in KEYPOINT mode without "
                             f"gradient masking; the model configuration has {generator}")
        return cls(float(generator["pos_dist_thresh"]), float(generator.get("locref_std", 7.2801)),
                   bool(generator.get("generate_locref", True)))


def heatmap_targets(keypoints: torch.Tensor, visible: torch.Tensor, map_height: int, map_width: int,
                    stride: float, config: TargetConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Targets in DeepLabCut's layout: ``{"heatmap": {"target", "weights"}, "locref": {"target", "weights"}}``.

    keypoints: (B, K, 2) x, y in input pixels; visible: (B, K) bool. Heatmaps are (B, K, h, w); location
    refinement maps (B, 2K, h, w), channels x0, y0, x1, y1, ...
    """
    device = keypoints.device
    sigma = 2.0 * config.pos_dist_thresh / 3.0
    centres_y = torch.arange(map_height, device=device, dtype=torch.float32) * stride + stride / 2.0
    centres_x = torch.arange(map_width, device=device, dtype=torch.float32) * stride + stride / 2.0
    kx = torch.nan_to_num(keypoints[..., 0])[..., None, None]  # (B, K, 1, 1)
    ky = torch.nan_to_num(keypoints[..., 1])[..., None, None]
    dx = kx - centres_x.view(1, 1, 1, -1)  # (B, K, 1, w)
    dy = ky - centres_y.view(1, 1, -1, 1)  # (B, K, h, 1)
    dist_sq = dx * dx + dy * dy  # (B, K, h, w)
    shown = visible[..., None, None].to(torch.float32)
    heatmap = torch.exp(-dist_sq / (2.0 * sigma * sigma)) * shown
    targets = {"heatmap": {"target": heatmap, "weights": torch.ones_like(heatmap)}}
    if config.generate_locref:
        b, k, h, w = heatmap.shape
        scale = 1.0 / config.locref_std
        locref = torch.stack([dx.expand(b, k, h, w) * scale, dy.expand(b, k, h, w) * scale], dim=2) * shown[:, :, None]
        near = ((dist_sq <= config.pos_dist_thresh ** 2) & visible[..., None, None]).to(torch.int64)
        targets["locref"] = {"target": locref.reshape(b, 2 * k, h, w),
                             "weights": near[:, :, None].expand(b, k, 2, h, w).reshape(b, 2 * k, h, w)}
    return targets
