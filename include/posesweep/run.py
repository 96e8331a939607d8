"""One study run: where its files live, its parameters and its cohort, loaded once per process.

A ``Run`` is what every stage takes. Between processes (an Airflow XCom, the
``posesweep`` command line of a child process or a pod) it travels as its small
``handle``, a JSON object of three names, and is opened again from disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .cohort import Cohort, load_cohort, with_the_runs_landmarks
from .config import StudyConfig
from .errors import RunNotFoundError
from .layout import RunLayout


@dataclass(frozen=True)
class Run:
    layout: RunLayout
    study: StudyConfig
    cohort: Cohort

    @classmethod
    def open(cls, handle: Mapping[str, str]) -> "Run":
        """The run a handle names; its parameters were validated and written by ``stages.prepare_run``."""
        layout = RunLayout.create(handle["data_root"], handle["cohort"], handle["run_name"])
        if not layout.config_file.is_file():
            raise RunNotFoundError(f"no study run {layout.run_name} of cohort {layout.cohort}", file=layout.config_file,
                                   found="no study_config.json", fix="start the run from its beginning (the DAG's "
                                                                      "prepare_run task writes it)")
        return cls(layout, StudyConfig.from_json_file(layout.config_file),
                   with_the_runs_landmarks(load_cohort(layout.cohort_dir), layout.project_dir))

    @property
    def handle(self) -> dict[str, str]:
        return {"data_root": str(self.layout.data_root), "cohort": self.layout.cohort,
                "run_name": self.layout.run_name}

    @property
    def videos(self) -> list[str]:
        """The cohort's videos (an imported project: its labeled-data folders), as paths."""
        return [str(video) for video in self.cohort.videos]

    def command(self, command: str, frame_set_size: int | None = None) -> list[str]:
        """Arguments of ``posesweep <command>`` for this run: the same for a local child and a pod."""
        return stage_args(command, self.handle, frame_set_size)


def stage_args(command: str, handle: Mapping[str, str], frame_set_size: int | None = None) -> list[str]:
    """Arguments of ``posesweep <command>`` for the run a handle names (``--opt=value``, so a name starting with
    ``-`` stays a value)."""
    args = [command, f"--data-root={handle['data_root']}", f"--cohort={handle['cohort']}",
            f"--run-name={handle['run_name']}"]
    if frame_set_size is not None:
        args.append(f"--frame-set-size={int(frame_set_size)}")
    return args


def video_stem(video: str | Path) -> str:
    """A cohort video's name in the run: the file's stem, or an imported project's labeled-data folder name."""
    return Path(video).name if Path(video).is_dir() else Path(video).stem
