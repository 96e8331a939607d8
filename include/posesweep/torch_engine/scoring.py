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

from ..evaluation import predict_fitting
from . import augment
from .project import build_model

BATCH_SIZE = 16


class TorchSnapshotScorer:
    def __init__(self, model_cfg: dict, device: torch.device | None = None):
        from .trainer import default_device

        self.device = device or default_device()
        self.model = build_model(model_cfg).to(self.device).eval()
        self.num_joints = len(model_cfg["metadata"]["bodyparts"])
        self.batch_size = BATCH_SIZE  # lowered for good where a batch ran out of the device's memory

    @torch.inference_mode()
    def predict(self, snapshot: Path, images: list[np.ndarray]) -> np.ndarray:
        """(images, joints, [x, y, likelihood]) with the snapshot's weights."""
        state = torch.load(snapshot, map_location="cpu", weights_only=True)["model"]
        self.model.load_state_dict(state)
        poses, self.batch_size = predict_fitting(images, self.num_joints, self.batch_size, self._predict_batch,
                                                 torch.OutOfMemoryError, torch.cuda.empty_cache)
        return poses

    def _predict_batch(self, frames: np.ndarray) -> np.ndarray:
        inputs = augment.normalise(torch.from_numpy(frames).permute(0, 3, 1, 2).to(self.device).float())
        predictions = self.model.get_predictions(self.model(inputs))
        return predictions["bodypart"]["poses"][:, 0].float().cpu().numpy()

    def close(self) -> None:
        self.model.cpu()
