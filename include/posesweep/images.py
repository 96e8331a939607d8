"""Reading a labeled frame as the networks see it: RGB, uint8, height x width x 3."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
