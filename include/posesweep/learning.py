"""Did a network learn anything? Its errors against a predictor that looks at no image.

The trivial predictor puts every landmark of every test frame at that landmark's
mean position over the network's training frames (the mean training pose). A
network that has learned the task predicts test frames far better than that. The
rule: a network has learned when, at the snapshot the study would recommend, its
mean test error is at most ``LEARNED_ERROR_RATIO`` of the mean-pose predictor's
error on the same test frames and landmarks. A network that failed to learn (a
handful of iterations from random weights, a broken data path) predicts
everywhere or nowhere, and its errors sit near or above the trivial predictor's.
Statistics on such networks still find "plateaus", so no recommendation is made
from them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LEARNED_ERROR_RATIO = 0.5
# A network that did not learn, and whose test error at the last snapshot is at least this much below the one
# before, is still learning: the report's first advice is then more iterations, not other labels or weights.
STILL_FALLING_FRACTION = 0.05
# Before this many iterations a test error that stopped falling says nothing of what more iterations would do: the
# demo's networks (DeepLabCut 3's PyTorch engine from random weights) learn within the 1,200 iterations `make demo`
# trains, and the Reaching project's, from random weights, saw their test error in px rise by 13-31% between
# snapshots at 20, 40 and 60 iterations while the training loss fell.
MIN_ITERATIONS_TO_JUDGE_A_PLATEAU = 1000

RULE = (f"A network counts as having learned when its mean test error is at most "
        f"{LEARNED_ERROR_RATIO:.0%} of the error of the mean training pose (each landmark of every test frame "
        f"predicted at its mean position over that network's training frames, without looking at the image).")


def mean_pose_errors(errors: pd.DataFrame) -> pd.DataFrame:
    """Per network and landmark: the mean training pose and its mean error on the test frames (px)."""
    labels = errors.drop_duplicates(["frame_set_size", "split", "video", "image", "landmark"])
    train = labels[labels["split"] == "train"]
    mean_pose = (train.groupby(["frame_set_size", "landmark"])[["x_label_px", "y_label_px"]].mean()
                 .rename(columns={"x_label_px": "x_mean_px", "y_label_px": "y_mean_px"}).reset_index())
    test = labels[labels["split"] == "test"].merge(mean_pose, on=["frame_set_size", "landmark"])
    test["mean_pose_error_px"] = np.hypot(test["x_label_px"] - test["x_mean_px"],
                                          test["y_label_px"] - test["y_mean_px"])
    return test.groupby(["frame_set_size", "landmark"], as_index=False)["mean_pose_error_px"].mean()


def landmarks_without_training_labels(errors: pd.DataFrame) -> dict[int, list[str]]:
    """Per network: the landmarks labelled in its test frames and in none of its training frames (a landmark out
    of sight in most frames, in a small frame set). It has no mean training pose and the network was never shown
    it: it is left out of the learning check, on both sides."""
    labelled = errors.dropna(subset=["x_label_px", "y_label_px"])
    in_split = labelled.groupby(["frame_set_size", "split"])["landmark"].agg(set)
    found = {}
    for size in sorted(labelled["frame_set_size"].unique()):
        missing = in_split.get((size, "test"), set()) - in_split.get((size, "train"), set())
        if missing:
            found[int(size)] = sorted(missing)
    return found


def learning_check(errors: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Per network at one snapshot: its test frames, its test error, the mean-pose predictor's, their ratio, and
    whether it learned; over the landmarks that have a mean training pose (``landmarks_without_training_labels``:
    with one in the network's error and not in the predictor's, a network that learned every landmark it was shown
    could read as one that learned nothing)."""
    test = errors[(errors["split"] == "test") & (errors["snapshot_iteration"] == iteration)]
    network = test.groupby(["frame_set_size", "landmark"], as_index=False)["error_px"].mean()
    both = network.merge(mean_pose_errors(errors).dropna(subset=["mean_pose_error_px"]),
                         on=["frame_set_size", "landmark"])
    table = both.groupby("frame_set_size", as_index=False).agg(test_error_px=("error_px", "mean"),
                                                               mean_pose_error_px=("mean_pose_error_px", "mean"))
    table.insert(1, "snapshot_iteration", int(iteration))
    frames = test.drop_duplicates(["frame_set_size", "video", "image"]).groupby("frame_set_size").size()
    table.insert(2, "test_frames", table["frame_set_size"].map(frames).astype(int))  # what each mean rests on
    table["error_ratio"] = table["test_error_px"] / table["mean_pose_error_px"]
    table["learned"] = table["error_ratio"] <= LEARNED_ERROR_RATIO
    return table
