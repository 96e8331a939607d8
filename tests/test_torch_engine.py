"""The PyTorch engine: its on-device data path against DeepLabCut's loader, its scoring against DeepLabCut's own
evaluation, and the whole study DAG on it."""

import copy
import glob
import json
import logging
import math
import re
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import analysed_as_the_report_says
from posesweep.torch_engine import augment
from posesweep.torch_engine.targets import TargetConfig, heatmap_targets
from posesweep.torch_engine.trainer import BatchSampler, learning_rate_at

H, W, STRIDE = 120, 160, 8


def _dlc_loader_targets(image, keypoints, rotation_deg, scale, translation_px, generator_cfg):
    """DeepLabCut's own path: its albumentations Affine (as ``build_transforms`` makes it, with the range
    collapsed to the given draw), its ``apply_transform`` (visibility of keypoints that leave the image), its
    ``HeatmapGaussianGenerator``."""
    import albumentations as A
    from deeplabcut.pose_estimation_pytorch.data.utils import apply_transform
    from deeplabcut.pose_estimation_pytorch.models.target_generators import TARGET_GENERATORS

    transform = A.Compose(
        [A.Affine(scale=(scale, scale), rotate=(rotation_deg, rotation_deg), keep_ratio=True, p=1.0,
                  translate_px={"x": (translation_px[0],) * 2, "y": (translation_px[1],) * 2})],
        keypoint_params=A.KeypointParams("xy", remove_invisible=False, label_fields=["class_labels"]),
        bbox_params=A.BboxParams(format="coco", label_fields=["bbox_labels"]))
    visibility = np.where(np.isnan(keypoints).any(axis=1), 0.0, 2.0)
    with_visibility = np.concatenate([np.nan_to_num(keypoints, nan=-1.0), visibility[:, None]], axis=1)
    out = apply_transform(transform, image, with_visibility, np.zeros((0, 4)),
                          class_labels=[f"kp{i}" for i in range(len(keypoints))])
    moved = np.asarray(out["keypoints"], dtype=np.float32)
    moved[visibility == 0, 2] = 0.0  # a missing label stays missing
    generator = TARGET_GENERATORS.build(dict(generator_cfg))
    k = len(keypoints)
    outputs = {"heatmap": torch.zeros(1, k, H // STRIDE, W // STRIDE),
               "locref": torch.zeros(1, 2 * k, H // STRIDE, W // STRIDE)}
    targets = generator(STRIDE, outputs, {"keypoints": torch.from_numpy(moved[None, None])})
    return out["image"], moved, targets


def test_device_augmentation_and_targets_agree_with_deeplabcuts_loader():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)  # smooth, as camera frames are
    keypoints = np.array([[40.3, 30.7], [100.2, 80.9], [158.0, 117.0], [80.0, 60.0], [np.nan, np.nan]],
                         dtype=np.float32)  # the third leaves the image when scaled up; the last is unlabelled
    generator_cfg = {"type": "HeatmapGaussianGenerator", "num_heatmaps": 5, "pos_dist_thresh": 17,
                     "heatmap_mode": "KEYPOINT", "gradient_masking": False, "generate_locref": True,
                     "locref_std": 7.2801}
    for rotation, scale, translation in ((17.0, 0.8, (5, -3)), (-25.0, 1.2, (0, 0)), (0.0, 1.0, (0, 0))):
        dlc_image, dlc_keypoints, dlc_targets = _dlc_loader_targets(image, keypoints, rotation, scale, translation,
                                                                    generator_cfg)
        params = augment.AugmentationParams(torch.tensor([scale]), torch.tensor([rotation]),
                                            torch.tensor([[float(t) for t in translation]]), torch.zeros(1))
        matrices = augment.affine_matrices(params, H, W)
        moved, visible = augment.transform_keypoints(torch.from_numpy(keypoints)[None], matrices, H, W)
        ours = heatmap_targets(moved, visible, H // STRIDE, W // STRIDE, STRIDE, TargetConfig.from_dlc(generator_cfg))

        assert visible[0].tolist() == (dlc_keypoints[:, 2] > 0).tolist()
        if scale > 1:
            assert visible[0].tolist() == [True, True, False, True, False]
        shown = visible[0].numpy()
        np.testing.assert_allclose(moved[0].numpy()[shown], dlc_keypoints[shown, :2], atol=1e-3)
        for head in ("heatmap", "locref"):
            for part in ("target", "weights"):
                np.testing.assert_allclose(ours[head][part][0].numpy(), dlc_targets[head][part][0].numpy(),
                                           atol=1e-4, err_msg=f"{head} {part} at rotation {rotation}")
        warped = augment.warp_images(torch.from_numpy(image).permute(2, 0, 1)[None], matrices)[0]
        difference = np.abs(warped.permute(1, 2, 0).numpy() - dlc_image.astype(float))
        inside = difference[8:-8, 8:-8]  # black borders may differ by a pixel's interpolation
        assert inside.mean() < 0.75, f"images differ by {inside.mean():.2f} grey levels on average"


def test_noise_and_normalisation_follow_deeplabcuts_settings():
    config = augment.AugmentationConfig.from_dlc({"affine": {"p": 0.5, "rotation": 30, "scaling": [0.5, 1.25],
                                                             "translation": 0}, "gaussian_noise": 12.75})
    assert (config.affine_p, config.rotation_deg, config.scaling, config.gaussian_noise) == (0.5, 30.0, (0.5, 1.25),
                                                                                             12.75)
    params = augment.sample_params(config, 4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert 0.45 < float((params.scale != 1).float().mean()) < 0.55  # affine with p = 0.5
    assert float(params.scale.min()) >= 0.5 and float(params.scale.max()) <= 1.25
    assert float(params.rotation_deg.abs().max()) <= 30 and bool((params.translation_px == 0).all())
    assert 0.45 < float((params.noise_std > 0).float().mean()) < 0.55 and float(params.noise_std.max()) <= 12.75
    grey = torch.full((1, 3, 4, 4), 255 * 0.485)
    assert torch.allclose(augment.normalise(grey)[0, 0], torch.zeros(4, 4), atol=1e-5)


def test_batches_cover_every_frame_once_per_epoch_and_resume_where_they_were():
    sampler = BatchSampler(frames=10, batch_size=4, seed=1)
    epoch = torch.cat([sampler.indices(i) for i in range(3)])  # ceil(10 / 4) = 3 iterations per epoch
    assert set(epoch[:10].tolist()) == set(range(10))
    assert torch.equal(BatchSampler(10, 4, 1).indices(4), sampler.indices(4))  # a resumed run draws the same


def test_learning_rate_milestones_sit_at_the_same_fraction_of_the_iterations():
    scheduler = {"type": "LRListScheduler", "params": {"lr_list": [[1e-4], [1e-5]], "milestones": [90, 120]}}
    rates = [learning_rate_at(it, 5e-4, scheduler, 200, 1000) for it in (0, 449, 450, 599, 600, 999)]
    assert rates == [5e-4, 5e-4, 1e-4, 1e-4, 1e-5, 1e-5]


PYTORCH_CONF = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
                "max_iterations": 40, "snapshot_interval": 20, "allow_random_init": True, "engine": "pytorch"}


@pytest.mark.slow
def test_posesweep_scoring_equals_deeplabcuts_own_pytorch_evaluation(tiny_cohort, tmp_path, caplog):
    """A snapshot posesweep trained: DeepLabCut's ``evaluate_network`` (engine pytorch) predicts every frame, and
    its per-landmark errors equal the ones posesweep's scoring wrote, within 0.01 px. (Its training log shows
    progress: iteration, loss, speed, ETA.)"""
    import deeplabcut
    from deeplabcut.core.engine import Engine

    from conftest import training_ready_run
    from posesweep import stages
    from posesweep.runner import run_posesweep

    run = training_ready_run(tiny_cohort, tmp_path / "data", PYTORCH_CONF, "manual__dlc_eval")
    with caplog.at_level(logging.INFO, logger="posesweep.runner"):
        run_posesweep(run.command("train", 12))
    progress = [r.getMessage() for r in caplog.records if re.search(r"\] iteration \d+/40 ", r.getMessage())]
    assert progress and all(re.search(r"iteration \d+/40 loss [0-9.]+ lr \S+ \d\S* images/s [0-9.]+(e[+-]\d+)? "
                                      r"s/iteration ETA [0-9.]+ min$", line) for line in progress), progress
    speeds = [float(re.search(r"([0-9.e+-]+) images/s", line).group(1)) for line in progress]
    assert all(speed > 0 for speed in speeds), progress  # a rate of 3 significant digits, never "0.0 images/s"
    stages.evaluate(run, 12)
    ours = pd.read_csv(run.layout.snapshot_errors_file(12, 40))

    project_config = run.layout.project_dir / "config.yaml"
    frame_set = stages.frame_set_of(run.layout, 12)
    deeplabcut.evaluate_network(str(project_config), Shuffles=[frame_set.shuffle], trainingsetindex=0,
                                snapshotindex=-1, engine=Engine.PYTORCH)
    [predictions_file] = glob.glob(str(run.layout.project_dir / "evaluation-results-pytorch" / "**" /
                                       "*snapshot_40.h5"), recursive=True)
    theirs = pd.read_hdf(predictions_file)
    checked = 0
    for row in ours.itertuples(index=False):
        predicted = theirs.loc[("labeled-data", row.video, row.image)]
        x = predicted.xs((row.landmark, "x"), level=("bodyparts", "coords")).item()
        y = predicted.xs((row.landmark, "y"), level=("bodyparts", "coords")).item()
        their_error = math.hypot(x - row.x_label_px, y - row.y_label_px)
        assert abs(their_error - row.error_px) < 0.01, (row.video, row.image, row.landmark)
        checked += 1
    assert checked == 12 * 10 and set(ours["split"]) == {"train", "test"}


@pytest.mark.slow
def test_study_runs_end_to_end_on_the_pytorch_engine(airflow_db, tiny_cohort, tmp_path, monkeypatch):
    from test_end_to_end import _load_dag

    from posesweep.layout import RunLayout

    data_root = tmp_path / "data"
    shutil.copytree(tiny_cohort, data_root)
    module = _load_dag(monkeypatch, data_root)
    conf = {**PYTORCH_CONF, "frame_set_sizes": [8, 12], "max_iterations": 60}
    dag_run = module.study_dag.test(run_conf=conf)
    assert str(dag_run.state) == "success"
    layout = RunLayout.create(data_root, "tiny", dag_run.run_id)
    summary = json.loads(layout.summary_file.read_text())
    assert summary["engine"].startswith("DeepLabCut 3's PyTorch engine, backbone resnet50_gn")
    page = (layout.report_dir / "index.html").read_text()
    assert "PyTorch engine, backbone resnet50_gn (timm)" in page
    for size in (8, 12):
        record = json.loads((layout.training_dir(size) / "training.json").read_text())
        assert record["engine"] == "pytorch" and record["snapshot_iterations"] == [20, 40, 60]
    # the software a methods section names: what the training processes ran, once for both networks
    from importlib.metadata import version
    [trained_with] = summary["software"]["training"]
    assert trained_with["frame_set_sizes"] == [8, 12] and "software_before_resume" not in record
    assert {name: trained_with["software"][name] for name in ("deeplabcut", "torch", "timm")} == \
        {name: version(name) for name in ("deeplabcut", "torch", "timm")}
    assert f"Networks trained with deeplabcut {version('deeplabcut')}, torch {version('torch')}" in page
    assert f"statsmodels {version('statsmodels')}" in page and "Mixed software" not in page
    assert len(list((layout.project_dir / "dlc-models-pytorch").glob("**/snapshot-*.pt"))) == 6
    rows = summary["errors"]
    assert sorted((r["frame_set_size"], r["snapshot_iteration"]) for r in rows) == \
        [(size, it) for size in (8, 12) for it in (20, 40, 60)]
    # real training: the error changes from snapshot to snapshot, and every error is a finite distance
    errors = pd.read_csv(layout.errors_file)
    assert errors["error_px"].notna().all() and (errors["error_px"] >= 0).all()
    by_snapshot = errors.groupby(["frame_set_size", "snapshot_iteration"])["error_px"].mean()
    assert by_snapshot.nunique() == len(by_snapshot)
    # DeepLabCut's own analyze_videos, following the report's lines, uses the snapshot the report names
    written, network = analysed_as_the_report_says(layout, "pytorch", 12, 40, data_root / "cohorts" / "tiny" /
                                                   "videos" / "P002.mp4", tmp_path / "new_video")
    assert network["snapshotindex"] == 1 and [n["frame_set_size"] for n in summary["networks"]] == [8, 12]
    assert re.search(rf"shuffle{network['shuffle']}_snapshot_40\.h5$", written.name), written.name
    assert len(pd.read_hdf(written)) == 60  # every frame of the 2 s clip at 30 fps


@pytest.mark.slow
def test_a_killed_pytorch_training_resumes_from_its_newest_snapshot_with_its_optimizer_state(tiny_cohort, tmp_path):
    """SIGKILL once the first snapshot exists; the retry starts at the newest snapshot with the optimizer state
    saved beside it, leaves the earlier snapshots as they were, and writes the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import training_ready_run

    conf = {**PYTORCH_CONF, "max_iterations": 100}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__torch_resume")
    command = [sys.executable, "-m", "posesweep.cli", *run.command("train", 12)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list((run.layout.project_dir / "dlc-models-pytorch").glob("**/snapshot-20.pt")):
        assert child.poll() is None and time.monotonic() < deadline, "training ended before its first snapshot"
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    [first] = (run.layout.project_dir / "dlc-models-pytorch").glob("**/snapshot-20.pt")
    train_dir = first.parent
    kept = {p.name: p.read_bytes() for p in train_dir.glob("snapshot-*.pt")}
    newest = max(int(name[len("snapshot-"):-len(".pt")]) for name in kept)
    assert newest < 100 and not (run.layout.training_dir(12) / "training.json").exists()

    # the retry is given a GPU, as the local backend or a GPU pod gives one, on this machine without any
    retry = subprocess.run(command, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert f"resuming from snapshot {newest} ({newest // 20} of 5 snapshots complete, optimizer state restored)" \
        in retry.stdout
    assert ("[frame set 12] this training was given GPU 0 (CUDA_VISIBLE_DEVICES) but pytorch sees no GPU: it trains "
            "on the CPU") in retry.stdout + retry.stderr  # not silently a hundred times slower
    assert f"iteration {newest + 4}/100" in retry.stdout and "iteration 4/100" not in retry.stdout
    assert [p.name for p in train_dir.glob("train_state-*.pt")] == ["train_state-100.pt"]
    assert {p.name: p.read_bytes() for p in train_dir.glob("snapshot-*.pt") if p.name in kept} == kept
    record = json.loads((run.layout.training_dir(12) / "training.json").read_text())
    assert record["resumed_from_iteration"] == newest and record["snapshot_iterations"] == [20, 40, 60, 80, 100]


@pytest.mark.slow
def test_a_pytorch_training_killed_between_snapshots_goes_on_from_its_resume_point(tiny_cohort, tmp_path):
    """Snapshots are 25k iterations apart in the paper (hours on a lab's GPU): a training killed between two goes on
    from its newest resume point (weights and optimizer state, saved every POSESWEEP_RESUME_POINT_SECONDS; 0 here:
    at every progress line), which nothing scores and which is gone once the training is done."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import training_ready_run
    from posesweep.torch_engine.trainer import RESUME_POINT_FILE

    conf = {**PYTORCH_CONF, "max_iterations": 100}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__torch_resume_point")
    command = [sys.executable, "-m", "posesweep.cli", *run.command("train", 12)]
    env = {**os.environ, "POSESWEEP_RESUME_POINT_SECONDS": "0"}
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             env=env)
    models = run.layout.project_dir / "dlc-models-pytorch"

    def resume_point_past_a_snapshot() -> int:
        points = list(models.glob(f"**/{RESUME_POINT_FILE}"))
        if not points or not list(models.glob("**/snapshot-20.pt")):
            return 0
        try:
            iteration = torch.load(points[0], map_location="cpu", weights_only=True)["iteration"]
        except (OSError, RuntimeError):  # replaced (atomically) while being read: look again
            return 0
        return iteration if iteration % 20 else 0

    deadline = time.monotonic() + 600
    while not resume_point_past_a_snapshot():
        assert child.poll() is None and time.monotonic() < deadline, "training ended before a resume point"
        time.sleep(0.3)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    [point] = models.glob(f"**/{RESUME_POINT_FILE}")
    train_dir = point.parent
    resumed_at = torch.load(point, map_location="cpu", weights_only=True)["iteration"]
    kept = {p.name: p.read_bytes() for p in train_dir.glob("snapshot-*.pt")}
    newest = max(int(name[len("snapshot-"):-len(".pt")]) for name in kept)
    assert newest < resumed_at < 100 and resumed_at % 4 == 0  # a progress line's iteration, past the snapshot

    retry = subprocess.run(command, capture_output=True, text=True, timeout=600)  # the default interval: 10 min
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert (f"resuming from the resume point at iteration {resumed_at} ({newest // 20} of 5 snapshots complete, "
            f"optimizer state restored)") in retry.stdout
    assert f"iteration {resumed_at + 4}/100" in retry.stdout and f"iteration {newest + 4}/100" not in retry.stdout
    assert not (train_dir / RESUME_POINT_FILE).exists()  # gone with the snapshot after it
    assert {p.name: p.read_bytes() for p in train_dir.glob("snapshot-*.pt") if p.name in kept} == kept
    record = json.loads((run.layout.training_dir(12) / "training.json").read_text())
    assert record["resumed_from_iteration"] == resumed_at and record["snapshot_iterations"] == [20, 40, 60, 80, 100]


@pytest.mark.slow
def test_a_pytorch_training_told_to_stop_saves_a_resume_point_first_and_its_retry_goes_on_from_there(tiny_cohort,
                                                                                                     tmp_path):
    """A pod preempted or a task cleared: SIGTERM to ``posesweep watch`` (what a pod runs) is passed on to the
    training, which saves a resume point at its next iteration whatever the interval (the default 10 minutes here)
    and ends with a retryable error; the retry goes on from that iteration."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from conftest import training_ready_run
    from posesweep.errors import error_from_line

    conf = {**PYTORCH_CONF, "max_iterations": 100}
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__torch_stopped")
    train = [sys.executable, "-m", "posesweep.cli", *run.command("train", 12)]
    watch = subprocess.Popen([sys.executable, "-m", "posesweep.cli", "watch", *run.command("train", 12)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    models = run.layout.project_dir / "dlc-models-pytorch"
    deadline = time.monotonic() + 600
    while not list(models.glob("**/snapshot-20.pt")):
        assert watch.poll() is None and time.monotonic() < deadline, "training ended before its first snapshot"
        time.sleep(0.2)
    os.kill(watch.pid, signal.SIGTERM)
    out, _ = watch.communicate(timeout=120)
    assert watch.returncode == 75, out[-3000:]  # retryable
    [error] = [e for e in map(error_from_line, out.splitlines()) if e is not None]
    assert error.kind == "TrainingStoppedError" and error.retryable, error.explain()
    stopped_at = int(re.search(r"stopped on request \(SIGTERM\) at iteration (\d+)", error.what).group(1))
    assert 20 <= stopped_at < 100 and "asked to stop (SIGTERM): passing it on to the child" in out
    assert f"resume point saved at iteration {stopped_at}" in out or stopped_at % 20 == 0  # else its snapshot

    retry = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    trained = [int(m.group(1)) for m in re.finditer(r"iteration (\d+)/100 loss", retry.stdout)]
    assert trained and stopped_at < min(trained) <= stopped_at + 4  # not one iteration lost, none trained twice
    record = json.loads((run.layout.training_dir(12) / "training.json").read_text())
    assert record["resumed_from_iteration"] == stopped_at and record["snapshot_iterations"] == [20, 40, 60, 80, 100]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_pytorch_training_stopped_and_resumed_trains_the_network_it_would_have_trained_straight_through(
        tiny_cohort, tmp_path, monkeypatch, precision):
    """A training stopped (a pod preempted, a task cleared, SIGTERM) and resumed, once from its resume point and
    once from its newest snapshot, gives the same snapshots, weight for weight on the CPU, as the same training run
    straight through: the batches, their augmentation draws, the weights and the optimizer state all go on from the
    iteration where they stopped, so a lab's numbers do not depend on whether its cluster preempted a pod. In fp16
    (what a V100 or T4 trains in; here on the CPU, where it is slow: half the iterations, the loss scale started
    near overflow and made to grow every 2 steps, so that steps overflow and are skipped) the loss scale goes on
    from where it stopped too."""
    from conftest import training_ready_run
    from posesweep import stages
    from posesweep.errors import TrainingStoppedError
    from posesweep.resume_points import STOP_REQUESTED
    from posesweep.torch_engine import loss_scale, trainer
    from posesweep.torch_engine.trainer import RESUME_POINT_FILE

    interval = 20 if precision == "fp32" else 10
    if precision == "fp16":
        monkeypatch.setattr(trainer, "device_precision", lambda device: "fp16")  # as on a GPU of compute capability 7
        monkeypatch.setattr(loss_scale, "GROWTH_INTERVAL", 2)
        monkeypatch.setattr(loss_scale, "INITIAL_SCALE", 2.0 ** 24)
    conf = {**PYTORCH_CONF, "max_iterations": 3 * interval, "snapshot_interval": interval}
    straight = training_ready_run(tiny_cohort, tmp_path / "straight", conf, "manual__straight")
    stages.train(straight, 12)
    run = training_ready_run(tiny_cohort, tmp_path / "stopped", conf, "manual__stopped")
    save_snapshot = trainer._save_snapshot

    def stop_after(snapshot: int):
        def save_then_ask_to_stop(model, optimizer, train_dir, iteration, *state):
            save_snapshot(model, optimizer, train_dir, iteration, *state)
            if iteration == snapshot:
                STOP_REQUESTED.set()  # as SIGTERM sets it: the training stops at its next iteration
        monkeypatch.setattr(trainer, "_save_snapshot", save_then_ask_to_stop)

    try:
        stop_after(interval)
        with pytest.raises(TrainingStoppedError, match=f"at iteration {interval + 1}"):
            stages.train(run, 12)
        STOP_REQUESTED.clear()
        stop_after(2 * interval)  # goes on from the resume point after the first snapshot, stops after the second
        with pytest.raises(TrainingStoppedError, match=f"at iteration {2 * interval + 1}"):
            stages.train(run, 12)
    finally:
        STOP_REQUESTED.clear()
    monkeypatch.setattr(trainer, "_save_snapshot", save_snapshot)
    [point] = run.layout.project_dir.glob(f"dlc-models-pytorch/**/{RESUME_POINT_FILE}")
    point.unlink()  # this time from snapshot 40 and its optimizer state
    assert stages.train(run, 12)["resumed_from_iteration"] == 2 * interval

    def snapshots(of) -> dict[int, dict]:
        return {int(p.stem.split("-")[1]): torch.load(p, weights_only=True)["model"]
                for p in of.layout.project_dir.glob("dlc-models-pytorch/**/snapshot-*.pt")}
    expected, resumed = snapshots(straight), snapshots(run)
    assert sorted(expected) == sorted(resumed) == [interval, 2 * interval, 3 * interval]
    record = json.loads((straight.layout.training_dir(12) / "training.json").read_text())
    assert ("fp16 autocast, dynamic loss scaling" in record["device"]) == (precision == "fp16")
    [state] = straight.layout.project_dir.glob(f"dlc-models-pytorch/**/train_state-{3 * interval}.pt")
    if precision == "fp16":  # it overflowed and backed off at least once: without the skips the scale would be 2**39
        assert 1 < torch.load(state, weights_only=True)["loss_scale"]["scale"] < 2.0 ** 39
    initial = torch.load(json.loads((run.layout.run_dir / "weights" / "initial_weights.json").read_text())["path"],
                         weights_only=True)["model"]
    for iteration in (interval, 2 * interval, 3 * interval):
        moved = [name for name, value in expected[iteration].items() if not torch.equal(value, initial[name])]
        assert moved, "training left the weights as they were"
        different = [name for name, value in expected[iteration].items()
                     if not torch.equal(value, resumed[iteration][name])]
        assert not different, f"snapshot {iteration}: {len(different)} tensors differ, first {different[0]}"


def test_a_resume_point_counts_only_past_the_newest_snapshot_and_before_the_end(tmp_path, caplog, monkeypatch):
    """A resume point left from before a snapshot (killed between the snapshot's write and the point's removal), one
    at or past the end, and one that cannot be read are passed over: training goes on from the newest snapshot."""
    from posesweep.resume_points import resume_point_seconds
    from posesweep.torch_engine.trainer import RESUME_POINT_FILE, read_resume_point

    path = tmp_path / RESUME_POINT_FILE
    assert read_resume_point(tmp_path, 20, 100) is None  # none saved
    torch.save({"iteration": 36, "model": {"w": torch.ones(2)}, "optimizer": {"state": {}}}, path)
    assert read_resume_point(tmp_path, 20, 100)["iteration"] == 36
    assert torch.equal(read_resume_point(tmp_path, 20, 100)["model"]["w"], torch.ones(2))
    assert read_resume_point(tmp_path, 40, 100) is None  # the snapshot is newer
    assert read_resume_point(tmp_path, 20, 36) is None  # the end: nothing left to train from it
    torch.save({"iteration": 36, "model": {}}, path)
    assert read_resume_point(tmp_path, 20, 100) is None and "no optimizer" in caplog.text
    path.write_bytes(b"not a torch file")
    assert read_resume_point(tmp_path, 20, 100) is None and "training goes on from snapshot 20" in caplog.text
    monkeypatch.delenv("POSESWEEP_RESUME_POINT_SECONDS", raising=False)
    assert resume_point_seconds() == 600.0
    monkeypatch.setenv("POSESWEEP_RESUME_POINT_SECONDS", "0")
    assert resume_point_seconds() == 0.0
    monkeypatch.setenv("POSESWEEP_RESUME_POINT_SECONDS", "10 min")
    assert resume_point_seconds() == 600.0 and "'10 min' is not a number of seconds" in caplog.text


@pytest.mark.slow
def test_the_compiled_step_trains_like_the_eager_one_and_its_snapshots_keep_deeplabcuts_names(tiny_cohort, tmp_path):
    """torch.compile (used on a GPU for long runs: at batch >= 2, and at batch 1 inside the CUDA graph for the
    BatchNorm backbone) checked on the CPU: the same losses step by step as the eager step from the same weights
    and batches, also as the graph's body, and snapshots without the compiler's name prefix."""
    from posesweep.torch_engine.trainer import StepSettings, TrainingLoop, _save_snapshot

    build, cpu = cpu_loops(tiny_cohort, tmp_path, "manual__compiled"), torch.device("cpu")

    def loop(compiled: bool, graph: bool = False) -> TrainingLoop:
        return build(2, StepSettings(cpu, bf16=False, channels_last=False, compiled=compiled, cuda_graph=graph))

    eager, compiled, compiled_graph = loop(False), loop(True), loop(True, graph=True)
    assert StepSettings.for_device(cpu, "resnet50_gn", 8, 10**6).compiled is False  # never on a CPU by default
    for iteration in range(3):
        expected = eager.step(iteration).item()
        assert compiled.step(iteration).item() == pytest.approx(expected, rel=1e-3, abs=1e-5)
        assert compiled_graph.step(iteration).item() == pytest.approx(expected, rel=1e-3, abs=1e-5)
    for trained in (compiled, compiled_graph):
        assert trained.forward is not trained.model and trained.settings.compiled  # it did not fall back
    assert compiled_graph.graphed is not None and compiled_graph.settings.cuda_graph
    assert "torch.compile" in compiled.settings.describe()
    _save_snapshot(compiled.model, compiled.optimizer, tmp_path, 3)
    saved = torch.load(tmp_path / "snapshot-3.pt", weights_only=True)["model"]
    assert list(saved) == list(eager.model.state_dict())  # DeepLabCut's names: what its loader expects
    assert all(torch.equal(saved[name], value) for name, value in compiled.model.state_dict().items())


def test_the_cuda_graph_body_trains_like_the_eager_step_and_a_failed_capture_falls_back(tiny_cohort, tmp_path,
                                                                                          caplog):
    """What a CUDA graph of the step (batch 1 on a GPU) replays, checked on the CPU: the graph's body (frame indices
    from a persistent tensor, the learning rate a tensor filled in place, DeepLabCut's loss without its host-side
    branch) gives the eager step's losses and weights; its optimizer state resumes an eager trainer; and a capture
    that fails (here for real: no CUDA device) leaves the model as it was and training goes on eagerly."""
    from posesweep.torch_engine.graphed_step import graph_safe_loss
    from posesweep.torch_engine.trainer import StepSettings, TrainingLoop, _save_snapshot, train_state_file

    build, cpu = cpu_loops(tiny_cohort, tmp_path, "manual__graph"), torch.device("cpu")

    def loop(graph: bool, optimizer_state: dict | None = None) -> TrainingLoop:
        return build(1, StepSettings(cpu, bf16=False, channels_last=False, cuda_graph=graph), optimizer_state)

    assert StepSettings.for_device(cpu, "resnet50_gn", 1).cuda_graph is False  # never on a CPU by default
    eager, graphed = loop(False), loop(True)
    assert graphed.graphed is not None and "CUDA graph" in graphed.settings.describe()
    initial = [parameter.detach().clone() for parameter in eager.model.parameters()]
    for iteration, lr in enumerate([5e-4, 5e-4, 1e-4]):  # the schedule changes the rate between steps
        eager.set_learning_rate(lr)
        graphed.set_learning_rate(lr)
        assert graphed.step(iteration).item() == pytest.approx(eager.step(iteration).item(), rel=1e-5, abs=1e-7)
    assert moved_apart(initial, eager.model, graphed.model) < 1e-3  # the same training

    # DeepLabCut's own loss and the graph-safe one, with keypoints outside the image and none visible at all
    images, keypoints, _ = augment_batch_of(graphed)
    outputs = {head: {k: v.detach() for k, v in out.items()} for head, out in graphed.model(images).items()}
    heatmap = outputs["bodypart"]["heatmap"]
    for visible in (torch.rand(keypoints.shape[:2]) < 0.5, torch.zeros(keypoints.shape[:2], dtype=torch.bool)):
        targets = {"bodypart": heatmap_targets(keypoints, visible, heatmap.shape[2], heatmap.shape[3],
                                               graphed.stride, graphed.targets)}
        assert graph_safe_loss(graphed.model, outputs, targets)["total_loss"].item() == pytest.approx(
            graphed.model.get_loss(outputs, targets)["total_loss"].item(), rel=1e-6)

    _save_snapshot(graphed.model, graphed.optimizer, tmp_path, 3)  # a graph's optimizer state, read by any trainer
    state = torch.load(train_state_file(tmp_path, 3), weights_only=True)["optimizer"]
    assert all(type(group["lr"]) is float and group["capturable"] is False for group in state["param_groups"])
    resumed = loop(False, state)
    resumed.model.load_state_dict(graphed.model.state_dict())
    before = [parameter.detach().clone() for parameter in resumed.model.parameters()]
    for trainer in (resumed, graphed):  # the same augmentation draws for the next step of both
        trainer.generator.manual_seed(7)
        trainer.set_learning_rate(1e-4)
    assert resumed.step(3).item() == pytest.approx(graphed.step(3).item(), rel=1e-5, abs=1e-7)
    assert moved_apart(before, resumed.model, graphed.model) < 1e-3  # the same update: Adam's moments carried over

    reference, failing = loop(False), loop(True)
    failing.graphed.warmup_steps = 1  # capture at the second step: on this machine there is no CUDA device
    for iteration in range(3):
        assert failing.step(iteration).item() == pytest.approx(reference.step(iteration).item(), rel=1e-5, abs=1e-7)
    assert failing.graphed is None and not failing.settings.cuda_graph
    assert "the CUDA graph of the step failed" in caplog.text and "training continues without it" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_gpu_precision_settings_train_on_the_cpu_too(tiny_cohort, tmp_path, precision):
    """bf16 or fp16 autocast and channels_last (what a GPU step uses) run on the CPU, so a dtype or layout mistake
    between the half-precision outputs, DeepLabCut's float32 targets and loss, and the float32 weights shows here,
    not first on a lab's GPU: the first loss matches fp32 to the half precision's, the graph body (its graph-safe
    loss, the learning rate a tensor; in fp16 the loss scaling too) gives the eager step's losses, weights and
    optimizer state stay float32, and the snapshot is DeepLabCut's."""
    from posesweep.torch_engine.trainer import StepSettings, TrainingLoop, _save_snapshot

    build, cpu = cpu_loops(tiny_cohort, tmp_path, f"manual__{precision}"), torch.device("cpu")

    def loop(half: bool, graph: bool = False) -> TrainingLoop:
        return build(2, StepSettings(cpu, bf16=half and precision == "bf16", fp16=half and precision == "fp16",
                                     channels_last=half, cuda_graph=graph))

    fp32, half, half_graph_body = loop(False), loop(True), loop(True, graph=True)
    assert f"{precision} autocast" in half.settings.describe() and "channels_last" in half.settings.describe()
    assert (half.scaler is not None) == (precision == "fp16")
    convolution_weights = [p for p in half.model.parameters() if p.dim() == 4 and p.shape[2] > 1]
    assert convolution_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in convolution_weights)
    first_fp32, first_half = fp32.step(0).item(), half.step(0).item()
    assert math.isfinite(first_half) and first_half == pytest.approx(first_fp32, rel=0.03)
    assert first_half != first_fp32  # autocast took effect: the half precision's rounding shows
    assert half_graph_body.graph_body(half.sampler.indices(0)).item() == pytest.approx(first_half, rel=1e-4)
    for iteration in range(1, 3):
        loss = half.step(iteration).item()
        assert math.isfinite(loss)
        assert half_graph_body.graph_body(half.sampler.indices(iteration)).item() == pytest.approx(loss, rel=1e-4)
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert all(v.dtype == torch.float32 for state in half.optimizer.state.values() for k, v in state.items()
               if k != "step")
    if precision == "fp16":  # no step overflowed at 2**16: each updated the weights
        assert half.scaler.state()["growth_tracker"] == 3
        assert all(state["step"].item() == 3 for state in half.optimizer.state.values())
    _save_snapshot(half.model, half.optimizer, tmp_path, 3)
    saved = torch.load(tmp_path / "snapshot-3.pt", weights_only=True)["model"]
    assert list(saved) == list(fp32.model.state_dict())
    assert all(value.dtype == fp32.model.state_dict()[name].dtype for name, value in saved.items())


def cpu_loops(tiny_cohort, tmp_path, run_name: str):
    """A prepared PyTorch run's 12-frame network, and a builder of CPU training loops for it from the same initial
    weights: ``loop(batch_size, settings, optimizer_state=None)``."""
    from conftest import training_ready_run
    from posesweep import stages
    from posesweep.labels import read_label_table
    from posesweep.layout import read_json
    from posesweep.torch_engine.project import model_config_path, read_model_config
    from posesweep.torch_engine.trainer import TrainingLoop

    run = training_ready_run(tiny_cohort, tmp_path / "data", PYTORCH_CONF, run_name)
    frame_set = stages.frame_set_of(run.layout, 12)
    model_cfg = read_model_config(model_config_path(run.layout.project_dir / "config.yaml", frame_set))
    weights = read_json(run.layout.run_dir / "weights" / "initial_weights.json")["path"]
    labels = read_label_table(run.layout.validated_labels_file)

    def loop(batch_size: int, settings, optimizer_state: dict | None = None) -> TrainingLoop:
        return TrainingLoop.build(model_cfg, weights, run.layout.project_dir / "labeled-data", list(frame_set.train),
                                  labels, list(run.cohort.bodyparts), batch_size, 0, settings.device,
                                  optimizer_state, settings=settings)
    return loop


def moved_apart(initial: list, model_a, model_b) -> float:
    """How far apart two trainings moved the same initial weights, relative to how far the first moved them (L2 over
    all weights). Not elementwise: AdamW moves a weight by about the learning rate whatever its gradient's size, so
    a weight whose gradient is at rounding level moves by the sign of that rounding, which differs between CPUs and
    summation orders (on an AMD EPYC, 16 of 25M weights differed by up to 6.5e-6 at a rate of 5e-4 after three
    steps, the whole move by 3e-5 of its size; one step at a wrong rate puts it at 0.5)."""
    moved_a = torch.cat([(a.detach() - a0).flatten() for a, a0 in zip(model_a.parameters(), initial)])
    moved_b = torch.cat([(b.detach() - a0).flatten() for b, a0 in zip(model_b.parameters(), initial)])
    return float((moved_b - moved_a).norm() / moved_a.norm())


def augment_batch_of(loop):
    from posesweep.torch_engine.trainer import augmented_batch
    return augmented_batch(loop.cache, loop.sampler.indices(0), loop.augmentation, loop.generator,
                           loop.settings.device)


def _two_camera_cache(tmp_path):
    """Frames of two cameras, (height, width) 30x40 and 20x50: knee at the centre, hip near the right edge
    (it leaves its own frame, not the padded one, when scaled up), ankle unlabelled."""
    from posesweep.labels import tidy_from_collected
    from posesweep.torch_engine.frame_cache import load_frame_cache

    rng = np.random.default_rng(3)
    shapes = {("camA", "img01.png"): (30, 40), ("camB", "img07.png"): (20, 50)}
    index, rows = [], []
    for (video, image), (height, width) in shapes.items():
        (tmp_path / video).mkdir()
        image_rgb = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(tmp_path / video / image), image_rgb)
        index.append(("labeled-data", video, image))
        rows.append([width / 2, height / 2, 0.95 * width, height / 2, np.nan, np.nan])
    columns = pd.MultiIndex.from_product([["lab"], ["knee", "hip", "ankle"], ["x", "y"]],
                                         names=["scorer", "bodyparts", "coords"])
    labels = tidy_from_collected(pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index), columns=columns),
                                 tmp_path)
    frames = list(shapes)
    cache = load_frame_cache(tmp_path, frames, labels, ["knee", "hip", "ankle"], torch.device("cpu"))
    return cache, shapes, labels


def test_the_frame_cache_holds_frames_of_different_sizes_padded_and_refuses_an_image_changed_since_validation(
        tmp_path):
    from posesweep.errors import LabelFileError
    from posesweep.torch_engine.frame_cache import load_frame_cache

    cache, shapes, labels = _two_camera_cache(tmp_path)
    frames = list(shapes)
    assert tuple(cache.frames.shape) == (2, 3, 30, 50) and (cache.height, cache.width) == (30, 50)
    assert cache.sizes.tolist() == [[30, 40], [20, 50]]  # each frame's own size is kept
    for i, ((video, image), (height, width)) in enumerate(shapes.items()):
        rgb = cv2.cvtColor(cv2.imread(str(tmp_path / video / image)), cv2.COLOR_BGR2RGB)
        assert torch.equal(cache.frames[i, :, :height, :width], torch.from_numpy(rgb).permute(2, 0, 1))
        assert int(cache.frames[i, :, height:, :].sum()) == 0 and int(cache.frames[i, :, :, width:].sum()) == 0
        assert cache.keypoints[i, 0].tolist() == [width / 2, height / 2]
        assert torch.isnan(cache.keypoints[i, 2]).all()  # an unlabelled landmark stays NaN

    cv2.imwrite(str(tmp_path / "camB" / "img07.png"), np.zeros((24, 50, 3), np.uint8))  # re-exported since
    with pytest.raises(LabelFileError) as failure:
        load_frame_cache(tmp_path, frames, labels, ["knee", "hip", "ankle"], torch.device("cpu"))
    assert f"File: {tmp_path / 'camB' / 'img07.png'}" in str(failure.value)
    assert "Found: 50x24 px" in str(failure.value) and "Allowed: 50x20 px" in str(failure.value)


def test_a_monochrome_cameras_one_channel_frames_are_read_as_both_deeplabcut_engines_read_them(tmp_path):
    """Machine-vision cameras (high-speed, for 240 fps landings) are often monochrome: an imported project's
    labeled frames are then one-channel PNGs. The frame cache (and scoring) read each as DeepLabCut's PyTorch
    loader and its TensorFlow one do: three equal channels of the same grey levels."""
    from deeplabcut.pose_estimation_pytorch.data.image import load_image
    from deeplabcut.utils.auxfun_videos import imread

    from posesweep.images import read_rgb
    from posesweep.labels import tidy_from_collected
    from posesweep.torch_engine.frame_cache import load_frame_cache

    grey = cv2.GaussianBlur(np.random.default_rng(5).integers(0, 256, (24, 32), dtype=np.uint8), (0, 0), 1.5)
    (tmp_path / "mono").mkdir()
    cv2.imwrite(str(tmp_path / "mono" / "img03.png"), grey)
    assert cv2.imread(str(tmp_path / "mono" / "img03.png"), cv2.IMREAD_UNCHANGED).ndim == 2  # one channel stored
    columns = pd.MultiIndex.from_product([["lab"], ["knee"], ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    labels = tidy_from_collected(pd.DataFrame([[16.0, 12.0]], index=pd.MultiIndex.from_tuples(
        [("labeled-data", "mono", "img03.png")]), columns=columns), tmp_path)
    cache = load_frame_cache(tmp_path, [("mono", "img03.png")], labels, ["knee"], torch.device("cpu"))
    as_read = cache.frames[0].permute(1, 2, 0).numpy()
    assert as_read.shape == (24, 32, 3) and all(np.array_equal(as_read[..., c], grey) for c in range(3))
    for deeplabcuts in (load_image(tmp_path / "mono" / "img03.png"), imread(tmp_path / "mono" / "img03.png")):
        assert np.array_equal(deeplabcuts, as_read)
    assert np.array_equal(read_rgb(tmp_path / "mono" / "img03.png"), as_read)


def test_frames_of_different_sizes_are_each_augmented_as_deeplabcut_augments_the_frame_alone(tmp_path):
    """In a padded batch, each frame turns and scales about its own centre, its keypoints are visible only inside
    its own extent, and the padding stays black: the same image and keypoints as the frame augmented alone."""
    from posesweep.torch_engine.trainer import augmented_batch

    cache, shapes, _ = _two_camera_cache(tmp_path)
    config = augment.AugmentationConfig(affine_p=1.0, rotation_deg=20.0, scaling=(1.25, 1.25), gaussian_noise=0.0)
    images, moved, visible = augmented_batch(cache, torch.tensor([0, 1]), config, torch.Generator().manual_seed(5),
                                             torch.device("cpu"))
    draws = augment.sample_params(config, 2, torch.Generator().manual_seed(5), torch.device("cpu"))
    black = augment.normalise(torch.zeros(1, 3, 1, 1))[0]
    for i, (height, width) in enumerate(shapes.values()):
        alone = augment.AugmentationParams(draws.scale[i:i + 1], draws.rotation_deg[i:i + 1],
                                           draws.translation_px[i:i + 1], draws.noise_std[i:i + 1])
        matrices = augment.affine_matrices(alone, height, width)
        frame = cache.frames[i:i + 1, :, :height, :width]
        expected = augment.normalise(augment.warp_images(frame, matrices))[0]
        torch.testing.assert_close(images[i, :, :height, :width], expected, atol=1e-4, rtol=0)
        assert torch.equal(images[i, :, height:, :], black.expand(3, 30 - height, 50))
        assert torch.equal(images[i, :, :, width:], black.expand(3, 30, 50 - width))
        expected_moved, expected_visible = augment.transform_keypoints(cache.keypoints[i:i + 1], matrices, height,
                                                                       width)
        torch.testing.assert_close(moved[i], expected_moved[0], equal_nan=True)
        assert visible[i].tolist() == expected_visible[0].tolist()
    assert visible[0].tolist() == [True, False, False]  # the hip left camA's 40 px, not the padded 50 px


def test_a_frame_cache_larger_than_the_machine_fails_before_it_is_built_saying_how_much_memory_to_give():
    from posesweep.errors import MemoryTooSmallError
    from posesweep.torch_engine.frame_cache import available_host_bytes, check_fits_in_host_memory

    total = int(open("/proc/meminfo").readline().split()[1]) * 1024
    assert 0 < available_host_bytes() <= total
    paper = 720 * 3 * 1080 * 1920  # the paper's largest frame set, 1080p: 4.5 GB
    check_fits_in_host_memory(paper, 16 * 2**30, 720, 1080, 1920)  # a 16 GiB pod holds it
    with pytest.raises(MemoryTooSmallError) as failure:
        check_fits_in_host_memory(paper, 4 * 2**30, 720, 1080, 1920)
    paragraph = str(failure.value)
    assert "720 frames of 1920x1080 px needs 4.2 GiB of host memory" in paragraph and "Found: 4.0 GiB" in paragraph
    assert "at least 6 GiB (POSESWEEP_K8S_MEMORY" in paragraph and not failure.value.retryable
    assert failure.value.exit_code == 3  # a pod reporting it fails its task without a retry


def test_autocast_precision_follows_the_gpus_tensor_cores(monkeypatch):
    """torch.cuda.is_bf16_supported() says yes for a T4 or V100 (it only emulates bf16: no bf16 tensor cores); the
    trainer uses bf16 from compute capability 8, fp16 with loss scaling at 7 (fp16 tensor cores), fp32 below (a GTX
    1080's fp16 is a fraction of its fp32 rate), on a CPU, and wherever the study asks for precision=fp32."""
    from posesweep.torch_engine import trainer
    from posesweep.torch_engine.trainer import StepSettings, precision_of_compute_capability

    assert [precision_of_compute_capability(cc) for cc in [(6, 1), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0), (10, 0)]] \
        == ["fp32", "fp16", "fp16", "bf16", "bf16", "bf16", "bf16"]
    cpu = StepSettings.for_device(torch.device("cpu"), "resnet50", 8, 10**6)
    assert (cpu.bf16, cpu.fp16, cpu.precision) == (False, False, "fp32")
    assert StepSettings(torch.device("cpu"), bf16=False, channels_last=False, fp16=True).describe() == \
        "CPU, fp16 autocast, dynamic loss scaling"
    monkeypatch.setattr(trainer, "device_precision", lambda device: "fp16")  # as a T4 answers
    assert StepSettings.for_device(torch.device("cpu"), "resnet50", 8, 10**6).fp16
    assert StepSettings.for_device(torch.device("cpu"), "resnet50", 8, 10**6, precision="fp32").precision == "fp32"


def test_compilation_only_where_it_was_measured_to_repay_its_minute():
    """torch.compile on a GPU for runs of 100k images or more: at batch > 1 for both backbones, and at batch 1 for
    the BatchNorm ResNet-50 inside its CUDA graph (69 -> 85 images/s on an H200); DeepLabCut's GroupNorm one at
    batch 1 was not measured compiled and stays eager; never a short run, never on a CPU."""
    from posesweep.torch_engine.trainer import COMPILE_MIN_IMAGES, StepSettings, compiling_pays

    study = 250_000  # the paper's iterations at batch 1
    assert compiling_pays("resnet50", 1, study) and compiling_pays("resnet50", 8, 8 * study)
    assert compiling_pays("resnet50_gn", 8, 8 * study) and not compiling_pays("resnet50_gn", 1, study)
    assert not compiling_pays("resnet50", 1, COMPILE_MIN_IMAGES - 1) and compiling_pays("resnet50", 1,
                                                                                         COMPILE_MIN_IMAGES)
    assert not compiling_pays("resnet50", 8, 8 * 100)  # the demo's runs: the compilation would cost more
    assert StepSettings.for_device(torch.device("cpu"), "resnet50", 1, study).compiled is False


def test_a_step_out_of_gpu_memory_says_what_fits_and_whether_a_retry_can_help():
    """A batch too large for a lab's GPU fails at once naming the batch, frame size and GPU; a shortage caused by
    other processes on the GPU is retried, and so is one where the frame cache shared the GPU (without it)."""
    from posesweep.errors import GpuMemorySharedWithFramesError, GpuMemoryTakenError, GpuMemoryTooSmallError
    from posesweep.gpu_memory import GIB, GpuMemory, step_out_of_memory

    beside_frames = GpuMemory("NVIDIA GeForce RTX 3090", 24 * GIB, int(23.1 * GIB), int(0.3 * GIB), int(4.7 * GIB))
    error = step_out_of_memory(beside_frames, 8, 1920, 1080, "bf16", 800)
    assert isinstance(error, GpuMemorySharedWithFramesError) and error.retryable
    paragraph = error.explain()
    assert ("Found: batch_size=8 of 1920x1080 px frames (bf16) on NVIDIA GeForce RTX 3090 with 24.0 GiB: this "
            "training held 23.1 GiB (its frames 4.7 GiB of it), other processes 0.6 GiB") in paragraph
    assert "with the frame set's decoded frames held on the GPU beside it" in paragraph
    assert "the retry resumes from the newest snapshot with the frames in pinned host memory" in paragraph

    alone = GpuMemory("NVIDIA GeForce RTX 3090", 24 * GIB, int(23.1 * GIB), int(0.3 * GIB))  # frames off the GPU
    error = step_out_of_memory(alone, 8, 1920, 1080, "bf16", 800)
    assert isinstance(error, GpuMemoryTooSmallError) and not error.retryable and error.exit_code == 3
    paragraph = error.explain()
    assert "frame set 800: the training step ran out of GPU memory" in paragraph
    assert ("Found: batch_size=8 of 1920x1080 px frames (bf16) on NVIDIA GeForce RTX 3090 with 24.0 GiB: this "
            "training held 23.1 GiB, other processes 0.6 GiB") in paragraph
    assert "lower batch_size (the paper trains at 1)" in paragraph and "A retry cannot help" in paragraph
    at_batch_1 = step_out_of_memory(alone, 1, 1920, 1080, "fp32", 800).explain()
    assert "lower batch_size" not in at_batch_1 and "downscale the videos" in at_batch_1

    shared = GpuMemory("NVIDIA A100-SXM4-40GB", 40 * GIB, 18 * GIB, 1 * GIB)
    error = step_out_of_memory(shared, 8, 1920, 1080, "bf16", 400)
    assert isinstance(error, GpuMemoryTakenError) and error.retryable
    assert "other processes 21.0 GiB" in error.explain() and "POSESWEEP_GPU_POOL" in error.explain()


def test_the_frame_cache_goes_to_the_gpu_only_with_room_and_leaves_it_after_a_step_ran_out_beside_it():
    """Half of the free GPU memory for the frames, the rest for the step; pinned host memory otherwise, and always
    once a step ran out of GPU memory with the frames on the GPU (``frames_on_host.txt``)."""
    from posesweep.torch_engine.frame_cache import cache_placement

    gib = 2**30
    assert cache_placement("cuda", 4 * gib, 20 * gib) == "device"
    assert cache_placement("cuda", 4 * gib, 20 * gib, frames_on_device=False) == "pinned host memory"
    assert cache_placement("cuda", 11 * gib, 20 * gib) == "pinned host memory"
    assert cache_placement("cpu", 1, 20 * gib) == "host memory"


@pytest.mark.slow
def test_a_training_whose_step_ran_out_of_gpu_memory_beside_its_frames_retries_with_them_in_host_memory(
        tiny_cohort, tmp_path, capsys):
    """The retry after ``GpuMemorySharedWithFramesError`` (stages.train leaves ``frames_on_host.txt``) trains for
    real with the frames kept off the GPU, says so in the log, and records why. (The GPU's out-of-memory error
    itself cannot happen on a CPU.)"""
    from conftest import training_ready_run
    from posesweep import stages
    from posesweep.gpu_memory import GIB, GpuMemory, step_out_of_memory

    run = training_ready_run(tiny_cohort, tmp_path / "data", {**PYTORCH_CONF, "max_iterations": 20,
                                                              "snapshot_interval": 10}, "manual__frames_off_gpu")
    error = step_out_of_memory(GpuMemory("NVIDIA RTX A5000", 24 * GIB, 23 * GIB, GIB // 2, 5 * GIB), 8, 1920, 1080,
                               "bf16", 12)
    marker = run.layout.frames_on_host_marker(12)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{error.what}\n{error.found}\n")  # what stages.train leaves when it raises ``error``
    record = stages.train(run, 12)
    assert record["snapshot_iterations"] == [10, 20] and record["frames_cached_in"] == "host memory"
    assert record["frames_kept_off_gpu"] == error.what
    assert "[frame set 12] frames kept in host memory, copied to the GPU per batch" in capsys.readouterr().out


def test_an_fp16_step_that_overflowed_is_skipped_on_the_device_and_the_scale_backs_off(monkeypatch):
    """fp16's loss scaling without a host wait (a CUDA graph holds it): gradients unscaled before AdamW sees them
    (the same update as without scaling), a step whose scaled gradients overflowed skipped (weights, moments and
    step count as they were) and the scale halved, doubled again after GROWTH_INTERVAL clean steps; its state
    saved and restored."""
    from posesweep.torch_engine import loss_scale
    from posesweep.torch_engine.loss_scale import INITIAL_SCALE, LossScaler

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 2, 1))
    unscaled = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    reference = torch.optim.AdamW(unscaled.parameters(), lr=1e-3, fused=True)
    scaler = LossScaler(cpu)
    images = torch.randn(2, 3, 16, 16)

    def step(factor: float = 1.0) -> None:
        optimizer.zero_grad()
        scaler.backward(model(images).pow(2).mean() * factor)
        scaler.step(optimizer)

    step()  # fp32 here, so the scaled gradients are exact: the update must be the unscaled one
    reference.zero_grad()
    unscaled(images).pow(2).mean().backward()
    reference.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), unscaled.parameters()))
    assert scaler.state() == {"scale": INITIAL_SCALE, "growth_tracker": 1}

    first = next(model.parameters())
    weights = [p.detach().clone() for p in model.parameters()]
    moments = optimizer.state[first]["exp_avg"].clone()
    step(float("inf"))  # its gradients overflow
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert torch.equal(optimizer.state[first]["exp_avg"], moments) and optimizer.state[first]["step"].item() == 1
    assert scaler.state() == {"scale": INITIAL_SCALE / 2, "growth_tracker": 0}
    monkeypatch.setattr(loss_scale, "GROWTH_INTERVAL", 3)
    for _ in range(3):
        step()
    assert scaler.state() == {"scale": INITIAL_SCALE, "growth_tracker": 0}
    assert optimizer.state[first]["step"].item() == 4 and not torch.equal(first, weights[0])

    assert LossScaler.resumed(cpu, {"scale": 512.0, "growth_tracker": 7}).state() == {"scale": 512.0,
                                                                                     "growth_tracker": 7}
    assert LossScaler.resumed(cpu, None).state() == {"scale": INITIAL_SCALE, "growth_tracker": 0}
    assert LossScaler(cpu).collapsed() is None and LossScaler(cpu, 2.0 ** -11).collapsed() == 2.0 ** -11


def test_an_fp16_training_fails_as_diverged_only_when_its_loss_scale_collapses(caplog):
    """In fp16 one non-finite loss is a skipped step (the weights untouched), said in a warning; a loss scale fallen
    below 2**-10 (every step overflowing) fails the network with precision=fp32 as the setting that gets past it.
    In bf16 and fp32 a non-finite loss fails at once, as before."""
    from posesweep.errors import TrainingDivergedError
    from posesweep.torch_engine.loss_scale import LossScaler
    from posesweep.torch_engine.trainer import diverged

    cpu = torch.device("cpu")
    assert diverged(float("nan"), None) == "loss nan" and diverged(0.3, None) is None
    assert diverged(float("inf"), LossScaler(cpu)) is None
    assert "the loss overflowed fp16 (inf); that step was skipped" in caplog.text
    found = diverged(0.3, LossScaler(cpu, 2.0 ** -12))
    assert found == "loss 0.3 with the fp16 loss scale fallen to 0.000244 (every recent step overflowed)"
    error = TrainingDivergedError.of_network(12, f"{found} at iteration 400", f"{found} at iteration 400",
                                             "pytorch_config.yaml", in_fp16=True)
    assert error.parameters == {"precision": "fp32"} and "in fp16" in error.found
    assert "trigger with precision=fp32" in error.explain()
    assert TrainingDivergedError.of_network(12, "nan", "loss nan", "pytorch_config.yaml").parameters == {}
