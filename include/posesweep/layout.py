"""Where every artifact of a study run lives, and how it is written.

``<data root>/cohorts/<cohort>/``            input (read only): videos or a DLC project
``<data root>/runs/<cohort>/<run name>/``    everything a run produces:

    study_config.json           the validated parameters
    project/                    the DeepLabCut project (config.yaml, labeled-data/, dlc-models/...)
    frames/<video stem>.json    frame indices picked per video; frames/summary.json
    labels/labels.csv           tidy label table (one row per frame x landmark); labels_validated.csv: what
                                passed validation (less excluded frames); sources.json: the lab's label files;
                                carried.json: labels taken from the cohort's earlier runs (same frames)
    validation/                 Great Expectations results and Data Docs
    splits/frame_sets.json      nested frame sets with their train/test split
    weights/                    the initial weights used
    training/frame_set_<n>/     completion record per network (score_after_training.txt: no scorer beside it;
                                frames_on_host.txt: PyTorch frames kept off the GPU)
    evaluation/                 tidy error tables: frame_set_<n>/snapshot-<it>.csv as each snapshot is scored,
                                errors_frame_set_<n>.csv per network, errors.csv for the run
    report/                     index.html, figures, statistics tables (CSV), summary.json

Frames are extracted once per cohort video into ``<data root>/runs/<cohort>/.frames/``
and linked into each run's project.

Every file is written to a temporary name in the same folder and renamed, so a
reader (or a retried task) sees either nothing or the complete file.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import OutsideDataRootError


def read_lab_text(path: Path) -> str:
    """A file a lab wrote (settings, a label .csv), as text, whichever way Windows saved it: UTF-8 (with or
    without the byte-order mark Notepad puts first), else Windows' Western code page, which DeepLabCut on Windows
    writes ``config.yaml`` in (its ``write_config`` opens the file in the system's encoding: ``C:\\Users\\Müller``
    in ``project_path`` is then not UTF-8, and DeepLabCut on Windows reads it back the same way) and a spreadsheet
    there saves a .csv in."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def resolve_inside(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refusing anything that escapes ``root`` (.., absolute, symlinks)."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        linked = next((path for path in [root / relative, *(root / relative).parents] if path.is_symlink()), None)
        if linked is not None and linked.parent == root:  # a lab linked a folder kept elsewhere into the data root
            raise OutsideDataRootError(
                f"{relative!s} is a link to {candidate}, outside the data root {root}", file=linked,
                found=f"a link to {linked.resolve()}",
                allowed=f"a folder in {root} (a run reads the cohort and writes beside it; only a video in its "
                        f"videos/ folder may be a link)",
                fix=f"remove the link and copy the folder in: rm '{linked}' && cp -r '{linked.resolve()}' "
                    f"'{linked}' (for videos kept elsewhere: a cohort folder here whose videos/ links to each)")
        raise OutsideDataRootError(f"{relative!s} resolves to {candidate}, outside the data root {root}")
    return candidate


STUDY_CONFIG_FILE = "study_config.json"  # a run's parameters, written at its first step


def safe_name(text: str) -> str:
    """A folder-safe version of an Airflow run id (which contains ':' and '+').

    A name that had to change gets a short hash of the original, so two run ids never share a folder
    ("a:b" and "a_b"); a name that is already safe is kept as it is (so the function is idempotent).
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class RunLayout:
    data_root: Path
    cohort: str
    run_name: str

    @classmethod
    def create(cls, data_root: str | Path, cohort: str, run_name: str) -> "RunLayout":
        root = Path(data_root).resolve()
        resolve_inside(root / "cohorts", cohort)
        layout = cls(root, cohort, safe_name(run_name))
        resolve_inside(root / "runs", Path(cohort) / layout.run_name)
        return layout

    @property
    def cohort_dir(self) -> Path:
        return resolve_inside(self.data_root / "cohorts", self.cohort)

    @property
    def run_dir(self) -> Path:
        return self.data_root / "runs" / self.cohort / self.run_name

    @property
    def config_file(self) -> Path:
        return self.run_dir / STUDY_CONFIG_FILE

    @property
    def project_dir(self) -> Path:
        return self.run_dir / "project"

    @property
    def frames_dir(self) -> Path:
        return self.run_dir / "frames"

    def frame_record(self, video_stem: str) -> Path:
        return self.frames_dir / f"{video_stem}.json"

    def frames_cache(self, frames_per_video: int, seed: int) -> Path:
        """Frames extracted from this cohort's videos, shared by its runs (run names never start with '.')."""
        return self.data_root / "runs" / self.cohort / ".frames" / f"n{frames_per_video}-seed{seed}"

    @property
    def labels_file(self) -> Path:
        return self.run_dir / "labels" / "labels.csv"

    @property
    def label_sources_file(self) -> Path:
        """Which of the lab's CollectedData files each video's labels came from (named in error messages)."""
        return self.run_dir / "labels" / "sources.json"

    @property
    def carried_labels_file(self) -> Path:
        """Which videos' labels came from an earlier run of the cohort, and from which file."""
        return self.run_dir / "labels" / "carried.json"

    @property
    def cohort_label_copies_file(self) -> Path:
        """The version of each project label file label_frames copied from the cohort's own (see stages)."""
        return self.run_dir / "labels" / "copied_from_cohort.json"

    @property
    def validated_labels_file(self) -> Path:
        """The label table that passed validation (labels.csv less any excluded frames): what training reads."""
        return self.run_dir / "labels" / "labels_validated.csv"

    @property
    def expected_speed_file(self) -> Path:
        """``prepare_run``'s expected seconds per iteration (``budget.record_expected_speed``), which a pod's
        deadline follows."""
        return self.run_dir / "expected_speed.json"

    @property
    def validation_dir(self) -> Path:
        return self.run_dir / "validation"

    @property
    def splits_file(self) -> Path:
        return self.run_dir / "splits" / "frame_sets.json"

    def training_dir(self, frame_set_size: int) -> Path:
        return self.run_dir / "training" / f"frame_set_{frame_set_size}"

    def labels_trained_on_file(self, frame_set_size: int) -> Path:
        """Each frame's role (train or test) and a digest of its labels, as the frame set's training data was made
        from them (``trained_labels``)."""
        return self.training_dir(frame_set_size) / "labels_trained_on.json"

    def scoring_after_training_marker(self, frame_set_size: int) -> Path:
        """Present: this network's snapshots are scored by the evaluation task only, not beside its training
        (written when training and the scorer did not fit in the GPU together)."""
        return self.training_dir(frame_set_size) / "score_after_training.txt"

    def frames_on_host_marker(self, frame_set_size: int) -> Path:
        """Present: this network's PyTorch trainer keeps its frames in host memory, not on the GPU (written when
        a training step and the frames did not fit in the GPU together)."""
        return self.training_dir(frame_set_size) / "frames_on_host.txt"

    @property
    def evaluation_dir(self) -> Path:
        return self.run_dir / "evaluation"

    def evaluation_file(self, frame_set_size: int) -> Path:
        return self.evaluation_dir / f"errors_frame_set_{frame_set_size}.csv"

    def snapshot_errors_file(self, frame_set_size: int, iteration: int) -> Path:
        """One scored snapshot; the network's table is assembled from these once all are scored."""
        return self.evaluation_dir / f"frame_set_{frame_set_size}" / f"snapshot-{iteration}.csv"

    @property
    def errors_file(self) -> Path:
        return self.evaluation_dir / "errors.csv"

    @property
    def report_dir(self) -> Path:
        return self.run_dir / "report"

    @property
    def summary_file(self) -> Path:
        return self.report_dir / "summary.json"


def cohort_names(data_root: str | Path) -> list[str]:
    """The cohort folders under ``<data root>/cohorts`` (one listing: cheap enough for a DAG file's parse); none
    where the data root cannot be read (a share not mounted on the DAG processor must not break the DAG file)."""
    try:
        return sorted(entry.name for entry in visible_entries(Path(data_root) / "cohorts") if entry.is_dir())
    except OSError:
        return []


def visible_entries(folder: Path) -> list[Path]:
    """A folder of the lab's, less hidden entries (names starting with '.'): macOS's AppleDouble ``._<name>``
    companions that a copy to a share or a USB drive leaves beside every file, ``.DS_Store``, a NAS's
    ``.snapshot``. Tools and people do not see them; read as frames or videos they failed a whole project.
    No folder: nothing."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return target


def write_json_atomic(target: Path, payload: Any) -> Path:
    return write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def null_where_not_finite(payload: Any) -> Any:
    """``payload`` with NaN and infinite numbers as None (JSON null), for a file other programs read: Python wrote
    them as NaN, which is not JSON; R's jsonlite, JavaScript's JSON.parse and jq refuse the whole file."""
    if isinstance(payload, numbers.Real) and not isinstance(payload, numbers.Integral):
        return payload if math.isfinite(payload) else None
    if isinstance(payload, dict):
        return {key: null_where_not_finite(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [null_where_not_finite(value) for value in payload]
    return payload


def write_csv_atomic(table, target: Path) -> Path:
    """A pandas table as CSV, without its index."""
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    return target


# names, even where they look like numbers (a video 0012, landmarks a lab numbered 1 to 5)
NAME_COLUMNS = {"video": str, "participant": str, "image": str, "landmark": str}


def read_csv_table(path: Path, **kwargs):
    """A table posesweep wrote (labels, errors), its video, participant and image names read as text: a video
    named 0012 stays 0012, not the number 12."""
    import pandas as pd

    return pd.read_csv(path, dtype=NAME_COLUMNS, **kwargs)


def file_version(path: Path) -> str:
    """A file's content hash: changed when anyone saves other content over it. Not its modification time, which a
    file system may keep to the second (FAT, some network shares): a save within that second would pass unseen."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
