"""The software that trained the networks and computed the statistics, as the report names it for a methods section,
and the networks of one study trained with different software (a run continued after an upgrade) named as such."""

import json
import re
import subprocess
from importlib.metadata import version

from conftest import REPO
from posesweep.provenance import (analysis_software, mixed_software_warning, posesweep_version, record_fields,
                                  software_at_start, software_sentence, training_software,
                                  training_software_by_network)


def test_the_training_software_is_the_installed_engine_and_posesweeps_commit():
    # a clone names its commit; a copy without .git (a downloaded archive) its version alone
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    named = f"{version('posesweep')} (commit {head.stdout.strip()}" if head.returncode == 0 else version("posesweep")
    for engine, packages in (("pytorch", ("deeplabcut", "torch", "timm")), ("tensorflow", ("deeplabcut",
                                                                                        "tensorflow"))):
        software = training_software(engine)
        assert {name: software[name] for name in packages} == {name: version(name) for name in packages}
        assert software["posesweep"].startswith(named)
    assert {"numpy", "scipy", "statsmodels", "pandas"} <= set(analysis_software())


def test_networks_trained_or_resumed_with_other_software_are_named_and_the_same_software_is_said_once(tmp_path):
    current = training_software("pytorch")
    older = {**current, "deeplabcut": "3.0.0rc8"}
    # a network begun with an older DeepLabCut and resumed after the upgrade
    software_at_start(tmp_path, "pytorch")
    (tmp_path / "software_at_start.json").write_text(json.dumps(older))
    software_at_start(tmp_path, "pytorch")  # a resume: the file of the first start is kept
    fields = record_fields(tmp_path, "pytorch")
    assert fields == {"software": current, "software_before_resume": older}

    same = training_software_by_network([{"frame_set_size": 24, "software": current},
                                         {"frame_set_size": 12, "software": current}])
    assert same == [{"software": current, "frame_set_sizes": [12, 24]}] and mixed_software_warning(same) is None
    sentence = software_sentence({"training": same, "analysis": analysis_software()})
    assert sentence.startswith(f"Networks trained with deeplabcut {version('deeplabcut')}, torch {version('torch')}")
    assert sentence.count("posesweep") == 1  # the report's process ran the same posesweep

    mixed = training_software_by_network([{"frame_set_size": 12, "software": current},
                                          {"frame_set_size": 24, **fields},
                                          {"frame_set_size": 48}])  # trained before posesweep recorded it
    warning = mixed_software_warning(mixed)
    assert warning.startswith(f"the networks were trained with different software (frame sets 12, 24: deeplabcut "
                              f"{version('deeplabcut')}, ")
    assert "; frame set 24: deeplabcut 3.0.0rc8, " in warning
    # frame set 48 (no record) is not named; a bare "48" could be in the commit's hash the warning quotes
    assert re.search(r"frame sets? [\d, ]*\b48\b", warning) is None
    assert "(frame set 48)" in software_sentence({"training": mixed, "analysis": analysis_software()})
    assert mixed_software_warning(training_software_by_network([{"frame_set_size": 12, "software": current},
                                                                {"frame_set_size": 24}])) is None


def test_an_image_without_a_checkout_names_the_commit_its_build_was_given(tmp_path):
    """The trainer and Airflow images copy include/ without .git: their build's POSESWEEP_COMMIT is the commit."""
    assert posesweep_version(tmp_path, {}) == version("posesweep")
    assert posesweep_version(tmp_path, {"POSESWEEP_COMMIT": "0123456789ab"}) == \
        f"{version('posesweep')} (commit 0123456789ab, built into the image)"
    for dockerfile in ("trainer", "trainer-pytorch", "airflow"):
        text = (REPO / "docker" / dockerfile / "Dockerfile").read_text()
        assert "--build-arg POSESWEEP_COMMIT=$(git rev-parse --short=12 HEAD)" in text
        # set before posesweep's code is copied in, and kept in the image's environment for its processes
        assert text.index("ENV POSESWEEP_COMMIT=${POSESWEEP_COMMIT}") < text.index(" include /")
