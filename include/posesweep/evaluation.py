"""Score every snapshot of a frame set's network: Euclidean error per frame, landmark and split.

The test graph is built once and each snapshot's weights are restored into it
(DeepLabCut's ``evaluate_network`` rebuilds the graph per snapshot and predicts
one image at a time); images of equal size are predicted in batches. Decoding
is DeepLabCut's (``predict.argmax_pose_predict``: score-map argmax plus location
refinement), vectorised over the batch. Error is the Euclidean distance in px
between prediction and the human (or simulated) label, as in the paper.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .layout import RunLayout, atomic_path, read_json
from .splits import FrameSet
from .training import _read_rgb, pose_cfg_paths

log = logging.getLogger(__name__)

ERROR_COLUMNS = ["frame_set_size", "snapshot_iteration", "split", "video", "image", "landmark",
                 "x_label_px", "y_label_px", "x_pred_px", "y_pred_px", "likelihood", "error_px"]


def evaluate_frame_set(layout: RunLayout, frame_set: FrameSet, label_table: pd.DataFrame) -> Path:
    target = layout.evaluation_file(frame_set.frame_set_size)
    training = read_json(layout.training_dir(frame_set.frame_set_size) / "training.json")
    snapshots = training["snapshot_iterations"]
    if target.exists():
        done = pd.read_csv(target, usecols=["snapshot_iteration"])["snapshot_iteration"].unique()
        if sorted(done) == sorted(snapshots):
            log.info("frame set %d: all %d snapshots already scored, skipped", frame_set.frame_set_size,
                     len(snapshots))
            return target
    import tensorflow as tf
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.pose_estimation_tensorflow.nnets.factory import PoseNetFactory

    _, test_cfg_path, _ = pose_cfg_paths(layout.project_dir / "config.yaml", frame_set)
    cfg = load_config(str(test_cfg_path))
    landmarks = list(cfg["all_joints_names"])
    frames = [("train", f) for f in frame_set.train] + [("test", f) for f in frame_set.test]
    images = [_read_rgb(layout.project_dir / "labeled-data" / stem / image) for _, (stem, image) in frames]
    labels = {(row.video, row.image, row.landmark): (row.x_px, row.y_px)
              for row in label_table[["video", "image", "landmark", "x_px", "y_px"]].itertuples(index=False)}

    tf.compat.v1.reset_default_graph()
    inputs = tf.compat.v1.placeholder(tf.float32, shape=[None, None, None, 3])
    heads = PoseNetFactory.create(cfg).test(inputs)
    outputs = [heads["part_prob"], heads["locref"]] if cfg["location_refinement"] else [heads["part_prob"]]
    saver = tf.compat.v1.train.Saver()
    rows = []
    train_dir = Path(training["train_dir"])
    with tf.compat.v1.Session() as sess:
        for n, iteration in enumerate(snapshots, start=1):
            started = time.perf_counter()
            saver.restore(sess, str(train_dir / f"snapshot-{iteration}"))
            for batch in _batches(images, BATCH_SIZE):
                poses = predict_batch(sess, inputs, outputs, np.stack([images[i] for i in batch]), cfg)
                for i, pose in zip(batch, poses):
                    split, (stem, image) = frames[i]
                    for landmark, (x_pred, y_pred, likelihood) in zip(landmarks, pose):
                        x_label, y_label = labels[(stem, image, landmark)]
                        rows.append((frame_set.frame_set_size, iteration, split, stem, image, landmark,
                                     x_label, y_label, x_pred, y_pred, likelihood,
                                     float(np.hypot(x_pred - x_label, y_pred - y_label))))
            seconds = time.perf_counter() - started
            print(f"[frame set {frame_set.frame_set_size}] scored snapshot {iteration} ({n}/{len(snapshots)}): "
                  f"{len(frames)} images in {seconds:.1f} s ({len(frames) / seconds:.1f} images/s)", flush=True)
    table = pd.DataFrame(rows, columns=ERROR_COLUMNS)
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    summary = table.groupby(["snapshot_iteration", "split"])["error_px"].mean().unstack()
    print(f"[frame set {frame_set.frame_set_size}] mean error (px) by snapshot:\n{summary.round(2)}", flush=True)
    return target


BATCH_SIZE = 32


def _batches(images: list[np.ndarray], size: int) -> list[list[int]]:
    """Indices grouped into batches of images of equal shape."""
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    return [group[k:k + size] for group in by_shape.values() for k in range(0, len(group), size)]


def decode_poses(scmap: np.ndarray, locref: np.ndarray | None, stride: float) -> np.ndarray:
    """(batch, joints, [x, y, likelihood]) from score maps (b, h, w, j) and refinements (b, h, w, j, 2).

    Same arithmetic as DeepLabCut's ``argmax_pose_predict``, for a whole batch.
    """
    b, h, w, j = scmap.shape
    flat = scmap.reshape(b, h * w, j)
    best = flat.argmax(axis=1)  # (b, j)
    ys, xs = np.unravel_index(best, (h, w))
    bi, ji = np.meshgrid(np.arange(b), np.arange(j), indexing="ij")
    likelihood = scmap[bi, ys, xs, ji]
    offset = locref[bi, ys, xs, ji] if locref is not None else np.zeros((b, j, 2))
    x = xs.astype(float) * stride + 0.5 * stride + offset[..., 0]
    y = ys.astype(float) * stride + 0.5 * stride + offset[..., 1]
    return np.stack([x, y, likelihood], axis=-1)


def predict_batch(sess, inputs, outputs, batch: np.ndarray, cfg: dict) -> np.ndarray:
    out = sess.run(outputs, feed_dict={inputs: batch.astype(np.float32)})
    scmap = out[0]
    locref = None
    if cfg["location_refinement"]:
        shape = out[1].shape
        locref = out[1].reshape(shape[0], shape[1], shape[2], -1, 2) * cfg["locref_stdev"]
    return decode_poses(scmap, locref, cfg["stride"])


def combine_error_tables(layout: RunLayout, frame_set_sizes: list[int]) -> pd.DataFrame:
    tables = [pd.read_csv(layout.evaluation_file(size)) for size in frame_set_sizes]
    table = pd.concat(tables, ignore_index=True)
    with atomic_path(layout.errors_file) as tmp:
        table.to_csv(tmp, index=False)
    return table
