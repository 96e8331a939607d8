"""The labels each network's training data was made from, kept with the run and compared by every later stage.

A stage whose output is complete is skipped (``stages``). A lab that corrects its labels after a run has made its
training data, and clears the run's tasks in Airflow, would otherwise have its old networks scored against the
corrected labels: a report of networks that never saw the labels it shows. ``prepare_training`` records, per
frame set, each frame's role (train or test) and a digest of its labels; ``prepare_training``, ``train``,
``evaluate`` and ``analyse_and_report`` refuse a frame set whose labels or split differ from the record, naming
the frames and the lab's files, and say how to train on the labels as they are now (a new run).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .errors import LabelsChangedSinceTrainingError
from .layout import RunLayout, read_json, write_json_atomic
from .splits import FrameSet

# label positions are compared to a thousandth of a pixel: below any correction, above float round-off
DIGEST_DECIMALS = 3


def frame_label_digests(labels: pd.DataFrame, frame_set: FrameSet) -> dict[str, str]:
    """``video/image`` -> ``<role>:<digest of the frame's landmarks and positions>`` for each frame of the set."""
    roles = {**{frame: "test" for frame in frame_set.test}, **{frame: "train" for frame in frame_set.train}}
    rows = labels[["video", "image", "landmark", "x_px", "y_px"]].copy()
    rows["video"], rows["image"] = rows["video"].astype(str), rows["image"].astype(str)
    rows = rows[[(video, image) in roles for video, image in zip(rows["video"], rows["image"])]]
    digests = {}
    for (video, image), frame in rows.sort_values(["video", "image", "landmark"]).groupby(["video", "image"]):
        text = "\n".join(f"{landmark},{_position(x)},{_position(y)}"
                         for landmark, x, y in zip(frame["landmark"], frame["x_px"], frame["y_px"]))
        digests[f"{video}/{image}"] = f"{roles[(video, image)]}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    for video, image in roles:  # a frame of the set without a row in the table: recorded as such
        digests.setdefault(f"{video}/{image}", f"{roles[(video, image)]}:no labels")
    return dict(sorted(digests.items()))


def _position(value: float) -> str:
    return "nan" if pd.isna(value) else f"{np.round(float(value), DIGEST_DECIMALS):.{DIGEST_DECIMALS}f}"


def record_labels_trained_on(layout: RunLayout, frame_set: FrameSet, labels: pd.DataFrame) -> None:
    """Record what the frame set's training data was made from, unless an earlier attempt already did."""
    target = layout.labels_trained_on_file(frame_set.frame_set_size)
    if not target.exists():
        write_json_atomic(target, {"frame_set_size": frame_set.frame_set_size,
                                   "frames": frame_label_digests(labels, frame_set)})


def check_labels_unchanged(layout: RunLayout, frame_set: FrameSet, labels: pd.DataFrame) -> None:
    """Refuse a frame set whose labels or split differ from what its training data was made from (nothing to
    compare where no record was written: a run made before posesweep kept one)."""
    record_file = layout.labels_trained_on_file(frame_set.frame_set_size)
    if not record_file.exists():
        return
    before = read_json(record_file)["frames"]
    now = frame_label_digests(labels, frame_set)
    relabelled = sorted(f for f in before.keys() & now.keys() if before[f].split(":")[1] != now[f].split(":")[1])
    moved = sorted(f for f in before.keys() & now.keys() if before[f].split(":")[0] != now[f].split(":")[0])
    added, removed = sorted(now.keys() - before.keys()), sorted(before.keys() - now.keys())
    if not (relabelled or moved or added or removed):
        return
    size = frame_set.frame_set_size
    changes = [(frames, what) for frames, what in ((relabelled, "with other labels"),
                                                   (moved, "moved between train and test"),
                                                   (added, "new in the set"), (removed, "no longer in the set"))
               if frames]
    raise LabelsChangedSinceTrainingError(
        f"frame set {size}: its labels changed after the run made its training data from them",
        file=_label_files(layout, relabelled + moved + added + removed),
        found=", ".join(f"{len(frames)} frame{'s' if len(frames) > 1 else ''} {what}" for frames, what in changes)
        + f", compared with {record_file}",
        allowed="the labels the run's training data was made from: a run trains each network once, and its later "
                "stages (training, scoring, the report) would otherwise pair networks with labels they never saw",
        fix="trigger a new run of the DAG to train on the labels as they are now (it makes its own run folder); "
            "this run's networks and report stay as they were, made from the labels it was given",
        details=[f"{what}: {_listed(frames)}" for frames, what in changes])


def _listed(frames: list[str], shown: int = 5) -> str:
    return ", ".join(frames[:shown]) + (f", ... ({len(frames)} in all)" if len(frames) > shown else "")


def _label_files(layout: RunLayout, frames: list[str]) -> str | None:
    """The lab's label files of the changed frames' videos, as ``label_frames`` last read them."""
    sources = read_json(layout.label_sources_file) if layout.label_sources_file.exists() else {}
    files = sorted({str(sources[f.split("/")[0]]) for f in frames if f.split("/")[0] in sources})
    return ", ".join(files) if files else None
