"""What both engines' DeepLabCut shuffles share: the split's name and DeepLabCut's merged label table.

A frame set becomes one DeepLabCut shuffle whose train and test frames are given
by their positions in the label table DeepLabCut merges from every
``labeled-data`` folder (``merge_annotateddatasets``).
"""

from __future__ import annotations

from pathlib import Path

from .errors import TrainingFailedError
from .splits import FrameSet

# written after posesweep's last edit of a shuffle's configuration: a shuffle without it is created again
DATASET_DONE = "posesweep_dataset.done"


def train_fraction_of(frame_set: FrameSet) -> float:
    """DeepLabCut's name for the split: the rounded train share."""
    return round(len(frame_set.train) / (len(frame_set.train) + len(frame_set.test)), 2)


def model_folder(project_config: Path, frame_set: FrameSet, engine) -> Path:
    """The shuffle's ``dlc-models[-pytorch]/iteration-0/<task>-trainset<pct>shuffle<n>`` folder."""
    from deeplabcut.utils import auxiliaryfunctions

    cfg = auxiliaryfunctions.read_config(str(project_config))
    return Path(cfg["project_path"]) / auxiliaryfunctions.get_model_folder(
        train_fraction_of(frame_set), frame_set.shuffle, cfg, engine=engine)


def frame_positions(project_config: Path, frame_sets: list[FrameSet]) -> dict[tuple[str, str], int]:
    """Record the frame sets' splits in config.yaml, merge DeepLabCut's label table, and return each
    (video stem, image)'s row in it; every frame of every set must be there."""
    from deeplabcut.generate_training_dataset.trainingsetmanipulation import merge_annotateddatasets
    from deeplabcut.utils import auxiliaryfunctions

    cfg = auxiliaryfunctions.read_config(str(project_config))
    cfg["TrainingFraction"] = sorted({train_fraction_of(fs) for fs in frame_sets})
    auxiliaryfunctions.write_config(str(project_config), cfg)
    folder = Path(cfg["project_path"]) / auxiliaryfunctions.get_training_set_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    data = merge_annotateddatasets(cfg, folder)
    if data is None:
        raise TrainingFailedError(f"DeepLabCut found no labels under {Path(cfg['project_path']) / 'labeled-data'}")
    position = {(stem, image): i for i, (_, stem, image) in enumerate(data.index)}
    missing = [f for fs in frame_sets for f in fs.train + fs.test if f not in position]
    if missing:
        raise TrainingFailedError(f"frames not in DeepLabCut's label table: {missing[:5]}")
    return position
