"""Where each engine's ImageNet weights lie, found without importing TensorFlow, torch, timm or DeepLabCut."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def deeplabcut_folder() -> str:
    import importlib.util

    return list(importlib.util.find_spec("deeplabcut").submodule_search_locations)[0]


# TF-slim's ImageNet ResNets (resnet_v1_50_2016_08_28.tar.gz, which DeepLabCut downloads and the trainer image
# bakes in) are checkpoints of TensorFlow's first format: one file, resnet_v1_50.ckpt, with no .index beside it.
# TensorFlow's own V1 saver writes one; given a checkpoint, with that checkpoint's variables and values
AS_TF_SLIM_WRITES_IT = """
import os, sys
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
source, target = sys.argv[1], sys.argv[2]
values = ({name: tf.train.load_checkpoint(source).get_tensor(name) for name, _ in tf.train.list_variables(source)}
          if source else {"resnet_v1_50/conv1/weights": [[1.0, 2.0]]})
with tf.Graph().as_default():
    variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(value)) for name, value in values.items()]
    with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        saver = tf.compat.v1.train.Saver(variables, write_version=tf.compat.v1.train.SaverDef.V1)
        saver.save(session, target, write_meta_graph=False)
os.remove(os.path.join(os.path.dirname(target), "checkpoint"))  # the tarball holds the .ckpt alone
"""


def tf_slim_checkpoint(target: Path, source: Path | None = None) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", AS_TF_SLIM_WRITES_IT, str(source or ""), str(target)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # one file, as in the tarball
    return target


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
    # where to get them, once: the URL DeepLabCut itself downloads from, unpacked where DeepLabCut looks
    assert ("curl -fsSL http://download.tensorflow.org/models/resnet_v1_50_2016_08_28.tar.gz | tar xz -C "
            f"{Path(deeplabcut_folder()) / 'pose_estimation_tensorflow' / 'models' / 'pretrained'}") \
        in said["tensorflow False"]
    assert (f"hf_hub_download('timm/resnet50_gn.a1h_in1k', 'model.safetensors', cache_dir='{tmp_path / 'hub'}')"
            in said["pytorch False"])
    assert said["tensorflow True"] is None and said["pytorch True"] is None


def test_a_checkpoint_named_that_is_not_there_is_said_even_where_random_weights_are_allowed(tmp_path):
    said = _look(tmp_path, POSESWEEP_PRETRAINED_CHECKPOINT=str(tmp_path / "resnet_v1_50.ckpt"))["said"]
    assert f"File: {tmp_path / 'resnet_v1_50.ckpt'}\n" in said["tensorflow True"]
    assert "neither that file nor resnet_v1_50.ckpt.index beside it exists" in said["tensorflow True"]
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


def test_tf_slims_single_file_checkpoint_is_found_as_deeplabcut_finds_it(tmp_path):
    """The checkpoint every DeepLabCut install downloads was refused (``<prefix>.index`` alone was looked for): a
    lab that set POSESWEEP_PRETRAINED_CHECKPOINT to the unpacked resnet_v1_50.ckpt, as the README says, was told
    it names no checkpoint, and the trainer image's baked one was not seen."""
    checkpoint = tf_slim_checkpoint(tmp_path / "weights" / "resnet_v1_50.ckpt")
    said = _look(tmp_path, POSESWEEP_PRETRAINED_CHECKPOINT=str(checkpoint))["said"]
    assert said["tensorflow False"] is None and said["tensorflow True"] is None


@pytest.mark.slow
def test_deeplabcuts_tensorflow_training_starts_from_tf_slims_single_file_checkpoint(tiny_cohort, tmp_path,
                                                                                      monkeypatch):
    """A whole TensorFlow network trained from a single-file checkpoint named by POSESWEEP_PRETRAINED_CHECKPOINT,
    through posesweep's own stages: recorded as ImageNet weights, and its snapshot's backbone is those weights after
    a few steps (ResNet-50 weights of a seeded random run stand in for ImageNet's, which nothing may download)."""
    from conftest import training_ready_run
    from posesweep.layout import read_json
    from posesweep.runner import run_posesweep

    conf = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [12], "train_fraction": 0.8,
            "max_iterations": 4, "snapshot_interval": 2}
    donor = training_ready_run(tiny_cohort, tmp_path / "donor", {**conf, "allow_random_init": True}, "manual__donor")
    donor_weights = read_json(donor.layout.run_dir / "weights" / "initial_weights.json")
    assert donor_weights["kind"] == "random_init"
    checkpoint = tf_slim_checkpoint(tmp_path / "weights" / "resnet_v1_50.ckpt", Path(donor_weights["path"]))

    monkeypatch.setenv("POSESWEEP_PRETRAINED_CHECKPOINT", str(checkpoint))
    run = training_ready_run(tiny_cohort, tmp_path / "data", conf, "manual__pretrained")
    weights = read_json(run.layout.run_dir / "weights" / "initial_weights.json")
    assert weights == {**weights, "kind": "imagenet", "path": str(checkpoint)}
    run_posesweep(run.command("train", 12))
    (snapshot,) = {p.with_suffix("") for p in (run.layout.project_dir / "dlc-models").rglob("snapshot-4.index")}
    compare = ("import sys, numpy as np, tensorflow as tf; a, b = (tf.train.load_checkpoint(p).get_tensor("
               "'resnet_v1_50/conv1/weights') for p in sys.argv[1:]); "
               "print(float(np.abs(a - b).max()), float(a.std()))")
    done = subprocess.run([sys.executable, "-c", compare, str(checkpoint), str(snapshot)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    moved, spread = map(float, done.stdout.strip().splitlines()[-1].split())
    # trained from those weights: each moved by its 4 steps (0.018 at most here), far less than the weights' own
    # spread (another draw of them would differ by several times that)
    assert 0 < moved < spread / 2, (moved, spread)
