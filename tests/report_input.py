"""A small, seeded error table and report context: the input of the report regression test."""

from __future__ import annotations

import numpy as np
import pandas as pd

LANDMARKS = ["right_knee", "left_knee", "right_ankle"]
SIZES, ITERATIONS = (10, 20), (50, 100, 150, 200)


def error_table(seed: int = 3, landmarks: list[str] = LANDMARKS) -> pd.DataFrame:
    """Errors that fall with iterations and, for the test split, with frame-set size; with a known scale."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in SIZES:
        for iteration in ITERATIONS:
            for split, frames in (("train", 6), ("test", 3)):
                for frame in range(frames):
                    for landmark in landmarks:
                        error = 2 + 40 / iteration * 50 + (3 if split == "test" else 0) * 10 / size
                        error *= rng.uniform(0.7, 1.3)
                        angle = rng.uniform(0, 2 * np.pi)
                        # participants stand in different places: the mean pose is a poor predictor (~50 px off)
                        x_label = 80.0 + 70 * np.cos(1.7 * frame + landmarks.index(landmark) + (split == "test"))
                        y_label = 60.0 + 50 * np.sin(1.3 * frame + landmarks.index(landmark))
                        rows.append({"frame_set_size": size, "snapshot_iteration": iteration, "split": split,
                                     "video": f"P{frame % 2 + 1:03d}", "image": f"img{frame:02d}.png",
                                     "landmark": landmark, "x_label_px": x_label, "y_label_px": y_label,
                                     "x_pred_px": x_label + error * np.cos(angle),
                                     "y_pred_px": y_label + error * np.sin(angle),
                                     "likelihood": rng.uniform(0.3, 1.0), "error_px": error,
                                     "px_per_mm": 1.25, "error_mm": error / 1.25})
    return pd.DataFrame(rows)


def context() -> dict:
    study = {"cohort": "tiny", "frames_per_video": 8, "bad_video_policy": "fail", "frame_set_sizes": list(SIZES),
             "train_fraction": 0.8, "split_mode": "paper", "max_iterations": 200, "snapshot_interval": 50,
             "network": "resnet_50", "batch_size": 1, "allow_random_init": True, "max_missing_label_fraction": 0.1,
             "px_per_mm": 1.25, "pcutoff": 0.6, "invalid_labels": "fail", "seed": 42}
    return {
        "study_config": study,
        "initial_weights": {"path": "/w/resnet_v1_50_random_init.ckpt", "kind": "random_init"},
        "training": [{"frame_set_size": s, "shuffle": i + 1, "network": "resnet_50",
                      "snapshot_iterations": list(ITERATIONS), "resumed_from_iteration": 0, "seconds": 30.0,
                      "iterations_per_second": 6.7, "initial_weights": "random_init", "device": "CPU"}
                     for i, s in enumerate(SIZES)],
        "labels": {"labeled_frames": 24, "videos": 3},
        "extraction": {"frames_per_video": {"P001": 8, "P002": 8, "P003": 8}, "total_frames": 24,
                       "bad_videos": {}, "bad_video_policy": "fail"},
        "excluded_frames": [],
        "scale": {"source": "parameter", "px_per_mm": {"P001": 1.25, "P002": 1.25, "P003": 1.25}},
    }


def html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of a page as rows of cell texts."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr" and self.tables:
                self.tables[-1].append([])
            elif tag in ("td", "th") and self.tables:
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.tables[-1][-1].append(" ".join("".join(self.cell).split()))
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Tables()
    parser.feed(page)
    return parser.tables
