"""Where the ImageNet-pretrained weights a network starts from lie on this machine, found without importing
TensorFlow, torch, timm or DeepLabCut, so that ``prepare_run`` can ask before any work (a cohort's frame
extraction can take an hour) and the training stages ask again where they load them.

The TensorFlow engine starts from a TF-slim checkpoint: the one ``POSESWEEP_PRETRAINED_CHECKPOINT`` names, else
the one a trainer image bakes into DeepLabCut's ``models/pretrained`` folder. The PyTorch engine starts from timm's
ImageNet weights of the backbone, already in the local Hugging Face cache. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import yaml

from .config import StudyConfig
from .errors import WeightsUnavailableError
from .settings import Settings

PRETRAINED_ENV = "POSESWEEP_PRETRAINED_CHECKPOINT"  # named in messages; read through settings
# DeepLabCut's MODELTYPE_FILEPATH_MAP (deeplabcut.utils.auxfun_models), under its package folder; importing that
# module takes 6 s and 1 GB (it loads torch), so the paths are kept here and a test holds them equal to DeepLabCut's
TENSORFLOW_CHECKPOINT = {"resnet_50": "pose_estimation_tensorflow/models/pretrained/resnet_v1_50.ckpt",
                         "resnet_101": "pose_estimation_tensorflow/models/pretrained/resnet_v1_101.ckpt"}
# the timm backbone of each network on the PyTorch engine, and the Hugging Face repository of its default ImageNet
# weights (timm.models.get_pretrained_cfg(model).hf_hub_id, held equal by a test)
TIMM_MODEL = {"resnet_50": "resnet50_gn", "resnet_50_bn": "resnet50", "resnet_101": "resnet101"}
TIMM_HUB_ID = {"resnet50_gn": "timm/resnet50_gn.a1h_in1k", "resnet50": "timm/resnet50.a1_in1k",
               "resnet101": "timm/resnet101.a1h_in1k"}
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def checkpoint_exists(prefix: str | Path) -> bool:
    """A TensorFlow checkpoint at ``prefix``: TF 1.x's current format (``<prefix>.index`` beside its data), or the
    single file of the format before it, which TF-slim's ImageNet ResNets are (``resnet_v1_50_2016_08_28.tar.gz``
    holds ``resnet_v1_50.ckpt`` alone, and DeepLabCut downloads and restores exactly that file). Looking for the
    ``.index`` alone refused the checkpoint every DeepLabCut install and the trainer image use."""
    return Path(f"{prefix}.index").exists() or Path(prefix).is_file()


def tensorflow_checkpoint(network: str) -> str | None:
    """The TF checkpoint prefix to start from, or None; a ``POSESWEEP_PRETRAINED_CHECKPOINT`` naming nothing fails."""
    explicit = Settings.from_env().pretrained_checkpoint
    if explicit:
        if not checkpoint_exists(explicit):
            raise WeightsUnavailableError(f"{PRETRAINED_ENV} names no checkpoint", file=explicit,
                                          found=f"neither that file nor {Path(explicit).name}.index beside it "
                                                f"exists",
                                          allowed="a TensorFlow checkpoint: TF-slim's single file (the "
                                                  "resnet_v1_50.ckpt that resnet_v1_50_2016_08_28.tar.gz holds), "
                                                  "or a prefix with <prefix>.index and its data beside it",
                                          fix=f"point {PRETRAINED_ENV} at e.g. /weights/resnet_v1_50.ckpt")
        return explicit
    folder = _deeplabcut_folder()
    if folder is None:
        return None
    baked = folder / TENSORFLOW_CHECKPOINT[network]
    return str(baked) if checkpoint_exists(baked) else None


def timm_weights_file(timm_model: str) -> str | None:
    """The local Hugging Face cache file of timm's ImageNet weights for the model, if present (no download)."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = TIMM_HUB_ID.get(timm_model)
    for filename in TIMM_WEIGHT_FILES if hub_id else ():
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def unavailable(engine: str, network: str) -> WeightsUnavailableError:
    """The failure of a run whose network has no pretrained weights here and may not start from random ones."""
    if engine == "pytorch":
        from huggingface_hub import constants

        timm_model = TIMM_MODEL[network]
        return WeightsUnavailableError(
            f"no ImageNet weights of {timm_model} in the local Hugging Face cache",
            found=f"nothing for {timm_model} ({TIMM_HUB_ID[timm_model]}) under {constants.HF_HUB_CACHE}",
            allowed="timm's ImageNet weights already cached (posesweep downloads nothing), or random weights",
            fix=f"once, on this machine with internet: {sys.executable} -c \"from huggingface_hub import "
                f"hf_hub_download; hf_hub_download('{TIMM_HUB_ID[timm_model]}', '{TIMM_WEIGHT_FILES[0]}', "
                f"cache_dir='{constants.HF_HUB_CACHE}')\" (the trainer image "
                f"bakes them in so: docker/trainer-pytorch/Dockerfile); offline: copy a Hugging Face cache that "
                f"holds them to {constants.HF_HUB_CACHE}; or trigger the run with allow_random_init=true to train "
                f"from random weights (errors far above those of pretrained networks: a trial of the pipeline, "
                f"not results)",
            parameters={"allow_random_init": True})
    folder = _deeplabcut_folder()
    pretrained_dir = (folder / TENSORFLOW_CHECKPOINT[network]).parent if folder else None
    url = (pretrained_dir and _checkpoint_url(pretrained_dir, network)) or "TF-slim's resnet_v1 checkpoint"
    fetch = f"curl -fsSL {url} | tar xz -C {pretrained_dir}" if pretrained_dir else f"download {url}"
    return WeightsUnavailableError(
        f"no ImageNet-pretrained {network} checkpoint on this machine", found=f"{PRETRAINED_ENV} unset and "
        f"no checkpoint in DeepLabCut's models/pretrained folder ({pretrained_dir})",
        allowed=f"TF-slim's ImageNet checkpoint ({Path(TENSORFLOW_CHECKPOINT[network]).name}, the file DeepLabCut "
                f"downloads), where DeepLabCut keeps it or named by {PRETRAINED_ENV}; posesweep downloads nothing",
        fix=f"once, on this machine with internet: {fetch} (what docker/trainer/Dockerfile does); offline: "
            f"unpack {url.rsplit('/', 1)[-1]} elsewhere, copy its {Path(TENSORFLOW_CHECKPOINT[network]).name} "
            f"here and set {PRETRAINED_ENV} to that file; or trigger with allow_random_init=true to train from "
            f"random weights (errors will be far above the paper's; from random weights DeepLabCut 3's PyTorch "
            f"engine, engine=pytorch, learns in far fewer iterations: README, 'Initial weights')",
        parameters={"allow_random_init": True})


def _deeplabcut_folder() -> Path | None:
    """DeepLabCut's package folder, found without importing it."""
    spec = importlib.util.find_spec("deeplabcut")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _checkpoint_url(pretrained_dir: Path, network: str) -> str | None:
    """Where DeepLabCut downloads the network's TF-slim ImageNet checkpoint from (its own
    ``models/pretrained/pretrained_model_urls.yaml``), or None where that file is not there to say."""
    urls_file = pretrained_dir / "pretrained_model_urls.yaml"
    if not urls_file.is_file():
        return None
    url = (yaml.safe_load(urls_file.read_text(encoding="utf-8")) or {}).get(network)
    return str(url) if url else None


def weights_problem(study: StudyConfig) -> WeightsUnavailableError | None:
    """What keeps the run's networks from their initial weights on this machine, or None."""
    try:
        found = (timm_weights_file(TIMM_MODEL[study.network]) if study.engine == "pytorch"
                 else tensorflow_checkpoint(study.network))
    except WeightsUnavailableError as problem:
        return problem
    return None if found or study.allow_random_init else unavailable(study.engine, study.network)
