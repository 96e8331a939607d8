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
