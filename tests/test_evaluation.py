import numpy as np

from posesweep.evaluation import _batches, decode_poses


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
    assert _batches(images, 2) == [[0, 2], [3], [1]]
