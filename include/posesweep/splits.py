"""Nested frame sets with a train/test split each.

The labeled frames are shuffled once (seeded); every smaller frame set lies
inside the larger ones. Split modes:

* ``paper``: the frame set of size n is the first n frames of that order, split
  at random (seeded) inside the set, ``train_fraction`` for training: the study's
  design, where every size has its own test frames.
* ``fixed_test``: one test set, ``round(smallest size x (1 - train_fraction))``
  frames, shared by all sizes; a set of size n adds the first n - |test| training
  frames. Sizes are then compared on the same frames.
* ``by_participant``: the test set is every frame of held-out participants, about
  ``1 - train_fraction`` of the smallest set; training frames come from the other
  participants only: generalisation to people never seen. A participant is a video,
  or, where the cohort says how video names name participants (several trials per
  person), all of that person's videos.

The result is saved with the run and reused by training and evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import count_test_frames
from .errors import FrameSetError
from .layout import RunLayout, read_csv_table

FrameId = tuple[str, str]  # (video stem, image name)


@dataclass(frozen=True)
class FrameSet:
    frame_set_size: int
    shuffle: int  # DeepLabCut shuffle index of this network
    train: tuple[FrameId, ...]
    test: tuple[FrameId, ...]

    def to_json_dict(self) -> dict:
        return {"frame_set_size": self.frame_set_size, "shuffle": self.shuffle,
                "train": [list(f) for f in self.train], "test": [list(f) for f in self.test]}

    @classmethod
    def from_json_dict(cls, d: dict) -> "FrameSet":
        return cls(int(d["frame_set_size"]), int(d["shuffle"]),
                   tuple(tuple(f) for f in d["train"]), tuple(tuple(f) for f in d["test"]))


def labeled_frames(label_table: pd.DataFrame) -> list[FrameId]:
    frames = label_table[["video", "image"]].drop_duplicates().sort_values(["video", "image"])
    return [tuple(row) for row in frames.itertuples(index=False, name=None)]


SPLIT_MODES = ("paper", "fixed_test", "by_participant")


def check_participants_to_hold_out(split_mode: str, participants: list[str], cohort_dir: Path | None = None) -> None:
    """by_participant trains on some participants and tests on others: refuse fewer than two, before anyone labels
    (``stages.prepare_run``, from the cohort's videos) and again from the labeled frames."""
    people = sorted(set(participants))
    if split_mode == "by_participant" and len(people) < 2:
        raise FrameSetError("split_mode by_participant needs at least 2 participants: one to train on, one to test "
                            "on", file=cohort_dir, found=f"{len(people)} participant(s): {', '.join(people) or 'none'}",
                            allowed="2 or more",
                            fix="choose split_mode paper or fixed_test, or add participants' videos (where one "
                                "participant has several videos, cohort.json's participant_pattern says whose)")


def build_frame_sets(frames: list[FrameId], sizes: list[int], train_fraction: float, seed: int,
                     split_mode: str = "paper", participant_of: dict[str, str] | None = None) -> list[FrameSet]:
    """``participant_of``: video stem -> participant (by_participant; default: each video its own)."""
    frames = sorted(frames)
    if max(sizes) > len(frames):
        raise FrameSetError(f"frame_set_sizes {list(sizes)} ask for up to {max(sizes)} frames, "
                            f"but only {len(frames)} frames are labeled")
    if split_mode == "paper":
        return _paper_splits(frames, sorted(sizes), train_fraction, seed)
    if split_mode == "fixed_test":
        order = [frames[i] for i in np.random.default_rng(seed).permutation(len(frames))]
        n_test = count_test_frames(min(sizes), train_fraction)
        return _shared_test_splits(order[:n_test], order[n_test:], sorted(sizes))
    if split_mode == "by_participant":
        return _by_participant_splits(frames, sorted(sizes), train_fraction, seed, participant_of or {})
    raise FrameSetError(f"split_mode {split_mode!r}: choose one of {SPLIT_MODES}")


def _shared_test_splits(test: list[FrameId], train_order: list[FrameId], sizes: list[int]) -> list[FrameSet]:
    out = []
    for shuffle, size in enumerate(sizes, start=1):
        n_train = size - len(test)
        if n_train < 1 or n_train > len(train_order):
            raise FrameSetError(f"frame set {size}: {len(test)} shared test frames leave {n_train} training "
                                f"frames (of {len(train_order)} available)")
        out.append(FrameSet(size, shuffle, tuple(sorted(train_order[:n_train])), tuple(sorted(test))))
    return out


def _by_participant_splits(frames: list[FrameId], sizes: list[int], train_fraction: float, seed: int,
                           participant_of: dict[str, str]) -> list[FrameSet]:
    person = {video: participant_of.get(video, video) for video, _ in frames}
    participants = sorted(set(person.values()))
    check_participants_to_hold_out("by_participant", participants)
    rng = np.random.default_rng(seed)
    wanted = max(1, count_test_frames(min(sizes), train_fraction))
    test: list[FrameId] = []
    held_out = []
    for index in rng.permutation(len(participants)):
        if len(test) >= wanted or len(held_out) == len(participants) - 1:
            break
        held_out.append(participants[index])
        test += [f for f in frames if person[f[0]] == participants[index]]
    rest = [f for f in frames if person[f[0]] not in held_out]
    train_order = [rest[i] for i in rng.permutation(len(rest))]
    return _shared_test_splits(test, train_order, sizes)


def _paper_splits(frames: list[FrameId], sizes: list[int], train_fraction: float, seed: int) -> list[FrameSet]:
    order = np.random.default_rng(seed).permutation(len(frames))
    out = []
    for shuffle, size in enumerate(sizes, start=1):
        members = [frames[i] for i in order[:size]]
        n_test = count_test_frames(size, train_fraction)
        if n_test < 1 or n_test >= size:
            raise FrameSetError(f"train_fraction {train_fraction} leaves no train or test frames for {size} frames")
        split = np.random.default_rng([seed, size]).permutation(size)
        test = tuple(sorted(members[i] for i in split[:n_test]))
        train = tuple(sorted(members[i] for i in split[n_test:]))
        out.append(FrameSet(size, shuffle, train, test))
    return out


# below this many test frames a network's test error is a few frames' and moves with the frames the split drew
# (the paper's smallest set, 200 frames at 90/10, tests on 20)
FEW_TEST_FRAMES = 5


def few_test_frames_warning(frame_sets: list[FrameSet], train_fraction: float, split_mode: str) -> str | None:
    """What to say where a frame set tests on fewer than ``FEW_TEST_FRAMES`` frames, with the train_fraction that
    gives the smallest set that many (where it leaves at least half for training); None where every set has them."""
    few = [fs for fs in frame_sets if len(fs.test) < FEW_TEST_FRAMES]
    if not few:
        return None
    named = ", ".join(f"{fs.frame_set_size} ({len(fs.test)} test frame{'s' if len(fs.test) != 1 else ''})"
                      for fs in few)
    smallest = min(fs.frame_set_size for fs in frame_sets)
    fraction = next((f / 100 for f in range(math.floor(train_fraction * 100), 49, -1)  # as the splits round
                     if count_test_frames(smallest, f / 100) >= FEW_TEST_FRAMES), 0.0)
    lower = (f", or a lower train_fraction (train_fraction={fraction:g} tests the {smallest}-frame set on "
             f"{FEW_TEST_FRAMES} or more; now {train_fraction:g})") if 0.5 <= fraction < train_fraction else ""
    shared = " (shared by every frame set: split_mode " + split_mode + ")" if split_mode != "paper" else ""
    return (f"frame set{'s' if len(few) > 1 else ''} {named} test{'s' if len(few) == 1 else ''} on fewer than "
            f"{FEW_TEST_FRAMES} frames{shared}: such a test error is those frames' alone and moves with the frames "
            f"the split drew (the paper tests its smallest set, 200 frames, on 20); read the comparisons of frame "
            f"sets with that in mind. More labeled frames with larger frame_set_sizes give each set more test "
            f"frames{lower}")


def landmarks_unlabeled_warning(frame_sets: list[FrameSet], label_table: pd.DataFrame) -> str | None:
    """What to say where a landmark is labeled in none of a frame set's training or test frames (a landmark often
    out of sight, a small set): its network is never shown it, or its test error leaves it out; None where every
    set has a label of every landmark on both sides of its split."""
    labeled = label_table.dropna(subset=["x_px", "y_px"])
    seen: dict[FrameId, set[str]] = {}
    for video, image, landmark in labeled[["video", "image", "landmark"]].itertuples(index=False, name=None):
        seen.setdefault((str(video), str(image)), set()).add(str(landmark))
    landmarks = [str(name) for name in pd.unique(label_table["landmark"])]
    sentences = []
    for side, meaning in (("training", "which its network is then never shown"),
                          ("test", "which its test error then leaves out (the statistics compare frame sets on "
                                   "the landmarks every one tests)")):
        named = []
        for fs in frame_sets:
            frames = fs.train if side == "training" else fs.test
            present = set().union(*(seen.get(frame, set()) for frame in frames))
            if missing := [name for name in landmarks if name not in present]:
                named.append(f"frame set {fs.frame_set_size}: {', '.join(missing)} (of {len(frames)} frames)")
        if named:
            sentences.append(f"Landmarks labeled in none of a frame set's {side} frames, {meaning}: "
                             + "; ".join(named))
    if not sentences:
        return None
    return (". ".join(sentences) + ". Labeling those landmarks in more frames where they are in sight (DeepLabCut's "
            "labeling GUI), or larger frame_set_sizes, gives every set some")


def largest_frame(layout: RunLayout, frame_set: FrameSet) -> tuple[int, int]:
    """The width and height in px of the frame set's largest training frame, from the validated label table."""
    labels = read_csv_table(layout.validated_labels_file, usecols=["video", "image", "image_width_px",
                                                                    "image_height_px"])
    train = set(frame_set.train)
    labels = labels[[frame in train for frame in zip(labels["video"], labels["image"])]]
    return int(labels["image_width_px"].max()), int(labels["image_height_px"].max())
