"""DeepLabCut's PyTorch shuffle of each frame set, its model configuration, and the initial weights.

``create_training_dataset(engine=PYTORCH)`` writes the shuffle with exactly the frame
set's train and test frames and DeepLabCut's ``pytorch_config.yaml``. posesweep then
sets what the study fixes, so that DeepLabCut's own ``train_network`` on the same
shuffle trains the same thing (the throughput benchmark does that):

- full frames, as the paper trained (DeepLabCut 3 would crop 448x448 patches):
  ``crop_sampling`` off; ``motion_blur`` off (posesweep's device augmentation has
  affine and pixel noise);
- the batch size, and the backbone: ``resnet_50`` is DeepLabCut's (timm
  ``resnet50_gn``, GroupNorm), ``resnet_50_bn`` timm's BatchNorm ``resnet50`` through
  the same backbone entry, ``resnet_101`` DeepLabCut's.

Initial weights: timm's ImageNet weights when they are already in the local Hugging
Face cache (nothing is downloaded), else, if the run allows it, the same ``PoseModel``
with random weights (seeded). Either way they are written once, as a DeepLabCut
snapshot (``{"model": state_dict}``), and every frame set starts from that file.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import yaml

from ..config import DLC_NET_TYPE, StudyConfig
from ..layout import atomic_path, write_text_atomic
from ..pretrained import TIMM_MODEL, timm_weights_file, unavailable
from ..quiet import library_prints_silenced
from ..shuffles import DATASET_DONE, frame_positions, model_folder
from ..splits import FrameSet

log = logging.getLogger(__name__)


def _pytorch_engine():
    from deeplabcut.core.engine import Engine

    return Engine.PYTORCH


def model_config_path(project_config: Path, frame_set: FrameSet) -> Path:
    """The shuffle's ``dlc-models-pytorch/.../train/pytorch_config.yaml``."""
    return model_folder(project_config, frame_set, _pytorch_engine()) / "train" / "pytorch_config.yaml"


def read_model_config(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def study_edits(model_cfg: dict, study: StudyConfig) -> dict:
    """The model configuration with what the study fixes (see the module's docstring)."""
    cfg = copy.deepcopy(model_cfg)
    cfg["model"]["backbone"]["model_name"] = TIMM_MODEL[study.network]
    train = cfg["data"]["train"]
    train["crop_sampling"] = None
    train["motion_blur"] = False
    cfg["train_settings"]["batch_size"] = study.batch_size
    cfg["train_settings"]["seed"] = study.seed
    return cfg


def create_shuffles(project_config: Path, frame_sets: list[FrameSet], study: StudyConfig) -> None:
    """One DeepLabCut PyTorch shuffle per frame set, with exactly its train/test frames; done ones are skipped."""
    import deeplabcut

    position = frame_positions(project_config, frame_sets)
    for fs in frame_sets:
        config_path = model_config_path(project_config, fs)
        done = config_path.with_name(DATASET_DONE)
        if done.exists():
            log.info("frame set %d: DeepLabCut PyTorch shuffle %d already exists, skipped", fs.frame_set_size,
                     fs.shuffle)
            continue
        with library_prints_silenced():
            deeplabcut.create_training_dataset(
                str(project_config), Shuffles=[fs.shuffle], trainIndices=[[position[f] for f in fs.train]],
                testIndices=[[position[f] for f in fs.test]], net_type=DLC_NET_TYPE[study.network],
                augmenter_type="albumentations", engine=_pytorch_engine(), userfeedback=False)
        edited = study_edits(read_model_config(config_path), study)
        write_text_atomic(config_path, yaml.safe_dump(edited, sort_keys=False))
        write_text_atomic(done, "DeepLabCut's PyTorch shuffle and posesweep's edits of pytorch_config.yaml are "
                                "complete\n")
        log.info("frame set %d: PyTorch shuffle %d with %d train / %d test frames (%s)", fs.frame_set_size,
                 fs.shuffle, len(fs.train), len(fs.test), TIMM_MODEL[study.network])


def build_model(model_cfg: dict, imagenet: bool = False):
    """DeepLabCut's ``PoseModel`` for the configuration; ImageNet backbone weights only from the local cache."""
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    if imagenet:
        os.environ["HF_HUB_OFFLINE"] = "1"  # the weights are cached; never reach out for them
    return PoseModel.build(copy.deepcopy(model_cfg["model"]), pretrained_backbone=imagenet)


def write_initial_weights(model_cfg: dict, study: StudyConfig, target: Path) -> dict:
    """The run's initial weights as a DeepLabCut snapshot; returns ``{"path", "kind"}``."""
    import torch

    timm_model = model_cfg["model"]["backbone"]["model_name"]
    cached = timm_weights_file(timm_model)
    if cached is None and not study.allow_random_init:
        raise unavailable("pytorch", study.network)
    torch.manual_seed(study.seed)
    model = build_model(model_cfg, imagenet=cached is not None)
    kind = "imagenet" if cached else "random_init"
    if kind == "random_init":
        log.warning("no ImageNet weights of %s cached: starting from random weights (errors will be far above "
                    "the paper's; the report says so)", timm_model)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save({"model": model.state_dict(), "metadata": {"initial_weights": kind, "backbone": timm_model}}, tmp)
    return {"path": str(target), "kind": kind}
