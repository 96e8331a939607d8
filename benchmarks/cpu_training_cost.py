"""What one training iteration costs on this machine's CPU, against what ``prepare_run`` expects.

``prepare_run`` states a study's training time before anyone labels, and on the local
backend refuses one expected to train for more than a day (``posesweep.budget``, a
table of seconds per iteration by frame size measured with this script). For each
engine and frame size this builds a synthetic cohort at that size, takes it through
``prepare_run``, extraction, labels, validation, frame sets and ``posesweep
prepare-training`` as a study does, trains one network with ``posesweep train`` in a
child process (DeepLabCut's TensorFlow training, or posesweep's PyTorch trainer), and
reads the seconds per iteration from its progress lines (the median window after the
first, which holds start-up). Prints measured, expected, and expected / measured.

    .venv/bin/python benchmarks/cpu_training_cost.py                                  # 320x240, both engines
    .venv/bin/python benchmarks/cpu_training_cost.py --sizes 320x240 832x748 1920x1080 --out cost.json
    .venv/bin/python benchmarks/cpu_training_cost.py --sizes 160x120 640x480 --batch-sizes 1 4   # a batch vs batch 1
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "include"))

# the training log's progress lines, each engine's own; group 1: seconds per iteration over the window
PROGRESS = {"tensorflow": re.compile(r"iteration \d+/\d+ loss \S+ lr \S+ ([0-9.]+) s/iteration"),
            "pytorch": re.compile(r"iteration \d+/\d+ loss \S+ lr \S+ \S+ images/s ([0-9.e+-]+) s/iteration")}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def seconds_per_iteration(lines: list[str], engine: str) -> float:
    """The median progress window after the first (start-up, the first iterations' graph building)."""
    windows = [float(match.group(1)) for line in lines if (match := PROGRESS[engine].search(line))]
    if len(windows) < 2:
        raise SystemExit(f"{engine}: fewer than two progress lines in the training log:\n" + "\n".join(lines[-30:]))
    return statistics.median(windows[1:])


def measure(work: Path, engine: str, width: int, height: int, iterations: int, batch_size: int = 1) -> dict:
    from posesweep import budget, stages
    from posesweep.runner import run_posesweep
    from posesweep.synthetic import SynthOptions, generate_cohort

    root = work / f"{engine}-{width}x{height}-batch{batch_size}"
    generate_cohort(root / "cohorts" / "bench", SynthOptions(participants=3, width_px=width, height_px=height,
                                                             duration_s=2.0, seed=1))
    conf = {"cohort": "bench", "engine": engine, "frames_per_video": 8, "frame_set_sizes": [10],
            "train_fraction": 0.8, "max_iterations": iterations, "snapshot_interval": iterations,
            "batch_size": batch_size, "allow_random_init": True, "allow_long_cpu_run": True}
    run = stages.prepare_run(root, conf, "bench")
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    stages.validate_label_table(run)
    stages.make_frame_sets(run)
    run_posesweep(run.command("prepare-training"))
    logger = logging.getLogger(f"bench.{engine}.{width}x{height}.{batch_size}")
    logger.propagate, logger.level = False, logging.INFO
    captured = Lines()
    logger.addHandler(captured)
    started = time.perf_counter()
    run_posesweep(run.command("train", 10), logger=logger)
    measured = seconds_per_iteration(captured.lines, engine)
    expected = budget.estimate(run.study, (width, height), 1, "local", 0.0).seconds_per_iteration
    return {"engine": engine, "size": f"{width}x{height}", "batch_size": batch_size, "iterations": iterations,
            "measured_s_per_iteration": round(measured, 3), "expected_s_per_iteration": round(expected, 3),
            "expected_over_measured": round(expected / measured, 2),
            "training_wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["320x240"], help="frame sizes, WIDTHxHEIGHT (even numbers)")
    parser.add_argument("--engines", nargs="+", default=["tensorflow", "pytorch"], choices=["tensorflow", "pytorch"])
    parser.add_argument("--iterations", type=int, default=25, help="trained per network (5 progress windows)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="images per iteration (at most 8)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    from posesweep.layout import write_json_atomic

    rows = []
    with tempfile.TemporaryDirectory(prefix="posesweep-cpu-cost-") as tmp:
        for size in args.sizes:
            width, height = (int(v) for v in size.lower().split("x"))
            for engine, batch_size in ((e, b) for e in args.engines for b in args.batch_sizes):
                rows.append(measure(Path(tmp), engine, width, height, args.iterations, batch_size))
                row = rows[-1]
                print(f"{row['engine']:<10} {row['size']:>9} batch {batch_size}: measured "
                      f"{row['measured_s_per_iteration']:7.3f} s/iteration, the estimate's table "
                      f"{row['expected_s_per_iteration']:7.3f} "
                      f"(expected / measured {row['expected_over_measured']:.2f})", flush=True)
                if args.out:
                    write_json_atomic(args.out, rows)
    speedup = statistics.median(row["expected_over_measured"] for row in rows)
    print(f"this machine trains {speedup:.2g} times as fast as the CPU of prepare_run's estimate (median of "
          f"expected / measured): an operator may set POSESWEEP_CPU_SPEEDUP={speedup:.2g} for prepare_run's "
          f"estimate here")


if __name__ == "__main__":
    main()
