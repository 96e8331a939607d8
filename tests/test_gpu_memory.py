"""The TensorFlow engine's training step out of GPU memory: told apart from the host's, with the frame size.

(The PyTorch engine's: tests/test_torch_engine.py -k out_of_gpu_memory; the paragraph and its rule are shared,
``posesweep.gpu_memory``. A process the kernel's out-of-memory killer ends: tests/test_runner.py.)"""

from __future__ import annotations

import pandas as pd

from posesweep.layout import RunLayout
from posesweep.splits import FrameSet
from posesweep.splits import largest_frame
from posesweep.training import ran_out_on_a_gpu


def test_tensorflows_out_of_memory_on_a_gpu_is_told_apart_from_the_hosts():
    """A real ResourceExhaustedError from TensorFlow's host allocator is left to the runner (the out-of-memory
    killer's path); the same message from a GPU's allocator, as TensorFlow names its GPU and allocator, is the
    GPU's."""
    import tensorflow as tf

    graph = tf.Graph()  # a session's run, as DeepLabCut's trainer runs its step (its import turns eager off)
    with graph.as_default():
        ones = tf.fill([2**38], 1.0)  # 1 TiB: no host allocator gives it
    try:
        tf.compat.v1.Session(graph=graph).run(ones)
        raise AssertionError("TensorFlow allocated 1 TiB")
    except tf.errors.ResourceExhaustedError as error:
        message = str(error)
    assert "OOM when allocating tensor" in message and "device:CPU:0" in message
    assert not ran_out_on_a_gpu(message)
    on_gpu = message.replace("device:CPU:0", "device:GPU:0").replace("by allocator mklcpu", "by allocator GPU_0_bfc")
    assert ran_out_on_a_gpu(on_gpu)


def test_the_paragraph_names_the_largest_training_frame_of_the_network(tmp_path):
    """Frames of two cameras: the largest training frame is what the step holds; test frames are not trained."""
    layout = RunLayout.create(tmp_path, "lab", "run")
    layout.validated_labels_file.parent.mkdir(parents=True)
    rows = [("0012", "img001.png", 1280, 720), ("0012", "img002.png", 1280, 720), ("side", "img001.png", 1920, 1200),
            ("side", "img002.png", 2560, 1440)]
    pd.DataFrame([{"video": v, "participant": v, "image": i, "frame_index": 1, "landmark": "knee", "x_px": 1.0,
                   "y_px": 1.0, "image_width_px": w, "image_height_px": h} for v, i, w, h in rows]
                 ).to_csv(layout.validated_labels_file, index=False)
    frame_set = FrameSet(3, 1, train=(("0012", "img001.png"), ("side", "img001.png")), test=(("side", "img002.png"),))
    assert largest_frame(layout, frame_set) == (1920, 1200)


def test_a_step_out_of_gpu_memory_beside_the_scorer_is_retried_without_it(tiny_cohort, tmp_path, capsys):
    """TensorFlow's trainer and the snapshot scorer share one process and its GPU allocator: a step that ran out
    while the scorer held memory is not known to be too large. The retry (a real training here) runs without the
    scorer beside it, and the evaluation task scores every snapshot."""
    from conftest import training_ready_run
    from posesweep import stages
    from posesweep.errors import GpuMemoryTooSmallError
    from posesweep.gpu_memory import GpuMemory, out_of_memory_beside_the_scorer, step_out_of_memory

    alone = step_out_of_memory(GpuMemory("NVIDIA GeForce RTX 2080 Ti", 11 * 2**30, 10 * 2**30, 2**29), 1, 1920,
                               1080, "fp32", 12)
    assert isinstance(alone, GpuMemoryTooSmallError) and not alone.retryable  # what the step alone would be told
    shared = out_of_memory_beside_the_scorer(alone)
    assert shared.retryable and shared.found == alone.found
    assert "while the snapshot scorer beside it held GPU memory too" in shared.explain()
    assert "the retry resumes from the newest snapshot without scoring beside the training" in shared.explain()

    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
            "max_iterations": 20, "snapshot_interval": 10, "allow_random_init": True}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__scorer_off")
    layout = run.layout
    marker = layout.scoring_after_training_marker(12)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{alone.what}\n{alone.found}\n")  # what stages.train leaves when it raises ``shared``
    assert stages.train(run, 12)["snapshot_iterations"] == [10, 20]
    assert "[frame set 12] snapshots are scored after training, by the evaluation task" in capsys.readouterr().out
    assert not any(layout.snapshot_errors_file(12, it).exists() for it in (10, 20))
    stages.evaluate(run, 12)
    assert all(layout.snapshot_errors_file(12, it).exists() for it in (10, 20))
    assert set(pd.read_csv(layout.evaluation_file(12))["snapshot_iteration"]) == {10, 20}
