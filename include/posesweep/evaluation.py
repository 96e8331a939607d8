"""Score every snapshot of a frame set's network: Euclidean error per frame, landmark and split.

The test graph is built once per process (with AutoGraph off: same graph, half
the build time) and each snapshot's weights are restored into it; networks of
the same architecture share it. DeepLabCut's ``evaluate_network`` rebuilds the
graph per snapshot and predicts one image at a time; here images of equal size
are predicted in batches. Decoding is DeepLabCut's (``argmax_pose_predict``:
score-map argmax plus location refinement), vectorised over the batch. Error is
the Euclidean distance in px between prediction and the human (or simulated)
label, as in the paper.

Snapshots are scored as they appear: the training process runs a
:class:`ScoringWhileTraining` thread, and each scored snapshot is its own file
(``evaluation/frame_set_<n>/snapshot-<it>.csv``), so the evaluation task only
scores what is missing and then assembles the network's table.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .layout import RunLayout, atomic_path, read_csv_table, read_json
from .splits import FrameSet
from .stats import study_means
from .images import read_rgb
from .training import pose_cfg_paths, snapshot_iterations_in

log = logging.getLogger(__name__)

ERROR_COLUMNS = ["frame_set_size", "snapshot_iteration", "split", "video", "image", "landmark",
                 "x_label_px", "y_label_px", "x_pred_px", "y_pred_px", "likelihood", "error_px"]
BATCH_SIZE = 32
# Test-config entries that name files; every other entry shapes the graph.
GRAPH_INDEPENDENT_KEYS = frozenset({"dataset", "init_weights", "snapshot_prefix", "project_path", "scoremap_dir",
                                    "log_dir", "metadataset"})
POLL_SECONDS = 2.0


def equal_shape_groups(images: list[np.ndarray]) -> list[list[int]]:
    """Indices of the images grouped by shape, in order of first appearance."""
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    return list(by_shape.values())


def predict_fitting(images: list[np.ndarray], joints: int, batch_size: int,
                    predict_batch: Callable[[np.ndarray], np.ndarray], out_of_memory: type[BaseException],
                    after_out_of_memory: Callable[[], None] = lambda: None) -> tuple[np.ndarray, int]:
    """``predict_batch`` (frames -> (frames, joints, [x, y, likelihood])) over the images in batches of equal
    shape, at most ``batch_size`` each; (the predictions in image order, the batch size that fitted).

    A batch that runs out of the device's memory is halved and retried, and the smaller size kept for the rest; a
    scorer passes it on to its next snapshot. (By the layer sizes, a ResNet-50 holds about 10 GiB of activations
    at once for 32 whole 1080p frames: more than a lab's 8 or 11 GiB card has, or than is left beside a training.)
    One image out of memory is re-raised.
    """
    poses = np.empty((len(images), joints, 3))
    for group in equal_shape_groups(images):
        done = 0
        while done < len(group):
            batch = group[done:done + batch_size]
            try:
                out = predict_batch(np.stack([images[i] for i in batch]))
            except out_of_memory:
                if len(batch) == 1:
                    raise
                after_out_of_memory()
                batch_size = len(batch) // 2
                height, width = images[batch[0]].shape[:2]
                log.warning("scoring %dx%d px frames: a batch of %d ran out of the device's memory; scoring in "
                            "batches of %d from here on", width, height, len(batch), batch_size)
                continue
            poses[batch] = out
            done += len(batch)
    return poses, batch_size


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


def graph_key(cfg: dict) -> str:
    """Networks whose test configs agree on this key have the same graph and can share one scorer."""
    return json.dumps({k: v for k, v in cfg.items() if k not in GRAPH_INDEPENDENT_KEYS}, sort_keys=True, default=str)


class SnapshotScorer:
    """DeepLabCut's test graph for one architecture, built once; any snapshot's weights restored into it."""

    def __init__(self, cfg: dict):
        import tensorflow as tf
        from deeplabcut.pose_estimation_tensorflow.nnets.factory import PoseNetFactory
        from tensorflow.python.autograph.core import ag_ctx

        started = time.perf_counter()
        self.cfg = cfg
        self.graph = tf.Graph()
        # AutoGraph would transpile every BatchNorm call's source (~2 s for a ResNet-50) to build the very same
        # ops: the test graph has no tensor-dependent Python control flow (is_training is the constant False).
        with self.graph.as_default(), ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
            self.inputs = tf.compat.v1.placeholder(tf.float32, shape=[None, None, None, 3])
            heads = PoseNetFactory.create(cfg).test(self.inputs)
            self.outputs = [heads["part_prob"]] + ([heads["locref"]] if cfg["location_refinement"] else [])
            self.saver = tf.compat.v1.train.Saver()
        config = tf.compat.v1.ConfigProto()
        config.gpu_options.allow_growth = True
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.batch_size = BATCH_SIZE  # lowered for good where a batch ran out of the device's memory
        self.build_seconds = time.perf_counter() - started

    def predict(self, snapshot_prefix: Path, images: list[np.ndarray]) -> np.ndarray:
        """(images, joints, [x, y, likelihood]) with the snapshot's weights."""
        import tensorflow as tf

        self.saver.restore(self.session, str(snapshot_prefix))
        poses, self.batch_size = predict_fitting(images, self.cfg["num_joints"], self.batch_size,
                                                 self._predict_batch, tf.errors.ResourceExhaustedError)
        return poses

    def _predict_batch(self, frames: np.ndarray) -> np.ndarray:
        out = self.session.run(self.outputs, feed_dict={self.inputs: frames.astype(np.float32)})
        locref = None
        if self.cfg["location_refinement"]:
            b, h, w, _ = out[1].shape
            locref = out[1].reshape(b, h, w, -1, 2) * self.cfg["locref_stdev"]
        return decode_poses(out[0], locref, self.cfg["stride"])

    def close(self) -> None:
        self.session.close()


class ScorerCache:
    """One scorer per network architecture, for all networks scored in this process."""

    def __init__(self):
        self._scorers: dict[str, SnapshotScorer] = {}

    def for_config(self, cfg: dict) -> SnapshotScorer:
        key = graph_key(cfg)
        if key not in self._scorers:
            self._scorers[key] = SnapshotScorer(cfg)
            log.info("test graph of %s built in %.1f s", cfg["net_type"], self._scorers[key].build_seconds)
        return self._scorers[key]

    def for_input(self, data: "ScoringInput"):
        """The scorer of a frame set's network: DeepLabCut's TF test graph, or its PyTorch ``PoseModel``."""
        if data.engine != "pytorch":
            return self.for_config(data.test_cfg)
        from .torch_engine.scoring import TorchSnapshotScorer

        key = "pytorch " + json.dumps(data.test_cfg["model"], sort_keys=True, default=str)
        if key not in self._scorers:
            self._scorers[key] = TorchSnapshotScorer(data.test_cfg)
        return self._scorers[key]

    def close(self) -> None:
        for scorer in self._scorers.values():
            scorer.close()
        self._scorers.clear()


def _drop_config_dump(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Config:")


@dataclass
class ScoringInput:
    """A frame set's labeled images, read once, and what scoring needs to know about its network."""

    frame_set_size: int
    test_cfg: dict  # TensorFlow: the test pose_cfg.yaml; PyTorch: pytorch_config.yaml
    train_dir: Path
    frames: list[tuple[str, str, str]]  # (split, video, image)
    images: list[np.ndarray]
    labels: dict[tuple[str, str, str], tuple[float, float]]
    engine: str = "tensorflow"

    @classmethod
    def load(cls, layout: RunLayout, frame_set: FrameSet, label_table: pd.DataFrame,
             engine: str = "tensorflow") -> ScoringInput:
        if engine == "pytorch":
            from .torch_engine.project import model_config_path, read_model_config

            config_path = model_config_path(layout.project_dir / "config.yaml", frame_set)
            test_cfg, train_dir = read_model_config(config_path), config_path.parent
        else:
            from deeplabcut.pose_estimation_tensorflow.config import load_config

            train_cfg_path, test_cfg_path, _ = pose_cfg_paths(layout.project_dir / "config.yaml", frame_set)
            root = logging.getLogger()
            root.addFilter(_drop_config_dump)  # DeepLabCut logs the whole config; the training log already has it
            try:
                test_cfg = load_config(str(test_cfg_path))
            finally:
                root.removeFilter(_drop_config_dump)
            train_dir = train_cfg_path.parent
        frames = [("train", *f) for f in frame_set.train] + [("test", *f) for f in frame_set.test]
        images = [read_rgb(layout.project_dir / "labeled-data" / stem / image) for _, stem, image in frames]
        labels = {(row.video, row.image, row.landmark): (row.x_px, row.y_px)
                  for row in label_table[["video", "image", "landmark", "x_px", "y_px"]].itertuples(index=False)}
        return cls(frame_set.frame_set_size, test_cfg, train_dir, frames, images, labels, engine)

    @property
    def landmarks(self) -> list[str]:
        if self.engine == "pytorch":
            return list(self.test_cfg["metadata"]["bodyparts"])
        return list(self.test_cfg["all_joints_names"])

    def snapshot_path(self, iteration: int) -> Path:
        """TensorFlow: the checkpoint prefix; PyTorch: the .pt file."""
        return self.train_dir / (f"snapshot-{iteration}.pt" if self.engine == "pytorch" else f"snapshot-{iteration}")


def unscored(layout: RunLayout, frame_set_size: int, iterations: list[int]) -> list[int]:
    return [it for it in iterations if not layout.snapshot_errors_file(frame_set_size, it).exists()]


def score_snapshot(layout: RunLayout, data: ScoringInput, scorer: SnapshotScorer, iteration: int,
                   position: str = "") -> pd.DataFrame:
    """Score one snapshot on the frame set's train and test images; written atomically as its own table."""
    started = time.perf_counter()
    poses = scorer.predict(data.snapshot_path(iteration), data.images)
    landmarks = data.landmarks
    rows = []
    for (split, stem, image), pose in zip(data.frames, poses):
        for landmark, (x_pred, y_pred, likelihood) in zip(landmarks, pose):
            x_label, y_label = data.labels[(stem, image, landmark)]
            rows.append((data.frame_set_size, iteration, split, stem, image, landmark, x_label, y_label,
                         x_pred, y_pred, likelihood, float(np.hypot(x_pred - x_label, y_pred - y_label))))
    table = pd.DataFrame(rows, columns=ERROR_COLUMNS)
    target = layout.snapshot_errors_file(data.frame_set_size, iteration)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    seconds = time.perf_counter() - started
    means = study_means(table, ["split"])  # the report's number
    print(f"[frame set {data.frame_set_size}] scored snapshot {iteration}{position}: "
          + ", ".join(f"{split} error {means[split]:.2f} px" for split in ("train", "test") if split in means)
          + f" ({len(data.images)} images in {seconds:.1f} s, {len(data.images) / seconds:.1f} images/s)", flush=True)
    return table


def assemble_network_table(layout: RunLayout, frame_set_size: int, iterations: list[int]) -> Path:
    table = pd.concat([read_csv_table(layout.snapshot_errors_file(frame_set_size, it)) for it in iterations],
                      ignore_index=True)
    target = layout.evaluation_file(frame_set_size)
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    summary = study_means(table, ["snapshot_iteration", "split"]).unstack()
    print(f"[frame set {frame_set_size}] mean error (px) by snapshot:\n{summary.round(2)}", flush=True)
    return target


def evaluate_frame_set(layout: RunLayout, frame_set: FrameSet, label_table: pd.DataFrame,
                       scorers: ScorerCache | None = None, engine: str = "tensorflow") -> Path:
    """Score the snapshots not scored yet (during training, or by an earlier attempt), then assemble the table."""
    size = frame_set.frame_set_size
    target = layout.evaluation_file(size)
    snapshots = read_json(layout.training_dir(size) / "training.json")["snapshot_iterations"]
    if target.exists():
        done = pd.read_csv(target, usecols=["snapshot_iteration"])["snapshot_iteration"].unique()
        if sorted(done) == sorted(snapshots):
            log.info("frame set %d: all %d snapshots already scored, skipped", size, len(snapshots))
            return target
    todo = unscored(layout, size, snapshots)
    print(f"[frame set {size}] {len(snapshots) - len(todo)} of {len(snapshots)} snapshots already scored "
          f"(during training or an earlier attempt); scoring {len(todo)}", flush=True)
    if todo:
        own_cache = scorers is None
        scorers = scorers or ScorerCache()
        try:
            data = ScoringInput.load(layout, frame_set, label_table, engine)
            scorer = scorers.for_input(data)
            for n, iteration in enumerate(todo, start=1):
                score_snapshot(layout, data, scorer, iteration, f" ({n}/{len(todo)})")
        finally:
            if own_cache:
                scorers.close()
    return assemble_network_table(layout, size, snapshots)


def evaluate_frame_sets(layout: RunLayout, frame_sets: list[FrameSet], label_table: pd.DataFrame,
                        engine: str = "tensorflow") -> list[Path]:
    """Every network of the run in one process: one scorer shared by all networks of one architecture."""
    scorers = ScorerCache()
    try:
        return [evaluate_frame_set(layout, fs, label_table, scorers, engine) for fs in frame_sets]
    finally:
        scorers.close()


class ScoringWhileTraining:
    """Scores each snapshot as soon as DeepLabCut has written it, in a thread of the training process.

    The thread starts scoring once training has written its first new snapshot (the
    training graph is complete by then), scores older snapshots of a resumed run too,
    and on a clean exit finishes whatever is left. It never fails the training: if
    scoring breaks, the evaluation task scores the rest.
    """

    def __init__(self, layout: RunLayout, frame_set: FrameSet, label_table: pd.DataFrame, iterations: list[int],
                 enabled: bool = True):
        self.layout, self.frame_set, self.label_table = layout, frame_set, label_table
        self.iterations = list(iterations)
        self.enabled = enabled  # False: the evaluation task scores every snapshot (see stages.train)
        self.train_dir = pose_cfg_paths(layout.project_dir / "config.yaml", frame_set)[0].parent
        self._stop = threading.Event()
        self._abandon = False
        self._thread = threading.Thread(target=self._run, name=f"score-frame-set-{frame_set.frame_set_size}",
                                        daemon=True)
        self.error: BaseException | None = None
        self.started_scoring = False  # its network and batches have taken (GPU) memory beside the trainer's

    def __enter__(self) -> ScoringWhileTraining:
        self._existing = set(snapshot_iterations_in(self.train_dir))
        if self.enabled:
            self._thread.start()
        else:
            print(f"[frame set {self.frame_set.frame_set_size}] snapshots are scored after training, by the "
                  f"evaluation task", flush=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._abandon = exc_type is not None
        self._stop.set()
        if self.enabled:
            self._thread.join()
        if self.error is not None:
            print(f"[frame set {self.frame_set.frame_set_size}] scoring during training stopped "
                  f"({type(self.error).__name__}: {self.error}); the evaluation task scores the rest", flush=True)

    def _pending(self) -> list[int]:
        present = set(snapshot_iterations_in(self.train_dir))
        return unscored(self.layout, self.frame_set.frame_set_size, [it for it in self.iterations if it in present])

    def _run(self) -> None:
        size = self.frame_set.frame_set_size
        scorers, data = ScorerCache(), None
        try:
            while True:
                finishing = self._stop.is_set()
                if self._abandon:
                    return
                training_wrote = set(snapshot_iterations_in(self.train_dir)) - self._existing
                if finishing or training_wrote:
                    for iteration in self._pending():
                        if self._abandon:
                            return
                        if data is None:
                            data = ScoringInput.load(self.layout, self.frame_set, self.label_table)
                        self.started_scoring = True
                        score_snapshot(self.layout, data, scorers.for_config(data.test_cfg), iteration,
                                       " (after training)" if finishing else " (while training)")
                if finishing:
                    return
                self._stop.wait(POLL_SECONDS)
        except Exception as error:  # noqa: BLE001 -- reported on exit; the evaluation task retries
            log.exception("frame set %d: scoring during training failed", size)
            self.error = error
        finally:
            scorers.close()


def combine_error_tables(layout: RunLayout, frame_set_sizes: list[int],
                         px_per_mm_by_video: dict[str, float] | None = None) -> pd.DataFrame:
    """The run's one tidy table (``evaluation/errors.csv``), with errors in mm where the video's scale is known."""
    tables = [read_csv_table(layout.evaluation_file(size)) for size in frame_set_sizes]
    table = pd.concat(tables, ignore_index=True)
    table["px_per_mm"] = table["video"].astype(str).map(px_per_mm_by_video or {}).astype(float)
    table["error_mm"] = table["error_px"] / table["px_per_mm"]
    with atomic_path(layout.errors_file) as tmp:
        table.to_csv(tmp, index=False)
    return table
