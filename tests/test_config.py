import jsonschema
import pytest

from posesweep.config import FRONTAL_BODYPARTS, StudyConfig, StudyConfigError, param_specs


def test_defaults_are_the_papers_design():
    study = StudyConfig()
    assert study.frame_set_sizes == (200, 400, 600, 800)
    assert study.snapshot_iterations == list(range(25_000, 250_001, 25_000))
    assert study.train_fraction == 0.9 and study.network == "resnet_50"
    assert len(FRONTAL_BODYPARTS) == 10


@pytest.mark.parametrize("bad, named", [
    ({"max_iterations": -5}, "max_iterations"),
    ({"max_iterations": 1000, "snapshot_interval": 300}, "does not divide"),
    ({"frame_set_sizes": [400, 200]}, "strictly increasing"),
    ({"train_fraction": 1.5}, "train_fraction"),
    ({"network": "vgg"}, "network"),
    ({"cohort": "../outside"}, "cohort"),
    ({"cohort": "demo\n"}, "cohort"),  # a trailing newline is not a folder name
    ({"cohort": "-demo"}, "cohort"),
    ({"frames_per_video": "ten"}, "frames_per_video"),
])
def test_invalid_parameters_are_refused_with_their_name(bad, named):
    with pytest.raises(StudyConfigError, match=named):
        StudyConfig.from_mapping(bad)


@pytest.mark.parametrize("sizes, train_fraction, frames, proposed", [
    ([200, 400, 600, 800], 0.9, 55, [14, 28, 41, 55]),  # the paper's design on the Reaching project's 55 frames
    ([200, 400, 600, 800], 0.9, 6, [6]),  # 2 and 3 frames are too few; 4 frames at 90/10 have no test frame
    ([10, 11, 12], 0.5, 8, [7, 8]),  # 10 and 11 would both become 7: one network of 7 frames
    ([200, 400], 0.9, 3, []),  # nothing that fits
])
def test_frame_set_sizes_scaled_to_a_smaller_cohort_keep_their_proportions_and_stay_valid(
        sizes, train_fraction, frames, proposed):
    study = StudyConfig(frame_set_sizes=sizes, train_fraction=train_fraction)
    assert study.frame_set_sizes_within(frames) == proposed
    if proposed:  # what the message proposes is a run the trigger form accepts
        StudyConfig(frame_set_sizes=proposed, train_fraction=train_fraction)


def test_unknown_parameter_is_refused():
    with pytest.raises(StudyConfigError, match="unknown study parameters"):
        StudyConfig.from_mapping({"iterations": 5})


def test_param_specs_are_valid_json_schemas_whose_defaults_validate():
    specs = param_specs()
    assert set(specs) == {f for f in StudyConfig.__dataclass_fields__}
    for name, spec in specs.items():
        schema = {k: v for k, v in spec.items() if k not in ("default", "title", "description", "section")}
        jsonschema.Draft7Validator.check_schema(schema)
        jsonschema.validate(spec["default"], schema)
        assert spec["title"] and spec["description"], name


def test_round_trip_through_json():
    study = StudyConfig(frame_set_sizes=(10, 20), max_iterations=100, snapshot_interval=25)
    assert StudyConfig.from_mapping(study.to_json_dict()) == study


def test_a_cohort_folder_name_that_cannot_be_used_is_refused_with_a_name_that_can():
    with pytest.raises(StudyConfigError) as failure:
        StudyConfig.from_mapping({"cohort": "Knie Studie ü 1"})
    assert "cohort='Knie Studie ü 1' must match" in str(failure.value)
    assert "rename the folder, e.g. to 'Knie_Studie_u_1'" in str(failure.value)
    StudyConfig.from_mapping({"cohort": "Knie_Studie_u_1"})  # the suggestion is itself accepted


@pytest.mark.parametrize("given, told", [
    ("/srv/posesweep/cohorts/knee_2026/", "for this one, the data root /srv/posesweep (make study DATA_ROOT="
                                          "/srv/posesweep ..., or POSESWEEP_DATA_ROOT) and cohort 'knee_2026'"),
    ("/home/me/Reaching Mackenzie", "copy this folder there as cohorts/Reaching_Mackenzie (a link to it is refused; "
                                    "links to its videos are read) and give cohort 'Reaching_Mackenzie'"),
    ("C:\\Users\\me\\knee", "copy this folder there as cohorts/knee"),
])
def test_a_cohort_given_as_the_path_to_its_folder_is_told_the_data_root_and_name_that_find_it(given, told):
    """A new lab's first try gives the path to its project: before, told to rename its folder to
    'srv_posesweep_cohorts_knee_2026'."""
    with pytest.raises(StudyConfigError) as failure:
        StudyConfig.from_mapping({"cohort": given})
    assert f"cohort={given!r} is a path: the cohort is the name of a folder in the data root's cohorts/ folder" \
        in str(failure.value)
    assert told in str(failure.value) and "rename the folder" not in str(failure.value)


def test_a_deployments_paths_starting_with_a_tilde_are_in_the_home_folder(monkeypatch, tmp_path):
    """An Airflow deployment's environment (a .env file, a systemd unit) hands "~/posesweep" on as it is: no shell
    expands it, and the data root became a folder named "~" in the worker's working directory."""
    from posesweep.settings import Settings

    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.from_env({"POSESWEEP_DATA_ROOT": "~/posesweep",
                                  "POSESWEEP_PRETRAINED_CHECKPOINT": "~/weights/resnet_v1_50.ckpt"})
    assert settings.data_root == tmp_path.resolve() / "posesweep"
    assert settings.pretrained_checkpoint == str(tmp_path / "weights" / "resnet_v1_50.ckpt")
    assert Settings.from_env({}).pretrained_checkpoint is None
