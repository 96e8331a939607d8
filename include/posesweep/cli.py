"""``posesweep``: the command behind the local backend and the trainer container's entrypoint."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from .disk import disk_full_from
from .errors import PosesweepError
from .quiet import OwnInfoOnly
from .resume_points import OUTPUT_AFTER_TASK, stop_on_sigterm
from .run import Run


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", required=True, help="the data root (cohorts/ and runs/ below it)")
    parser.add_argument("--cohort", required=True, help="cohort folder name under <data root>/cohorts")
    parser.add_argument("--run-name", required=True, help="run folder name under <data root>/runs/<cohort>")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posesweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic frontal-plane drop-landing cohort")
    synth.add_argument("--out", required=True, type=Path, help="cohort folder to write")
    synth.add_argument("--participants", type=int, default=6)
    synth.add_argument("--width", type=int, default=160, help="frame width in px")
    synth.add_argument("--height", type=int, default=120, help="frame height in px")
    synth.add_argument("--fps", type=float, default=30.0)
    synth.add_argument("--duration", type=float, default=3.0, help="video length in seconds")
    synth.add_argument("--seed", type=int, default=0)

    watch = sub.add_parser("watch", help="run another posesweep command in a child process under the stall "
                                          "watchdog (what a training pod runs)")
    watch.add_argument("arguments", nargs=argparse.REMAINDER, help="the command and its arguments")

    for name, text in (("prepare-training", "resolve initial weights, create DeepLabCut training datasets"),
                       ("train", "train one frame set's network"),
                       ("evaluate", "score every snapshot of one frame set's network (all networks if no "
                                    "--frame-set-size)")):
        p = sub.add_parser(name, help=text)
        _add_run_args(p)
        if name != "prepare-training":
            p.add_argument("--frame-set-size", type=int, required=name == "train")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a ``PosesweepError`` is printed as one line for the runner (as its paragraph where the
    output is a terminal) and sets the exit status.

    The process ends with ``os._exit`` after such an error: DeepLabCut's loader thread would otherwise keep a
    diverged training alive.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    for handler in logging.getLogger().handlers:  # other libraries' INFO (DeepLabCut's config dump) is not progress
        handler.addFilter(OwnInfoOnly())
    # tf-slim calls Keras' deprecated layer.apply once per layer: noise, not progress
    warnings.filterwarnings("ignore", message=r".*`layer\.apply` is deprecated")
    try:
        return _run(args)
    except BaseException as crash:  # no leftover thread (DeepLabCut's loader) keeps the process alive
        error = crash if isinstance(crash, PosesweepError) else disk_full_from(crash, getattr(args, "data_root", None))
        if error is None:  # a crash: reported as such (retryable)
            traceback.print_exc()
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(1)
        # a person at a terminal (re-scoring a run by hand) reads the paragraph; a runner or a pod parses the line
        print(error.explain() if sys.stdout.isatty() else error.to_line(), flush=True)
        _write_termination_message(error.explain())
        sys.stderr.flush()
        os._exit(error.exit_code)


def _write_termination_message(text: str) -> None:
    """In a pod, Kubernetes reports this file's text as the container's termination message, which the
    KubernetesPodOperator puts in the task's failure; elsewhere the file does not exist and nothing is written."""
    path = Path(os.environ.get("POSESWEEP_TERMINATION_LOG", "/dev/termination-log"))
    if path.exists():
        try:
            path.write_text(text[-4000:])  # Kubernetes keeps at most 4096 bytes
        except OSError:
            pass


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from .synthetic import SynthOptions, generate_cohort

        options = SynthOptions(participants=args.participants, width_px=args.width, height_px=args.height,
                               fps=args.fps, duration_s=args.duration, seed=args.seed)
        print(generate_cohort(args.out, options))
        return 0
    if args.command == "watch":
        from .runner import run_posesweep

        run_posesweep(args.arguments)
        return 0
    from . import stages

    run = Run.open({"data_root": args.data_root, "cohort": args.cohort, "run_name": args.run_name})
    if args.command == "prepare-training":
        stages.prepare_training(run)
    elif args.command == "train":
        # told to stop (a preempted pod, a cleared task): a resume point first, then the end
        stop_on_sigterm(run.layout.training_dir(args.frame_set_size) / OUTPUT_AFTER_TASK)
        stages.train(run, args.frame_set_size)
    elif args.command == "evaluate":
        stages.evaluate(run, args.frame_set_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())

