"""Nested frame sets with a train/test split each, as in the study.

The labeled frames are shuffled once (seeded); the frame set of size n is the
first n frames of that order, so every smaller set lies inside the larger ones.
Inside each set a seeded random split keeps ``train_fraction`` for training
(the paper's 90/10). The result is saved with the run and reused by training
and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FrameId = tuple[str, str]  # (video stem, image name)


class FrameSetError(ValueError):
    """Frame sets cannot be built from the labeled frames; the message says why."""


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


def build_frame_sets(frames: list[FrameId], sizes: list[int], train_fraction: float, seed: int) -> list[FrameSet]:
    frames = sorted(frames)
    if max(sizes) > len(frames):
        raise FrameSetError(f"frame_set_sizes {list(sizes)} ask for up to {max(sizes)} frames, "
                            f"but only {len(frames)} frames are labeled")
    order = np.random.default_rng(seed).permutation(len(frames))
    out = []
    for shuffle, size in enumerate(sorted(sizes), start=1):
        members = [frames[i] for i in order[:size]]
        n_test = int(round(size * (1 - train_fraction)))
        if n_test < 1 or n_test >= size:
            raise FrameSetError(f"train_fraction {train_fraction} leaves no train or test frames for {size} frames")
        split = np.random.default_rng([seed, size]).permutation(size)
        test = tuple(sorted(members[i] for i in split[:n_test]))
        train = tuple(sorted(members[i] for i in split[n_test:]))
        out.append(FrameSet(size, shuffle, train, test))
    return out
