"""What can go wrong in a study run, and whether trying again can help.

Every failure posesweep raises on purpose is a ``PosesweepError``. Its class says
whether a retry can help (``retryable``); its fields make one paragraph a lab can
act on (``explain()``): what failed, the lab's own file, where in it (frames,
landmarks, parameter), the value found, the value allowed, and what to do.

``InputError``: the cohort, its labels or the parameters must change; retrying
the same task gives the same failure, so the DAG fails the task at once.
``TransientError``: the machine, not the input (a killed worker or child, an
evicted pod); the task keeps its retries. ``MachineError``: the machine must
change before anything can go on (a full disk); no retry, and the paragraph says
that clearing the task once it is mended resumes the run.

The ``posesweep`` command exits with ``exit_code`` and prints the error as one
line, ``POSESWEEP_ERROR {json}``, which the runner turns back into the same kind
of error in the Airflow worker. Nothing here imports Airflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ERROR_LINE_PREFIX = "POSESWEEP_ERROR "


class PosesweepError(Exception):
    """A failure posesweep can explain. Subclasses set ``retryable`` and ``exit_code``."""

    retryable = True
    exit_code = 75  # EX_TEMPFAIL
    title = "posesweep failed"  # the paragraph's heading; a subclass names its own: ``class X(Base, title=...)``
    # the paragraph's last line where no retry can help
    no_retry_note = "A retry cannot help: change the input, then trigger a new run."

    def __init_subclass__(cls, *, title: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if title is not None:
            cls.title = title

    def __init__(self, what: str, *, file: str | Path | None = None, where: str | None = None,
                 found: str | None = None, allowed: str | None = None, fix: str | None = None,
                 details: list[str] | tuple[str, ...] = (), parameters: dict[str, Any] | None = None,
                 first_look_parameters: dict[str, Any] | None = None):
        super().__init__(what)
        self.what, self.file, self.where = what, str(file) if file else None, where
        self.found, self.allowed, self.fix, self.details = found, allowed, fix, list(details)
        # run parameters that alone get past this failure, where the paragraph suggests a setting (e.g.
        # {"bad_video_policy": "exclude"}): `make study` prints the new run's command with them
        self.parameters = dict(parameters or {})
        # where the study would train for days here: the parameters of a run that shows the whole study on the
        # lab's data in about half an hour instead (too short to learn from), a second command `make study` prints
        self.first_look_parameters = dict(first_look_parameters or {})

    def explain(self) -> str:
        """One paragraph: what failed, in which of the lab's files, what was found and allowed, what to do."""
        lines = [f"{self.title}: {self.what}"]
        for label, value in (("File", self.file), ("Where", self.where), ("Found", self.found),
                             ("Allowed", self.allowed)):
            if value:
                lines.append(f"  {label}: {value}")
        lines += [f"      {line.strip()}" if line[:1].isspace() else f"  - {line}" for line in self.details]
        if self.fix:
            lines.append(f"  What to do: {self.fix}")
        lines.append(f"  {self.no_retry_note}" if not self.retryable
                     else "  The task is retried: this failure is not caused by the input.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def to_line(self) -> str:
        """The error as the one line the ``posesweep`` command prints before it exits."""
        fields = {k: getattr(self, k) for k in ("what", "file", "where", "found", "allowed", "fix", "details",
                                                "no_retry_note", "parameters", "first_look_parameters")}
        return ERROR_LINE_PREFIX + json.dumps({"kind": getattr(self, "kind", type(self).__name__),
                                               "retryable": self.retryable,
                                               "title": self.title, **fields})


class InputError(PosesweepError, title="the study cannot run on this input"):
    """The input (parameters, cohort folder, videos, labels, weights) must change: no retry can help."""

    retryable = False
    exit_code = 3


class MachineError(PosesweepError, title="the machine cannot go on"):
    """The machine, not the input, must change (a full disk): no automatic retry helps, since nothing changes in
    between; once it is mended, the failed task is cleared and the run goes on where it stopped."""

    retryable = False
    exit_code = 3  # as an input error's: the runner and the pod's watcher fail the task at once
    no_retry_note = ("No retry helps until this is mended; then clear the failed task (and its downstream tasks) "
                     "in Airflow: the run goes on where it stopped, with finished work kept and a network resumed "
                     "from its newest snapshot.")


class DiskFullError(MachineError, title="the disk is full"):
    """Writing failed for want of room (no space left, or the user's disk quota reached)."""


class TransientError(PosesweepError):
    """A failure of the machine rather than the input (a killed process, an evicted pod): retry."""

    retryable = True
    exit_code = 75


def together(problems: list[InputError]) -> InputError:
    """Input problems found in one look, as one failure: the problem itself where there is one, else one paragraph
    naming each with its own file, values and fix, and the parameters that every suggestion sets (a lab mends them
    all before its next try, instead of meeting them one run at a time)."""
    if len(problems) == 1:
        return problems[0]
    details, parameters, first_look = [], {}, {}
    for problem in problems:
        details.append(f"{problem.title}: {problem.what}")
        fields = (("File", problem.file), ("Where", problem.where), ("Found", problem.found),
                  ("Allowed", problem.allowed))
        details += [f"  {label}: {value}" for label, value in fields if value]
        details += [f"  {line.strip()}" for line in problem.details]
        details += [f"  What to do: {problem.fix}"] if problem.fix else []
        parameters.update(problem.parameters)
        first_look.update(problem.first_look_parameters)
    return InputError(f"{len(problems)} problems, each with what to do",
                      details=details, parameters=parameters,
                      first_look_parameters={**parameters, **first_look} if first_look else None,
                      fix="mend every one of them before the next run" + (
                          f" (the parameters suggested above, together: "
                          f"{', '.join(f'{k}={json.dumps(v)}' for k, v in parameters.items())})" if parameters
                          else ""))


# What the lab or the operator must change: every one fails its task at once.

class StudyConfigError(InputError, ValueError, title="invalid study parameters"):
    """A study parameter is invalid; the message names the parameter, the value found and the value allowed."""


class CohortError(InputError, ValueError, title="the cohort folder cannot be used"):
    """The cohort folder is unusable; the message says what is missing where."""


class OutsideDataRootError(InputError, ValueError, title="a path leaves the data root"):
    """A path resolves outside the configured data root."""


class ScaleError(InputError, ValueError, title="the landing square in cohort.json cannot be used"):
    """The landing-square description is unusable; the message says where and why."""


class VideoError(InputError, RuntimeError, title="a video cannot be used"):
    """A video cannot be used; the message names the file and the reason."""


class LabelFileError(InputError, title="the labels cannot be read"):
    """A lab's CollectedData file is missing or unreadable (and so is DeepLabCut's copy beside it)."""


class LabelValidationError(InputError, RuntimeError, title="the labels failed validation"):
    """Labels failed validation; the message lists expectations and offending frames."""

    # label_frames reads the lab's files each time it runs: a corrected label needs no new run
    no_retry_note = ("A retry cannot help. Once the labels are corrected, clear label_frames with its downstream "
                     "tasks in Airflow (make study: the CONTINUE command it prints): the run reads them again and "
                     "goes on. A change of the run's parameters or landmarks needs a new run.")


class LabelsWouldFailValidationError(InputError, title="the labels would fail validation"):
    """What ``validate_labels`` would fail on, seen by ``prepare_run`` where its fix is a run parameter."""


class RunNotFoundError(InputError, title="no such run"):
    """A command names a run whose folder holds no validated parameters."""


class FrameSetError(InputError, ValueError, title="the frame sets cannot be built"):
    """Frame sets cannot be built from the labeled frames; the message says why."""


class WeightsUnavailableError(InputError, RuntimeError, title="no initial weights"):
    """No pretrained checkpoint and random initialisation not allowed."""


class MemoryTooSmallError(InputError, MemoryError, title="the frame set does not fit in this machine's memory"):
    """The training frames would not fit in the memory this machine or pod has: the same machine fails again."""


class GpusNotSeenError(InputError, RuntimeError, title="the training engine sees none of this machine's GPUs"):
    """The local backend has GPUs, but the engine, in a child given one, sees none: it would train on the CPU."""


class GpuCannotRunError(MachineError, title="the training engine cannot run on this machine's GPU"):
    """torch sees the GPU but runs no kernel on it (a GPU older than the architectures its build was compiled for):
    every training step fails the same way until torch, the engine or the GPU changes."""


class GpuTooOldError(GpusNotSeenError, title="the training engine cannot run on this machine's GPU"):
    """``prepare_run``'s form of ``GpuCannotRunError``: found before anyone labels, with a new run's settings."""


class SomeGpusTooOldError(GpuTooOldError):
    """torch runs on some of the local backend's GPUs and not on others (``runs``: those it runs on)."""

    def __init__(self, what: str, *, runs: tuple[str, ...], **fields):
        super().__init__(what, **fields)
        self.runs = tuple(runs)


class GpuMemoryTooSmallError(InputError, MemoryError, title="a training step does not fit in the GPU's memory"):
    """The step ran out of GPU memory with the GPU (nearly) to itself: the same GPU fails again."""


class HostMemoryTooSmallError(InputError, MemoryError, title="the work does not fit in the memory it may use"):
    """The out-of-memory killer ended a child that held (nearly) its whole memory limit: the same work fails
    again."""


class LabelsChangedSinceTrainingError(InputError, title="the run's networks were made from other labels"):
    """A frame set's labels or split differ from those its training data was made from: the run's finished
    networks would be scored and reported against labels they never saw."""


class TrainingDivergedError(InputError, title="training diverged"):
    """The loss became NaN or infinite: the same data and settings diverge again."""

    @classmethod
    def of_network(cls, frame_set_size: int, became: str, found: str, config_file: str,
                   tensorflow_from_random_weights: bool = False, in_fp16: bool = False) -> "TrainingDivergedError":
        """The error for one network, whichever engine trained it; ``config_file`` holds its learning rate.

        DeepLabCut's TensorFlow ResNet runs its batch normalisation with ``is_training=False``, on fixed statistics
        made for pretrained weights: from random weights (posesweep calibrates them once, on the cohort's frames)
        nothing normalises the activations as the weights move at the paper's learning rate, and the loss can blow
        up. DeepLabCut 3's PyTorch ``resnet_50`` normalises every image (GroupNorm) as it trains."""
        what = f"frame set {frame_set_size}: the loss became {became}"
        fix = ("check the labels (a landmark far outside the body can blow up the loss), start from pretrained "
               f"weights, or lower the learning rate in {config_file}")
        if tensorflow_from_random_weights:
            return cls(what, found=f"{found}, from random weights", allowed="a finite loss",
                       fix=f"trigger with engine=pytorch: DeepLabCut 3's resnet_50 normalises each image as it trains "
                           f"and learns from random weights, where DeepLabCut's TensorFlow ResNet keeps the fixed "
                           f"batch-norm statistics made for pretrained weights and its loss can blow up as the "
                           f"weights move; or {fix}", parameters={"engine": "pytorch"})
        if in_fp16:  # its weights are still finite: the overflowing steps were skipped
            return cls(what, found=f"{found}, in fp16 (this GPU has no bf16 tensor cores)",
                       allowed="a finite loss, and gradients fp16 can hold",
                       fix=f"trigger with precision=fp32: fp16's range (at most 65504) is far narrower than fp32's, "
                           f"and this network's activations or gradients left it; or {fix}",
                       parameters={"precision": "fp32"})
        return cls(what, found=found, allowed="a finite loss", fix=fix)


# What the machine did: the task keeps its retries.

class TrainingFailedError(TransientError, RuntimeError, title="training ended early"):
    """Training ended without the snapshots it should have written."""


class GpuMemoryTakenError(TransientError, MemoryError, title="the GPU's memory is held by other processes"):
    """The step ran out of GPU memory while other processes held much of it: a retry once they end may fit."""


class GpuMemorySharedWithScoringError(TransientError, MemoryError,
                                      title="the training and the snapshot scorer beside it did not fit in the GPU"):
    """A TensorFlow training step ran out of GPU memory while the scorer in its process held GPU memory too: the
    retry trains without scoring beside it, which tells whether the step alone fits."""


class GpuMemorySharedWithFramesError(TransientError, MemoryError,
                                     title="the training step and its frames did not fit in the GPU together"):
    """A PyTorch training step ran out of GPU memory while the frame cache took part of it: the retry keeps the
    frames in pinned host memory, which tells whether the step alone fits."""


class HostMemoryTakenError(TransientError, MemoryError, title="the memory is held by other processes"):
    """The out-of-memory killer ended a child while other processes held much of the memory: a retry once they
    end may fit."""


class WriterBusyError(TransientError, title="another process is writing here"):
    """Another process holds the folder's writer lock (a trainer still running): retry once it has ended."""


class TrainingStoppedError(TransientError, title="the training was stopped before its end"):
    """The training process was asked to stop (SIGTERM: a preempted pod, a task cleared or timed out) and saved a
    resume point first: the retry goes on from there."""


class TrainerCommandError(TransientError, title="the stage's process failed"):
    """The child stalled, was killed or crashed without saying why: worth a retry."""


class ChildReportedError(PosesweepError):
    """An error a ``posesweep`` child process reported, rebuilt in the parent with the child's kind."""

    def __init__(self, payload: dict[str, Any]):
        super().__init__(payload["what"], **{k: payload.get(k) for k in ("file", "where", "found", "allowed",
                                                                        "fix")},
                         details=payload.get("details") or (), parameters=payload.get("parameters"),
                         first_look_parameters=payload.get("first_look_parameters"))
        self.kind, self.retryable, self.title = payload.get("kind", "PosesweepError"), payload["retryable"], \
            payload.get("title", PosesweepError.title)
        self.exit_code = TransientError.exit_code if self.retryable else InputError.exit_code
        self.no_retry_note = payload.get("no_retry_note") or PosesweepError.no_retry_note


class FailureParagraph(str):
    """A failed task's paragraph as the DAG's failure callback printed it (a ``str``), with whether the task was
    retried after it and the run parameters the failure suggests (``PosesweepError.parameters``)."""

    def __new__(cls, text: str, *, retried: bool = False, parameters: dict[str, Any] | None = None,
                first_look_parameters: dict[str, Any] | None = None):
        paragraph = super().__new__(cls, text)
        paragraph.retried, paragraph.parameters = retried, dict(parameters or {})
        paragraph.first_look_parameters = dict(first_look_parameters or {})
        return paragraph


def error_from_line(line: str) -> PosesweepError | None:
    """The error a child printed with ``to_line``; None for any other line."""
    if not line.startswith(ERROR_LINE_PREFIX):
        return None
    try:
        return ChildReportedError(json.loads(line[len(ERROR_LINE_PREFIX):]))
    except (ValueError, KeyError):
        return None
