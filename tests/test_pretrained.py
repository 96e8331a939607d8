"""Where each engine's ImageNet weights lie, found without importing TensorFlow, torch, timm or DeepLabCut."""

import json
import os
import subprocess
import sys

from posesweep.config import NETWORKS
from posesweep.pretrained import TENSORFLOW_CHECKPOINT, TIMM_HUB_ID, TIMM_MODEL, TIMM_WEIGHT_FILES

# prints what weights_problem says for each engine, and which heavy libraries that imported
LOOK = """
import json, sys
from posesweep.config import StudyConfig
from posesweep.pretrained import weights_problem
said = {}
for engine in ("tensorflow", "pytorch"):
    for allowed in (False, True):
        problem = weights_problem(StudyConfig(engine=engine, allow_random_init=allowed))
        said[f"{engine} {allowed}"] = problem.explain() if problem else None
heavy = sorted(m for m in ("tensorflow", "torch", "timm", "deeplabcut") if m in sys.modules)
print(json.dumps({"said": said, "heavy": heavy}))
"""


def _look(tmp_path, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "POSESWEEP_PRETRAINED_CHECKPOINT"}
    done = subprocess.run([sys.executable, "-c", LOOK], env={**clean, "HF_HUB_CACHE": str(tmp_path / "hub"), **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_weights_are_looked_for_where_deeplabcut_and_timm_keep_them():
    import importlib.util

    import timm
    from deeplabcut.utils import auxfun_models
    from deeplabcut.utils.auxiliaryfunctions import get_deeplabcut_path

    for network, path in TENSORFLOW_CHECKPOINT.items():
        assert str(auxfun_models.MODELTYPE_FILEPATH_MAP[network]) == path
    assert str(get_deeplabcut_path()) == list(importlib.util.find_spec("deeplabcut").submodule_search_locations)[0]
    assert set(TIMM_MODEL) == set(NETWORKS)
    for timm_model in TIMM_MODEL.values():
        assert TIMM_HUB_ID[timm_model] == timm.models.get_pretrained_cfg(timm_model).hf_hub_id


def test_without_weights_on_this_machine_each_engine_says_so_unless_random_weights_are_allowed(tmp_path):
    looked = _look(tmp_path)
    assert looked["heavy"] == []  # prepare_run asks in the Airflow worker: 6 s and 1 GB of imports otherwise
    said = looked["said"]
    assert "no ImageNet-pretrained resnet_50 checkpoint on this machine" in said["tensorflow False"]
    assert "no ImageNet weights of resnet50_gn in the local Hugging Face cache" in said["pytorch False"]
    assert f"nothing for resnet50_gn (timm/resnet50_gn.a1h_in1k) under {tmp_path / 'hub'}" in said["pytorch False"]
    assert "allow_random_init=true" in said["pytorch False"]
    assert said["tensorflow True"] is None and said["pytorch True"] is None


def test_a_checkpoint_named_that_is_not_there_is_said_even_where_random_weights_are_allowed(tmp_path):
    said = _look(tmp_path, POSESWEEP_PRETRAINED_CHECKPOINT=str(tmp_path / "resnet_v1_50.ckpt"))["said"]
    assert f"File: {tmp_path / 'resnet_v1_50.ckpt'}.index" in said["tensorflow True"]
    assert said["pytorch True"] is None  # the PyTorch engine never reads a TF checkpoint


def test_timms_weights_in_the_hugging_face_cache_are_found_where_huggingface_hub_puts_them(tmp_path):
    """The cache's own layout (models--<org>--<name>/refs/main, snapshots/<commit>/<file>), as a trainer image's
    build leaves it (docker/trainer-pytorch/Dockerfile)."""
    repo = tmp_path / "hub" / f"models--{TIMM_HUB_ID['resnet50_gn'].replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / TIMM_WEIGHT_FILES[0]).write_bytes(b"weights")
    said = _look(tmp_path)["said"]
    assert said["pytorch False"] is None
    assert said["tensorflow False"] is not None  # the other engine's weights are still missing
