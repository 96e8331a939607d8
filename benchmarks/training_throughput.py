"""Training throughput: DeepLabCut 3's ``train_network`` against posesweep's PyTorch trainer, and the ceiling.

One DeepLabCut project per backbone and batch size (frames of the given size with 10 labelled landmarks)
and one PyTorch shuffle, built by posesweep as a study would build it (full frames,
DeepLabCut's model configuration for the backbone). Then, each in its own process,
so each process's memory is counted once:

* ``deeplabcut``: ``deeplabcut.train_network`` on that shuffle (its loader: decode and
  albumentations on the CPU, ``dataloader_workers`` workers), starting from the same
  initial snapshot (so DeepLabCut downloads nothing). Its rate is the difference of
  two runs (``--epochs`` and twice that; by default enough epochs for ``--dlc-steps`` steps), which cancels
  start-up. DeepLabCut 3.0.2's loader starts its workers anew every epoch (no persistent workers): a study pays
  that once per epoch of ceil(training frames / batch) steps (90 at the paper's 720 training frames and batch 8),
  so the project gets enough frames for 2 batches per worker an epoch (193 with 12 workers at batch 8) and
  DeepLabCut's rate is the one a study sees, not its workers' start-up;
* ``posesweep``: posesweep's trainer step (``TrainingLoop.step``: frames cached on the
  device, augmentation and targets there) on the same frames and model configuration;
* ``ceiling``: the bare model step (``model_step``) on one batch already on the device,
  targets precomputed, in the form the trainer runs it (compiled, or one CUDA graph, where
  the trainer's step is);
* on a GPU at batch 1, also posesweep's trainer without its CUDA graph (the eager step).

Prints images per second for each, posesweep / ceiling, and posesweep / DeepLabCut,
with peak host memory (the process tree's PSS, each page counted once) and peak device memory; ``--out`` writes
the rows as JSON.

    .venv/bin/python benchmarks/training_throughput.py                  # CPU, small: 320x240, batch 1 and 2
    python benchmarks/training_throughput.py --width 1920 --height 1080 --batch-sizes 1 8 \\
        --backbones resnet_50 resnet_50_bn --workers 0 12 --workers-at 8=12 --steps 60 --out $OUT/t.json  # a GPU
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from process_memory import run_measured

if TYPE_CHECKING:
    import numpy as np

HERE = Path(__file__).resolve().parent
BODYPARTS = ["right_hip", "left_hip", "right_knee", "left_knee", "right_ankle", "left_ankle",
             "right_medial_foot", "right_lateral_foot", "left_medial_foot", "left_lateral_foot"]


def labelled_frame(store: Path, index: int, width: int, height: int) -> tuple[Path, np.ndarray]:
    """Frame ``index`` of this size (blurred noise with a white disc at each landmark) and its landmarks, made once
    and kept in ``store``: every project of the run links the same files (1080p PNGs are slow to write on the GPU
    machine's CPU). Written with zlib level 1 to be quick to write; decoding it was not timed against
    DeepLabCut's default level."""
    import cv2
    import numpy as np

    image_path, points_path = store / f"img{index:03d}.png", store / f"img{index:03d}.npy"
    if not image_path.exists():
        store.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(index)
        image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 5)
        points = rng.uniform([0.2 * width, 0.1 * height], [0.8 * width, 0.9 * height], (len(BODYPARTS), 2))
        for x, y in points:
            cv2.circle(image, (int(x), int(y)), max(3, width // 100), (255, 255, 255), -1)
        cv2.imwrite(str(image_path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        np.save(points_path, points)
    return image_path, np.load(points_path)


def make_project(root: Path, store: Path, frames: int, width: int, height: int, network: str,
                 batch_size: int) -> dict:
    """A DeepLabCut project with ``frames`` labelled frames and one PyTorch shuffle (all but one frame train)."""
    import os

    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(HERE.parent / "include"))
    from posesweep.cohort import Cohort, write_project_config
    from posesweep.config import StudyConfig
    from posesweep.labels import tidy_from_collected
    from posesweep.layout import write_json_atomic
    from posesweep.splits import FrameSet
    from posesweep.torch_engine import project

    study = StudyConfig(cohort="bench", engine="pytorch", network=network, batch_size=batch_size,
                        allow_random_init=True, frame_set_sizes=(frames,), frames_per_video=frames)
    project_dir = root / "project"
    cohort = Cohort("bench", root, (), tuple(BODYPARTS), "posesweep", "dlc_project")
    config = write_project_config(project_dir, cohort, {}, study)
    folder = project_dir / "labeled-data" / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    rows, names = [], []
    for i in range(frames):
        image_path, points = labelled_frame(store, i, width, height)
        name = image_path.name
        os.link(image_path, folder / name)
        rows.append(points.ravel())
        names.append(("labeled-data", "clip", name))
    columns = pd.MultiIndex.from_product([["posesweep"], BODYPARTS, ["x", "y"]],
                                         names=["scorer", "bodyparts", "coords"])
    table = pd.DataFrame(np.array(rows), index=pd.MultiIndex.from_tuples(names), columns=columns)
    table.to_hdf(folder / "CollectedData_posesweep.h5", key="df_with_missing")
    frame_set = FrameSet(frames, 1, tuple(("clip", n[2]) for n in names[:-1]), (("clip", names[-1][2]),))
    project.create_shuffles(config, [frame_set], study)
    model_config = project.model_config_path(config, frame_set)
    weights = project.write_initial_weights(project.read_model_config(model_config), study,
                                            root / "initial.pt")
    tidy_from_collected(table, project_dir / "labeled-data").to_csv(root / "labels.csv", index=False)  # as a study
    write_json_atomic(root / "project.json", {"config": str(config), "model_config": str(model_config),
                                              "weights": weights["path"], "train": frame_set.train})
    return {"config": str(config), "model_config": str(model_config), "weights": weights["path"]}


CHILD_PRELUDE = """
import json, sys, time
sys.path.insert(0, {include!r})
import torch
def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
def _finish(result):
    result["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    print("RESULT " + json.dumps(result), flush=True)
"""

DEEPLABCUT_CHILD = """
import deeplabcut
def train(epochs):
    _sync(); t = time.perf_counter()
    deeplabcut.train_network({config!r}, shuffle=1, trainingsetindex=0, epochs=epochs, save_epochs=epochs,
                             batch_size={batch}, snapshot_path={weights!r}, max_snapshots_to_keep=1,
                             pytorch_cfg_updates={{"train_settings.dataloader_workers": {workers},
                                                   "train_settings.dataloader_pin_memory": torch.cuda.is_available(),
                                                   "train_settings.display_iters": 10**9,
                                                   "runner.eval_interval": 10**9}})
    _sync(); return time.perf_counter() - t
short, long = train({epochs}), train(2 * {epochs})
steps_per_epoch = -(-{train_frames} // {batch})
images = {epochs} * steps_per_epoch * {batch}
_finish({{"images_per_second": images / (long - short), "seconds": short + long,
          "steps_per_epoch": steps_per_epoch}})
"""

POSESWEEP_CHILD = """
import pandas as pd, yaml
from pathlib import Path
import dataclasses
from posesweep.torch_engine.graphed_step import WARMUP_STEPS, GraphedStep, graph_safe_loss
from posesweep.torch_engine.trainer import StepSettings, TrainingLoop, augmented_batch, default_device
from posesweep.torch_engine.targets import heatmap_targets
COMPILED_GRAPH = {compiled_graph!r}
info = json.loads(Path({root!r}, "project.json").read_text())
cfg = yaml.safe_load(Path(info["model_config"]).read_text())
device = default_device()
settings = StepSettings.for_device(device, cfg["model"]["backbone"]["model_name"], {batch}, 250_000 * {batch})
if {mode!r} == "posesweep without CUDA graph":
    settings = dataclasses.replace(settings, cuda_graph=False)
if {mode!r} == COMPILED_GRAPH:  # a trial: not what a study runs
    settings = dataclasses.replace(settings, compiled=True)
if {precision!r} != "auto":  # --precision: e.g. fp16 (what a V100 or T4 trains in) on a GPU that would use bf16
    settings = dataclasses.replace(settings, bf16={precision!r} == "bf16", fp16={precision!r} == "fp16")
loop = TrainingLoop.build(cfg, Path(info["weights"]), Path(info["config"]).parent / "labeled-data",
                          [tuple(f) for f in info["train"]], pd.read_csv(Path({root!r}, "labels.csv")),
                          cfg["metadata"]["bodyparts"], {batch}, 0, device,
                          settings=settings)  # a study-length run: compiled or graphed where that helps
if {mode!r} == "ceiling":  # one batch, augmented once, its targets computed once: the bare model step
    images, keypoints, visible = augmented_batch(loop.cache, loop.sampler.indices(0), loop.augmentation,
                                                 loop.generator, loop.settings.device)
    with torch.no_grad():
        heat = loop.model(images)["bodypart"]["heatmap"]
    fixed = {{"bodypart": heatmap_targets(keypoints, visible, heat.shape[2], heat.shape[3], loop.stride,
                                          loop.targets)}}
    if torch.cuda.is_available():  # that fp32 forward's cuDNN search took up to 137 GB on an H200: not the step's
        del heat
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if loop.graphed is not None:  # the trainer's step is one CUDA graph: so is the ceiling's
        bare = GraphedStep(lambda _: loop.model_step(images, lambda _: fixed,
                                                     lambda o, t: graph_safe_loss(loop.model, o, t)),
                           loop.optimizer, loop.generator, {batch}, device)
        step = lambda i: bare(loop.sampler.indices(i))
    else:
        step = lambda i: loop.model_step(images, lambda _: fixed)  # the same forward pass (compiled or not)
else:  # what posesweep's trainer runs per iteration
    step = loop.step
for i in range(max({warmup}, WARMUP_STEPS + 2)):  # compilation, or the graph's warm-up and capture, untimed
    step(i)
_sync(); t = time.perf_counter()
for i in range(100, 100 + {steps}):  # iterations past any warm-up count: batches in their usual order
    loss = step(i)
_sync(); seconds = time.perf_counter() - t
_finish({{"images_per_second": {steps} * {batch} / seconds, "seconds": seconds, "device": loop.settings.describe(),
          "frames_in": loop.cache.where, "loss": float(loss)}})
"""


COMPILED_GRAPH = "posesweep compiled, in its CUDA graph (trial)"


class ChildFailed(Exception):
    """A measured child process exited without a result."""


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; its RESULT line, with the peak host memory of its process tree (data
    loader workers included, each page counted once: ``process_memory``)."""
    out, _, peak_mb = run_measured([sys.executable, "-c", code])
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise ChildFailed(f"benchmark child failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n"
                          f"{out.stderr[-4000:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "peak_host_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--frames", type=int, default=9, help="labelled frames (one is the test frame)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backbones", nargs="+", default=["resnet_50"], choices=["resnet_50", "resnet_50_bn"])
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="DeepLabCut data-loader workers")
    parser.add_argument("--workers-at", nargs="+", default=[], metavar="BATCH=W[,W]",
                        help="other worker counts at one batch size, e.g. 8=12: where a setting is known to be "
                        "slowest and costs most of the run (0 workers at batch 8 on a GPU: issue #13's 4.3 images/s "
                        "against 15.2 with 12), leave it out there")
    parser.add_argument("--steps", type=int, default=16, help="timed steps of posesweep and of the ceiling")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="DeepLabCut: epochs of its shorter run (its rate is the difference "
                        "of two runs); default: enough for --dlc-steps steps")
    parser.add_argument("--dlc-steps", type=int, default=24, help="DeepLabCut: at least this many steps in its "
                        "shorter run (fewer are too noisy to read)")
    parser.add_argument("--try-compiled-graph", action="store_true", help="on a GPU at batch 1, also the step "
                        "compiled inside its CUDA graph where a study does not compile it (DeepLabCut's GroupNorm "
                        "resnet_50, whose graphed eager step is GPU-bound at 27 images/s on an H200; resnet_50_bn "
                        "went from 69 to 85 that way and a study now compiles it)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                        help="posesweep's step and the ceiling in this precision instead of the device's own choice "
                        "(auto: bf16 on compute capability 8+, fp16 with loss scaling on 7, else fp32): fp16 on an "
                        "H100 exercises what a V100 or T4 runs")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    try:
        workers_at = {int(batch): [int(w) for w in workers.split(",")]
                      for batch, workers in (item.split("=") for item in args.workers_at)}
    except ValueError:
        parser.error(f"--workers-at takes BATCH=W[,W] (8=12 or 1=0,12), not {' '.join(args.workers_at)}")

    include = str(HERE.parent / "include")
    sys.path.insert(0, include)
    from posesweep.layout import write_json_atomic
    from posesweep.pretrained import TIMM_MODEL
    from posesweep.torch_engine.trainer import compiling_pays

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # cut off (benchmarks/on_device.sh): clean up, then go
    import torch
    on_gpu = torch.cuda.is_available()
    rows: list[dict] = []
    failures: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="posesweep-throughput-") as tmp:
        for backbone in args.backbones:
            for batch in args.batch_sizes:
                workers_here = workers_at.get(batch, args.workers)
                # DeepLabCut 3.0.2 starts its loader's workers anew every epoch: with at least 2 batches per worker
                # an epoch, its rate is the rate a study sees (a study has hundreds of frames), not their start-up
                frames = max(args.frames, 2 * max(workers_here) * batch + 1)
                steps_per_epoch = -(-(frames - 1) // batch)
                epochs = args.epochs or -(-args.dlc_steps // steps_per_epoch)
                root = Path(tmp) / f"{backbone}-{batch}"
                project = make_project(root, Path(tmp) / "frames", frames, args.width, args.height, backbone, batch)
                prelude = CHILD_PRELUDE.format(include=include)
                measured = {}

                def record(name: str, code: str) -> None:
                    """Measure one way; its row is saved at once, so a run cut off keeps what it measured, and a
                    way that fails is reported without losing the others."""
                    try:
                        result = run_child(code)
                    except ChildFailed as failure:
                        failures.append(f"{backbone}, batch {batch}, {name}: {failure}")
                        print(failures[-1], file=sys.stderr, flush=True)
                        if name in ("ceiling", "posesweep"):  # posesweep's own step failed: a bug to fix before
                            raise SystemExit(  # any comparison means something; the device's minutes are scarce
                                f"stopped: posesweep's {name} failed ({len(rows)} measurements kept in the rows)")
                        return
                    measured[name] = result
                    rows.append({"backbone": backbone, "batch_size": batch, "size": f"{args.width}x{args.height}",
                                 "labelled_frames": frames, "method": name, **result})
                    if args.out:
                        write_json_atomic(args.out, rows)
                    print(f"  measured {backbone}, batch {batch}, {name}: {result['images_per_second']:.2f} images/s "
                          f"({time.perf_counter() - started:.0f} s into the benchmark)", flush=True)

                def posesweep_mode(mode: str) -> None:
                    record(mode, prelude + POSESWEEP_CHILD.format(
                        root=str(root), batch=batch, mode=mode, steps=args.steps, warmup=args.warmup,
                        compiled_graph=COMPILED_GRAPH, precision=args.precision))

                # the rows the ratios need first, the extra ones last: a call cut off by its limit (a lease's end)
                # has lost a trial, not the comparison (it lost DeepLabCut's batch-1 rows twice that way)
                for mode in ("ceiling", "posesweep"):
                    posesweep_mode(mode)
                for workers in workers_here:
                    record(f"deeplabcut ({workers} workers)", prelude + DEEPLABCUT_CHILD.format(
                        config=project["config"], weights=project["weights"], batch=batch, workers=workers,
                        epochs=epochs, train_frames=frames - 1))
                if on_gpu and batch == 1:
                    posesweep_mode("posesweep without CUDA graph")
                    if args.try_compiled_graph and not compiling_pays(TIMM_MODEL[backbone], batch, 250_000 * batch):
                        posesweep_mode(COMPILED_GRAPH)  # where a study compiles, the rows above are compiled
                dlc = [v["images_per_second"] for k, v in measured.items() if k.startswith("deeplabcut")]
                if "posesweep" not in measured or "ceiling" not in measured or not dlc:
                    continue
                fastest_dlc = max(dlc)
                ours = measured["posesweep"]["images_per_second"]
                print(f"\n{backbone} ({measured['posesweep']['device']}), {args.width}x{args.height}, batch {batch}:")
                for name, result in measured.items():
                    print(f"  {name:<30} {result['images_per_second']:8.2f} images/s   peak host "
                          f"{result['peak_host_mb']:7.0f} MB, device {result['peak_device_mb']:7.0f} MB")
                print(f"  posesweep / ceiling                {ours / measured['ceiling']['images_per_second']:.2f}")
                print(f"  posesweep / DeepLabCut fastest     {ours / fastest_dlc:.2f}x", flush=True)
                print(f"  ({frames} frames, DeepLabCut: {steps_per_epoch} steps an epoch, its rate from runs of "
                      f"{epochs} and {2 * epochs} epochs)", flush=True)
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    if failures:
        raise SystemExit(f"{len(failures)} of the measurements failed (above); the others are in the rows")


if __name__ == "__main__":
    main()
