import logging
import time

import numpy as np
import pytest

from posesweep.evaluation import decode_poses, equal_shape_groups, predict_fitting


def test_batched_decoding_equals_deeplabcuts_argmax_pose_predict():
    from deeplabcut.pose_estimation_tensorflow.core.predict import argmax_pose_predict

    rng = np.random.default_rng(0)
    scmap = rng.random((3, 9, 12, 10)).astype(np.float32)
    locref = rng.normal(0, 4, (3, 9, 12, 10, 2)).astype(np.float32)
    ours = decode_poses(scmap, locref, stride=8.0)
    for b in range(3):
        np.testing.assert_allclose(ours[b], argmax_pose_predict(scmap[b], locref[b], 8.0), rtol=0, atol=1e-9)


def test_batches_group_images_of_equal_shape():
    images = [np.zeros((4, 6, 3)), np.zeros((5, 6, 3)), np.zeros((4, 6, 3)), np.zeros((4, 6, 3))]
    assert equal_shape_groups(images) == [[0, 2, 3], [1]]


def test_a_scoring_batch_out_of_memory_is_halved_and_the_size_that_fits_is_kept(caplog):
    """A batch of more than two frames makes a real allocation TensorFlow cannot make (1 TiB a frame): scoring
    goes on in halves, every image predicted once and in its place; one image out of memory is re-raised."""
    import tensorflow as tf

    images = [np.full((4, 6, 3), i, np.uint8) for i in range(7)] + [np.full((5, 6, 3), 9, np.uint8)]
    sizes = []
    graph = tf.Graph()  # a session's run, as the scorer's (DeepLabCut's import turns eager execution off)
    with graph.as_default():
        elements = tf.compat.v1.placeholder(tf.int64, [])
        total = tf.reduce_sum(tf.fill(tf.reshape(elements, [1]), 1.0))
    session = tf.compat.v1.Session(graph=graph)

    def predict_batch(frames: np.ndarray, fits: int = 2) -> np.ndarray:
        sizes.append(len(frames))
        assert session.run(total, {elements: len(frames) * (2**38 if len(frames) > fits else 1)}) == len(frames)
        return np.stack([[[frame.mean(), frame.shape[0], 1.0]] for frame in frames])  # one joint each

    with caplog.at_level(logging.WARNING):
        poses, fitted = predict_fitting(images, 1, 4, predict_batch, tf.errors.ResourceExhaustedError)
    assert fitted == 2 and sizes == [4, 2, 2, 2, 1, 1]
    assert poses[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 9] and poses[:, 0, 1].tolist() == [4] * 7 + [5]
    assert [r.getMessage() for r in caplog.records] == [
        "scoring 6x4 px frames: a batch of 4 ran out of the device's memory; scoring in batches of 2 from here on"]
    with pytest.raises(tf.errors.ResourceExhaustedError):  # (TensorFlow waits 10 s for memory before each)
        predict_fitting(images[:1], 1, fitted, lambda frames: predict_batch(frames, fits=0),
                        tf.errors.ResourceExhaustedError)


@pytest.mark.slow
def test_scoring_that_breaks_during_training_never_fails_the_training(tiny_cohort, tmp_path, capsys):
    """A snapshot appears, scoring it fails (an image went missing): the error is kept and reported, nothing is
    written, and the training goes on; the evaluation task scores the rest later."""
    from conftest import training_ready_run
    from posesweep import stages
    from posesweep.evaluation import ScoringWhileTraining
    from posesweep.labels import read_label_table

    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
            "max_iterations": 100, "snapshot_interval": 50, "allow_random_init": True}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__scoring")
    layout = run.layout
    frame_set = stages.frame_set_of(layout, 12)
    stem, image = frame_set.test[0]
    (layout.project_dir / "labeled-data" / stem / image).unlink()

    with ScoringWhileTraining(layout, frame_set, read_label_table(layout.validated_labels_file), [50, 100]) as scoring:
        for suffix in (".index", ".data-00000-of-00001"):  # what DeepLabCut's saver leaves for a snapshot
            (scoring.train_dir / f"snapshot-50{suffix}").write_bytes(b"")
        deadline = time.monotonic() + 120
        while scoring.error is None:
            assert time.monotonic() < deadline, "the scoring thread never tried the new snapshot"
            time.sleep(0.2)
    assert isinstance(scoring.error, FileNotFoundError) and image in str(scoring.error)
    assert not layout.snapshot_errors_file(12, 50).exists()
    assert "scoring during training stopped (FileNotFoundError" in capsys.readouterr().out
