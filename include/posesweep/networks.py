"""The trained networks as DeepLabCut addresses them, so a lab analyses new videos with the one it chose.

``deeplabcut.analyze_videos`` finds a snapshot by the project's ``config.yaml``, the
shuffle, the position of the shuffle's train fraction in config.yaml's
``TrainingFraction`` (``trainingsetindex``) and the snapshot's position among the
shuffle's snapshots sorted by iteration (``snapshotindex``: the TensorFlow engine
reads it from config.yaml, the PyTorch engine takes it as ``snapshot_index``).
Snapshot files are listed by DeepLabCut's own rules: TensorFlow checkpoints by their
``.index`` file, PyTorch ``snapshot-<n>.pt`` files.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .layout import RunLayout, read_json
from .shuffles import train_fraction_of
from .splits import FrameSet

SNAPSHOT_NAME = {"tensorflow": re.compile(r"snapshot-(\d+)\.index"), "pytorch": re.compile(r"snapshot-(\d+)\.pt")}


def snapshot_index(train_dir: Path, iteration: int, engine: str) -> int:
    """The snapshot's position in DeepLabCut's list of the shuffle's snapshots (sorted by iteration)."""
    found = sorted(int(m.group(1)) for p in Path(train_dir).iterdir() if (m := SNAPSHOT_NAME[engine].fullmatch(p.name)))
    return found.index(iteration)


def network_addresses(layout: RunLayout, frame_sets: list[FrameSet], iteration: int, engine: str) -> list[dict]:
    """Per network (frame set), where its snapshot at ``iteration`` is and how DeepLabCut addresses it."""
    fractions = list(yaml.safe_load((layout.project_dir / "config.yaml").read_text())["TrainingFraction"])
    rows = []
    for frame_set in frame_sets:
        train_dir = Path(read_json(layout.training_dir(frame_set.frame_set_size) / "training.json")["train_dir"])
        rows.append({"frame_set_size": frame_set.frame_set_size, "snapshot_iteration": iteration,
                     "shuffle": frame_set.shuffle, "trainingsetindex": fractions.index(train_fraction_of(frame_set)),
                     "snapshotindex": snapshot_index(train_dir, iteration, engine),
                     "snapshot": str(train_dir / (f"snapshot-{iteration}" + (".pt" if engine == "pytorch" else "")))})
    return rows


def analyze_videos_call(config_file: Path, network: dict, engine: str) -> str:
    """The lines a lab runs to analyse its videos with ``network`` in DeepLabCut."""
    common = (f'deeplabcut.analyze_videos("{config_file}", ["/path/to/video.mp4"], shuffle={network["shuffle"]}, '
              f'trainingsetindex={network["trainingsetindex"]}')
    if engine == "pytorch":
        return f"import deeplabcut\n{common}, snapshot_index={network['snapshotindex']})"
    return (f"# in {config_file}: snapshotindex: {network['snapshotindex']}\n"
            f"import deeplabcut\n{common})")
