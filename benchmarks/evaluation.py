"""Scoring every snapshot: posesweep's evaluation against ``deeplabcut.evaluate_network``.

Builds a small real study (synthetic cohort, two networks on nested frame sets
of half and all labeled frames, trained from random weights with N snapshots
each), drops the scores the training processes made as snapshots appeared, and
then scores every snapshot of both networks three ways, each in fresh processes:

* ``posesweep evaluate --frame-set-size N``, one process per network, as the
  DAG's mapped evaluation tasks run when training did not score (re-scoring);
* ``posesweep evaluate``, all networks in one process (one test graph shared by
  networks of the same architecture), as a lab re-scores a finished run;
* DeepLabCut's own ``evaluate_network(..., Shuffles=[1, 2],
  per_keypoint_evaluation=True)`` in one process, as a DeepLabCut user would.

Prints wall time, peak memory, the speed ratios and the largest difference of
the per-landmark train/test errors between posesweep and DeepLabCut.

Where the time goes, measured here: every process pays ~8 s of TensorFlow and
DeepLabCut imports. DeepLabCut rebuilds the ResNet graph for every snapshot
(~4 s on this CPU, most of it AutoGraph transpiling BatchNorm calls) and
predicts every labeled image of the project one at a time for every network;
posesweep builds the graph once (AutoGraph off: same ops, ~2 s), restores each
snapshot's weights and predicts only the network's own frames, in batches.
In the DAG the training process scores each snapshot as it appears, so the
evaluation task usually only assembles the tables (no TensorFlow import).

    .venv/bin/python benchmarks/evaluation.py [--snapshots 10] [--frames-per-video 10]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from posesweep import stages
from posesweep.runner import run_posesweep
from posesweep.synthetic import SynthOptions, generate_cohort
from process_memory import run_measured


def timed_child(code_or_args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak memory (MB) of one child process and its descendants, each page counted once."""
    out, seconds, peak_mb = run_measured([sys.executable, *code_or_args])
    if out.returncode != 0:
        raise SystemExit(f"{code_or_args[:3]} failed:\n{out.stderr[-3000:]}")
    return seconds, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--frames-per-video", type=int, default=10)
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the trained project (else removed at the end)")
    args = parser.parse_args()

    data_root = Path(tempfile.mkdtemp(prefix="posesweep-bench-eval-"))
    try:
        measure(args, data_root)
    finally:  # two trained projects, about 2 GB: a benchmark run again and again filled /tmp
        if not args.keep:
            shutil.rmtree(data_root, ignore_errors=True)


def measure(args: argparse.Namespace, data_root: Path) -> None:
    generate_cohort(data_root / "cohorts" / "bench", SynthOptions(participants=args.participants, duration_s=2.0,
                                                                  seed=11))
    n_frames = args.participants * args.frames_per_video
    sizes = [n_frames // 2, n_frames]
    interval = 10
    conf = {"cohort": "bench", "frames_per_video": args.frames_per_video, "frame_set_sizes": sizes,
            "train_fraction": 0.8, "max_iterations": interval * args.snapshots, "snapshot_interval": interval,
            "allow_random_init": True}
    run = stages.prepare_run(data_root, conf, "bench")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    stages.validate_label_table(run)
    stages.make_frame_sets(run)
    print(f"training two networks ({sizes} frames, {args.snapshots} snapshots each) in {data_root} ...",
          flush=True)
    run_posesweep(run.command("prepare-training"))
    for size in sizes:
        run_posesweep(run.command("train", size))
    layout = run.layout
    shutil.rmtree(layout.evaluation_dir)  # scored while training; the benchmark scores from scratch

    per_network_s, per_network_mb = 0.0, 0.0
    for size in sizes:
        seconds, peak_mb = timed_child(["-m", "posesweep.cli", *run.command("evaluate", size)])
        per_network_s, per_network_mb = per_network_s + seconds, max(per_network_mb, peak_mb)
    per_network = {size: pd.read_csv(layout.evaluation_file(size)) for size in sizes}
    shutil.rmtree(layout.evaluation_dir)
    one_s, one_mb = timed_child(["-m", "posesweep.cli", *run.command("evaluate")])
    for size in sizes:  # the same scores either way
        same = pd.read_csv(layout.evaluation_file(size))
        assert (same["error_px"] - per_network[size]["error_px"]).abs().max() < 1e-6, size
    dlc_code = ("import deeplabcut; deeplabcut.evaluate_network("
                f"{str(layout.project_dir / 'config.yaml')!r}, Shuffles=[1, 2], trainingsetindex=0, "
                "per_keypoint_evaluation=True)")
    dlc_s, dlc_mb = timed_child(["-c", dlc_code])

    differences = []
    results = sorted((layout.project_dir / "evaluation-results").rglob("*-keypoint-results.csv"))
    for path in results:
        match = re.search(r"shuffle(\d+)_(\d+)-keypoint-results", path.name)
        size, iteration = sizes[int(match.group(1)) - 1], int(match.group(2))
        ours = pd.read_csv(layout.evaluation_file(size))
        ours = ours.groupby(["snapshot_iteration", "split", "landmark"])["error_px"].mean()
        theirs = pd.read_csv(path, index_col=0)
        for split, row in (("train", "Train error (px)"), ("test", "Test error (px)")):
            for landmark, value in theirs.loc[row].items():
                differences.append(abs(ours[(iteration, split, landmark)] - float(value)))
    images = sum(sizes) * args.snapshots
    print()
    print(f"{'method':<46}{'wall s':>10}{'peak MB':>10}{'images/s':>10}{'speed-up':>10}")
    for name, seconds, peak_mb in (("posesweep evaluate, one process per network", per_network_s, per_network_mb),
                                   ("posesweep evaluate, all networks, one process", one_s, one_mb),
                                   ("deeplabcut.evaluate_network", dlc_s, dlc_mb)):
        print(f"{name:<46}{seconds:>10.1f}{peak_mb:>10.0f}{images / seconds:>10.1f}{dlc_s / seconds:>9.2f}x")
    print(f"\nspeed-up over DeepLabCut for {args.snapshots} snapshots of each of {len(sizes)} networks ({sizes} "
          f"frames; DeepLabCut predicts all {n_frames} labeled images per network): {dlc_s / per_network_s:.2f}x with "
          f"one process per network, {dlc_s / one_s:.2f}x with all networks in one process")
    print(f"per-landmark errors compared: {len(differences)} (snapshots x splits x landmarks from "
          f"{len(results)} DeepLabCut result files); largest difference {max(differences):.2e} px")


if __name__ == "__main__":
    main()
