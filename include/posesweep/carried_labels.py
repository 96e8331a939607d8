"""Labels a lab already made in earlier runs of a cohort, carried into a new run's project.

A cohort grows: a new group of participants is copied in (or the whole grown cohort into a new folder), the intake
starts a new run, and k-means picks the same frames of the videos it saw before. The lab labelled those frames in
the earlier run's project (where DeepLabCut's GUI saves them); without this it would be asked to label them all
again. A label is carried only for a frame whose image is, pixel for pixel, the one the lab labelled, only into a
project folder that holds no labels of the scorer yet, and only where the cohort keeps no labels of its own for the
video (those are used as they are). The earlier run is only read. While the new run waits for labels, a file
carried and not touched since is carried again where the lab has meanwhile labelled more of the frames in an
earlier run.

The lab may have changed its landmarks since (a landmark added to ``bodyparts``, one taken out): the labels of the
landmarks both runs know are carried, a landmark no longer listed is left out, and a new one is left unlabelled;
the frames then wait until the lab has added it and saved the file (``landmarks_still_to_add``). A landmark renamed
since is carried under its new name where cohort.json's ``renamed_landmarks`` says so; without it, it is one
landmark left out and one new, and the log proposes the setting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import Cohort, label_files_by_scorer
from .labels import LabelFileError, labeled_images, read_collected_data, write_collected_data
from .layout import RunLayout, file_version, read_json, visible_entries, write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CarriedLabels:
    """One video's labels taken from an earlier run."""

    video_stem: str
    from_file: Path  # the earlier run's label file
    from_run: str
    from_cohort: str
    frames: int  # labelled frames carried
    picked_frames: int  # frames k-means picked in this run
    written: str  # the carried file's content hash: still so, the lab has not labelled here
    landmarks_added: tuple[str, ...] = ()  # the cohort's landmarks the earlier run did not have: left to label
    landmarks_left_out: tuple[str, ...] = ()  # the earlier run's landmarks the cohort no longer lists
    landmarks_renamed: tuple[str, ...] = ()  # "<earlier name> -> <name now>", as cohort.json's renamed_landmarks

    def describe(self) -> str:
        text = (f"{self.video_stem}: labels of {self.frames} of its {self.picked_frames} picked frames carried over "
                f"from run {self.from_run} of cohort {self.from_cohort} ({self.from_file}; the same images)")
        if self.landmarks_renamed:
            text += f"; {', '.join(self.landmarks_renamed)} (renamed_landmarks in cohort.json)"
        if self.landmarks_left_out:
            text += f"; {', '.join(self.landmarks_left_out)} left out (no longer among the cohort's bodyparts)"
        if self.landmarks_added:
            text += (f"; without {', '.join(self.landmarks_added)}, new since: add them to these frames in "
                     f"DeepLabCut and save")
        if self.landmarks_left_out and self.landmarks_added:
            text += (f" (if {self.landmarks_added[0]} is {self.landmarks_left_out[0]} renamed, say so in the "
                     f"cohort's cohort.json: \"renamed_landmarks\": {{\"{self.landmarks_left_out[0]}\": "
                     f"\"{self.landmarks_added[0]}\"}}, and its labels are carried)")
        return text


def _video_bytes(frame_record: Path) -> str | None:
    """The size in bytes of the video a run's frames of it came from (its fingerprint's first part), or None."""
    try:
        return str(read_json(frame_record).get("video_fingerprint") or "").split("-")[0] or None
    except (OSError, ValueError):
        return None


def earlier_label_files(layout: RunLayout, video_stem: str, scorer: str) -> list[Path]:
    """The video's label files of the scorer in the cohort's other runs' projects, and in other cohorts' runs
    where the video of that name had the same size in bytes (a lab that put the grown cohort in a new folder);
    a participant of another study with the same name is a different file, and left without reading its images."""
    files = []
    size_here = _video_bytes(layout.frame_record(video_stem))
    for cohort_runs in visible_entries(layout.data_root / "runs"):
        same_cohort = cohort_runs.name == layout.cohort
        for run_dir in visible_entries(cohort_runs):  # not the frame cache, .frames
            if (same_cohort and run_dir.name == layout.run_name) or not run_dir.is_dir():
                continue
            if not same_cohort and (size_here is None or
                                    _video_bytes(run_dir / "frames" / f"{video_stem}.json") != size_here):
                continue
            found = label_files_by_scorer(run_dir / "project" / "labeled-data" / video_stem).get(scorer)
            if found is not None:
                files.append(found)
    return files


def same_image(a: Path, b: Path) -> bool:
    """Whether two image files hold the same pixels (the same file, hard-linked from the frame cache, at once)."""
    import cv2

    try:
        if a.samefile(b):
            return True
    except OSError:  # one of them is gone
        return False
    first, second = cv2.imread(str(a), cv2.IMREAD_UNCHANGED), cv2.imread(str(b), cv2.IMREAD_UNCHANGED)
    return first is not None and second is not None and first.shape == second.shape and np.array_equal(first, second)


def with_landmarks(frame: pd.DataFrame, bodyparts: tuple[str, ...]) -> pd.DataFrame:
    """A CollectedData table with the columns of ``bodyparts``, in that order: a landmark it lacks unlabelled
    (NaN), one it has beyond them left out."""
    scorer = frame.columns.get_level_values("scorer")[0]
    columns = pd.MultiIndex.from_tuples([(scorer, bp, c) for bp in bodyparts for c in ("x", "y")],
                                        names=["scorer", "bodyparts", "coords"])
    return frame.reindex(columns=columns)


def labels_to_carry(layout: RunLayout, cohort: Cohort, video_stem: str, picked: list[str]):
    """The earlier run's labels of this run's picked frames, with the cohort's landmarks (``with_landmarks``, after
    ``renamed_as_now``): from the file that labels most of them (of equals, the one with labels of most of the
    cohort's landmarks in them, then the one lacking fewest, then the newest), as (rows, file, landmarks added,
    landmarks left out, landmarks renamed); None where no earlier run labelled any of them with a landmark the
    cohort still has."""
    here = layout.project_dir / "labeled-data" / video_stem
    wanted, best = set(picked), None
    for file in earlier_label_files(layout, video_stem, cohort.scorer):
        try:
            frame = read_collected_data(file)
        except LabelFileError as error:  # being saved by the GUI right now, or damaged: not carried
            log.warning("%s: labels in %s not carried over: %s", video_stem, file, error.what)
            continue
        frame, renamed = renamed_as_now(frame, cohort)
        bodyparts = tuple(map(str, frame.columns.get_level_values("bodyparts").unique()))
        if not set(bodyparts) & set(cohort.bodyparts):
            log.warning("%s: labels in %s not carried over: they name the landmarks %s, none of the cohort's %s",
                        video_stem, file, ", ".join(bodyparts), ", ".join(cohort.bodyparts))
            continue
        frame = with_landmarks(frame, cohort.bodyparts)
        added = tuple(bp for bp in cohort.bodyparts if bp not in bodyparts)
        images = [image for image in labeled_images(frame)
                  if image in wanted and same_image(here / image, file.parent / image)]
        rows = frame[frame.index.get_level_values(-1).isin(images)]
        # a landmark counts where it is labelled in them: a file carried before the lab's rename map or its new
        # landmark holds the column, empty
        labelled = int(rows.notna().T.groupby(level="bodyparts").any().any(axis=1).sum())
        rank = (len(images), labelled, -len(added), file.stat().st_mtime)
        if images and (best is None or rank > best[0]):
            left_out = tuple(bp for bp in bodyparts if bp not in cohort.bodyparts)
            best = (rank, rows, file, added, left_out, renamed)
    return None if best is None else best[1:]


def renamed_as_now(frame: pd.DataFrame, cohort: Cohort) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """An earlier CollectedData table with the landmarks cohort.json's ``renamed_landmarks`` names under their
    names now, and what was renamed (``"<earlier> -> <now>"``); a name now the table already has is left alone."""
    present = set(map(str, frame.columns.get_level_values("bodyparts")))
    renames = {before: now for before, now in (cohort.renamed_landmarks or {}).items()
               if before in present and now not in present}
    if not renames:
        return frame, ()
    return (frame.rename(columns=renames, level="bodyparts"),
            tuple(f"{before} -> {now}" for before, now in renames.items()))


def landmarks_still_to_add(layout: RunLayout, video_stem: str, label_file: Path | None) -> tuple[str, ...]:
    """The landmarks new since the earlier run whose labels were carried into ``label_file``, while nobody has
    saved over the carried file (after the lab's save, its frames are labelled as the lab left them)."""
    if label_file is None or not layout.carried_labels_file.exists():
        return ()
    entry = read_json(layout.carried_labels_file).get(video_stem) or {}
    try:
        untouched = label_file.suffix == ".h5" and file_version(label_file) == entry.get("written")
    except OSError:
        return ()
    return tuple(entry.get("landmarks_added") or ()) if untouched else ()


def carry_earlier_labels(layout: RunLayout, cohort: Cohort, video_stems: list[str]) -> list[CarriedLabels]:
    """Seed this run's project with the labels of earlier runs, per video: where it has none, and again where what
    was carried is untouched here and an earlier run now labels more of the frames (the lab went on labelling
    there). Records what came from where in ``labels/carried.json`` and logs a line per video."""
    labeled_data = layout.project_dir / "labeled-data"
    before = read_json(layout.carried_labels_file) if layout.carried_labels_file.exists() else {}
    carried = []
    for stem in video_stems:
        here = label_files_by_scorer(labeled_data / stem).get(cohort.scorer)
        as_carried = stem in before and here is not None and here.suffix == ".h5" and \
            file_version(here) == before[stem].get("written")
        if here is not None and not as_carried:  # this run's own labels: the lab's, never overwritten
            continue
        if cohort.scorer in label_files_by_scorer(cohort.root / "labeled-data" / stem):  # kept with the cohort
            continue
        picked = read_json(layout.frame_record(stem))["image_names"]
        found = labels_to_carry(layout, cohort, stem, picked)
        if found is None or (as_carried and len(found[0]) <= before[stem]["frames"]):
            continue
        rows, source, added, left_out, renamed = found
        written = write_collected_data(rows, labeled_data, stem, cohort.scorer)
        record = CarriedLabels(stem, source, source.parents[3].name, source.parents[4].name, len(rows), len(picked),
                               file_version(written), added, left_out, renamed)
        log.info("%s", record.describe())
        carried.append(record)
    if carried:
        write_json_atomic(layout.carried_labels_file, {**before, **{
            c.video_stem: {"from_cohort": c.from_cohort, "from_run": c.from_run, "from_file": str(c.from_file),
                           "frames": c.frames, "picked_frames": c.picked_frames, "written": c.written,
                           "landmarks_added": list(c.landmarks_added), "landmarks_left_out": list(c.landmarks_left_out),
                           "landmarks_renamed": list(c.landmarks_renamed)}
            for c in carried}})
    return carried
