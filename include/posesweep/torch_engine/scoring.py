"""Predictions of a PyTorch snapshot on labeled frames, as DeepLabCut's bottom-up inference makes them.

The model is built once per configuration and each snapshot's weights are loaded
into it. An image goes through DeepLabCut's inference transform (ImageNet
normalisation, nothing else for this configuration), the network, and DeepLabCut's
own predictor (``HeatmapPredictor``: heatmap argmax plus location refinement), so
the coordinates are in the image's pixels; images of equal size are predicted in
batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..evaluation import equal_shape_batches
from . import augment
from .project import build_model

BATCH_SIZE = 16


class TorchSnapshotScorer:
    def __init__(self, model_cfg: dict, device: torch.device | None = None):
        from .trainer import default_device

        self.device = device or default_device()
        self.model = build_model(model_cfg).to(self.device).eval()
        self.num_joints = len(model_cfg["metadata"]["bodyparts"])

    @torch.inference_mode()
    def predict(self, snapshot: Path, images: list[np.ndarray]) -> np.ndarray:
        """(images, joints, [x, y, likelihood]) with the snapshot's weights."""
        state = torch.load(snapshot, map_location="cpu", weights_only=True)["model"]
        self.model.load_state_dict(state)
        poses = np.empty((len(images), self.num_joints, 3))
        for batch in equal_shape_batches(images, BATCH_SIZE):
            frames = torch.from_numpy(np.stack([images[i] for i in batch])).permute(0, 3, 1, 2)
            inputs = augment.normalise(frames.to(self.device).float())
            predictions = self.model.get_predictions(self.model(inputs))
            poses[batch] = predictions["bodypart"]["poses"][:, 0].float().cpu().numpy()
        return poses

    def close(self) -> None:
        self.model.cpu()
