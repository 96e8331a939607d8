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


def _load_dlc_project(cohort_dir: Path) -> Cohort:
    config = yaml.safe_load((cohort_dir / "config.yaml").read_text())
    for key in ("bodyparts", "scorer"):
        if not config.get(key):
            raise CohortError(f"{cohort_dir / 'config.yaml'}: no {key!r} entry")
    if config.get("multianimalproject"):
        raise CohortError(f"{cohort_dir}: multi-animal DeepLabCut projects are not supported")
    folders = tuple(sorted(p for p in (cohort_dir / "labeled-data").iterdir()
                           if p.is_dir() and any(p.glob(f"CollectedData_{config['scorer']}.*"))))
    if not folders:
        raise CohortError(f"{cohort_dir}: no labeled-data/<video>/CollectedData_{config['scorer']}.h5 or .csv")
    return Cohort(cohort_dir.name, cohort_dir, folders, tuple(config["bodyparts"]), str(config["scorer"]),
                  "dlc_project")


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
    folders = sorted(p.name for p in (cohort.root / "labeled-data").iterdir() if p.is_dir()) \
        if (cohort.root / "labeled-data").is_dir() else []
    if cohort.frames_extracted:
        config = yaml.safe_load((cohort.root / "config.yaml").read_text()) or {}
        videos = sorted({Path(str(v).replace("\\", "/")).stem for v in (config.get("video_sets") or {})})
        return {"videos in config.yaml without a labeled-data folder": [v for v in videos if v not in folders],
                "labeled-data folders without a video in config.yaml": [f for f in folders if f not in videos]}
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
