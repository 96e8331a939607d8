"""A cohort folder, and the DeepLabCut project a run builds from it.

A cohort is ``<data root>/cohorts/<name>/`` in one of three kinds:

* ``videos``: ``videos/*.mp4|avi|mov``, labeled by the lab (scorer ``labeler``)
  in the run's project or in ``labeled-data/<video stem>/``; an optional
  ``cohort.json`` may name other ``bodyparts``/``scorer`` and where the landing
  square is in the image (``posesweep.scale``);
* ``synthetic``: the same plus ``cohort.json`` and per-video ground truth
  (``posesweep synth``), labeled by the simulated labeler;
* ``dlc_project``: an existing DeepLabCut project (``config.yaml`` and
  ``labeled-data/<video>/CollectedData_<scorer>.h5|csv``, any bodyparts and
  scorer, ``project_path`` as DeepLabCut ships it); its frames are already
  extracted, so each labeled-data folder stands for its video.

The run gets its own DeepLabCut project (``config.yaml``, ``labeled-data/``) so
the lab can open any run in DeepLabCut's GUI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from .config import DLC_NET_TYPE, FRONTAL_BODYPARTS, StudyConfig
from .errors import CohortError
from .layout import write_text_atomic

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
COHORT_FILE = "cohort.json"
HUMAN_SCORER = "labeler"


@dataclass(frozen=True)
class Cohort:
    name: str
    root: Path
    videos: tuple[Path, ...]  # video files; for an imported project, its labeled-data folders
    bodyparts: tuple[str, ...]
    scorer: str
    kind: str  # "videos" | "synthetic" | "dlc_project"

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"

    @property
    def frames_extracted(self) -> bool:
        return self.kind == "dlc_project"


def label_files_by_scorer(folder: Path) -> dict[str, Path]:
    """The DeepLabCut label files in one labeled-data folder, by scorer (``CollectedData_<scorer>.h5|csv``)."""
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("CollectedData_*"), key=lambda p: (p.stem, p.suffix.lower() != ".h5")):
        if path.suffix.lower() in (".h5", ".csv"):  # the .h5 where DeepLabCut wrote both
            found.setdefault(path.stem[len("CollectedData_"):], path)
    return found


def read_project_config(cohort_dir: Path) -> dict:
    """An imported DeepLabCut project's ``config.yaml``, as a mapping."""
    config_file = Path(cohort_dir) / "config.yaml"
    try:
        config = yaml.safe_load(config_file.read_text())
    except yaml.YAMLError as error:
        raise CohortError("the project's config.yaml is not valid YAML", file=config_file,
                          found=" ".join(str(error).split()), fix="correct the line named (DeepLabCut writes this "
                          "file; a new project's config.yaml shows the expected form)") from None
    if not isinstance(config, dict):
        raise CohortError("the project's config.yaml does not hold DeepLabCut's settings", file=config_file,
                          found=type(config).__name__, allowed="a mapping with bodyparts:, scorer:, video_sets:",
                          fix="copy the project's own config.yaml, as DeepLabCut wrote it")
    return config


def _load_dlc_project(cohort_dir: Path) -> Cohort:
    config_file = cohort_dir / "config.yaml"
    config = read_project_config(cohort_dir)
    for key in ("bodyparts", "scorer"):
        if not config.get(key):
            raise CohortError(f"the project's config.yaml has no {key!r} entry", file=config_file,
                              found=f"{key}: {config.get(key)!r}", fix=f"add the project's {key} to config.yaml "
                              f"(as DeepLabCut wrote it when the project was created)")
    if config.get("multianimalproject"):
        raise CohortError("multi-animal DeepLabCut projects are not supported", file=config_file,
                          found="multianimalproject: true", allowed="a single-animal project",
                          fix="use a single-animal DeepLabCut project of the same frames and labels")
    scorer = str(config["scorer"])
    labeled_data = cohort_dir / "labeled-data"
    by_folder = {p: label_files_by_scorer(p) for p in sorted(labeled_data.iterdir()) if p.is_dir()}
    folders = tuple(p for p, files in by_folder.items() if scorer in files)
    if not folders:
        others = sorted({name for files in by_folder.values() for name in files})
        raise CohortError(
            f"no labels by the project's scorer {scorer!r}", file=config_file,
            found=f"scorer: {scorer}; label files of " + (", ".join(repr(o) for o in others) if others else
                                                          f"no scorer in {labeled_data}/<video>/"),
            allowed=f"{labeled_data}/<video>/CollectedData_{scorer}.h5 or .csv",
            fix=(f"set scorer: in config.yaml to the name in the label files' names ({others[0]!r} for "
                 f"CollectedData_{others[0]}.h5)" if others else
                 "label the frames with DeepLabCut (its GUI saves CollectedData_<scorer>.h5 beside them)"))
    return Cohort(cohort_dir.name, cohort_dir, folders, tuple(config["bodyparts"]), scorer, "dlc_project")


def read_cohort_manifest(cohort_dir: Path) -> dict | None:
    """The cohort's ``cohort.json`` (bodyparts, scorer, landing square; ``posesweep synth`` writes one), if any."""
    path = Path(cohort_dir) / COHORT_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise CohortError("cohort.json is not valid JSON", file=path, found=str(error),
                          fix="correct the file (or remove it: it is optional)") from None
    if not isinstance(manifest, dict):
        raise CohortError("cohort.json must hold a JSON object", file=path, found=type(manifest).__name__,
                          allowed='{"landing_square": ..., "bodyparts": [...], "scorer": "..."}',
                          fix="correct the file (or remove it: it is optional)")
    return manifest


def load_cohort(cohort_dir: Path) -> Cohort:
    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        raise CohortError(f"cohort folder {cohort_dir} does not exist")
    if (cohort_dir / "config.yaml").is_file() and (cohort_dir / "labeled-data").is_dir():
        return _load_dlc_project(cohort_dir)
    videos_dir = cohort_dir / "videos"
    videos = tuple(sorted(p for p in videos_dir.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)) \
        if videos_dir.is_dir() else ()
    if not videos:
        raise CohortError(f"cohort {cohort_dir}: no videos ({', '.join(VIDEO_SUFFIXES)}) in {videos_dir}")
    stems = [v.stem for v in videos]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise CohortError(f"cohort {cohort_dir}: several videos share the name(s) {duplicates}")
    manifest = read_cohort_manifest(cohort_dir)
    synthetic = bool(manifest and manifest.get("kind") == "synthetic")
    manifest = manifest or {}  # a lab's cohort.json may only say where the landing square is
    bodyparts = tuple(manifest.get("bodyparts", FRONTAL_BODYPARTS))
    scorer = manifest.get("scorer", HUMAN_SCORER)
    return Cohort(cohort_dir.name, cohort_dir, videos, bodyparts, scorer, "synthetic" if synthetic else "videos")


def unmatched_videos(cohort: Cohort) -> dict[str, list[str]]:
    """Videos and labeled-data folders that do not belong together (by name), for the log and the report.

    An imported project lists its videos in config.yaml's ``video_sets``; each labeled-data folder should be
    named after one. A video cohort's own labeled-data folders should each have a video.
    """
    labeled_data = cohort.root / "labeled-data"
    folders = sorted(p.name for p in labeled_data.iterdir()  # not the folders DeepLabCut's check_labels writes
                     if p.is_dir() and not p.name.endswith("_labeled")) if labeled_data.is_dir() else []
    if cohort.frames_extracted:
        config = read_project_config(cohort.root)
        videos = sorted({Path(str(v).replace("\\", "/")).stem for v in (config.get("video_sets") or {})})
        used = {folder.name for folder in cohort.videos}
        return {"videos in config.yaml without a labeled-data folder": [v for v in videos if v not in folders],
                "labeled-data folders without a video in config.yaml": [f for f in folders if f not in videos],
                f"labeled-data folders left out (no CollectedData_{cohort.scorer} file)":
                    [f for f in folders if f not in used]}
    stems = {video.stem for video in cohort.videos}
    return {"labeled-data folders without a video": [f for f in folders if f not in stems]}


def write_project_config(project_dir: Path, cohort: Cohort, video_sizes: dict[Path, tuple[int, int]],
                         study: StudyConfig) -> Path:
    """A DeepLabCut ``config.yaml`` for the run's project (single animal, the study's engine)."""
    config = {
        "Task": cohort.name,
        "scorer": cohort.scorer,
        "date": date.today().strftime("%b%d"),
        "multianimalproject": False,
        "identity": None,
        "project_path": str(Path(project_dir).resolve()),
        "video_sets": {str(v.resolve()): {"crop": f"0, {w}, 0, {h}"} for v, (w, h) in video_sizes.items()},
        "bodyparts": list(cohort.bodyparts),
        "start": 0,
        "stop": 1,
        "numframes2pick": study.frames_per_video,
        "skeleton": [],
        "skeleton_color": "black",
        "pcutoff": study.pcutoff,
        "dotsize": 4,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [study.train_fraction],
        "iteration": 0,
        "default_net_type": DLC_NET_TYPE[study.network],  # the backbone itself is set per shuffle
        "engine": study.engine,
        "default_augmenter": "imgaug",
        "snapshotindex": "all",
        "detector_snapshotindex": -1,
        "batch_size": 8,
        "cropping": False,
        "x1": 0, "x2": 640, "y1": 277, "y2": 624,
        "corner2move2": [50, 50],
        "move2corner": True,
    }
    target = Path(project_dir) / "config.yaml"
    write_text_atomic(target, yaml.safe_dump(config, sort_keys=False))
    return target
