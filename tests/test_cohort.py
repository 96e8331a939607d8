"""An existing DeepLabCut project as a cohort: what a lab's copy of its project may look like, and what it is told."""

import shutil

import pytest

from posesweep.cohort import load_cohort, unmatched_videos
from posesweep.errors import CohortError


def _failure(project) -> str:
    with pytest.raises(CohortError) as failure:
        load_cohort(project)
    assert not failure.value.retryable
    return str(failure.value)


def test_labels_of_another_scorer_than_config_yaml_names_are_named_with_the_fix(reaching_project):
    config = reaching_project / "config.yaml"
    config.write_text(config.read_text().replace("scorer: Mackenzie", "scorer: Jane"))
    paragraph = _failure(reaching_project)
    assert "no labels by the project's scorer 'Jane'" in paragraph and f"File: {config}" in paragraph
    assert "Found: scorer: Jane; label files of 'Mackenzie'" in paragraph
    assert "set scorer: in config.yaml to the name in the label files' names ('Mackenzie'" in paragraph


def test_a_config_yaml_that_is_not_yaml_names_the_line(reaching_project):
    config = reaching_project / "config.yaml"
    config.write_text(config.read_text().replace("bodyparts:\n- Hand", "bodyparts:\n- Hand\n  - : [", 1))
    paragraph = _failure(reaching_project)
    assert "config.yaml is not valid YAML" in paragraph and f"File: {config}" in paragraph and "line" in paragraph


def test_a_multi_animal_project_is_refused_with_what_is_supported(reaching_project):
    config = reaching_project / "config.yaml"
    config.write_text(config.read_text() + "multianimalproject: true\n")
    paragraph = _failure(reaching_project)
    assert "multi-animal" in paragraph and "Allowed: a single-animal project" in paragraph


def test_a_folder_labeled_only_by_someone_else_is_left_out_and_named(reaching_project):
    labeled_data = reaching_project / "labeled-data"
    other = labeled_data / "reachingvideo2"
    other.mkdir()
    shutil.copy(labeled_data / "reachingvideo1" / "CollectedData_Mackenzie.csv", other / "CollectedData_Jane.csv")
    (labeled_data / "reachingvideo1_labeled").mkdir()  # what DeepLabCut's check_labels leaves: not a video
    cohort = load_cohort(reaching_project)
    assert [folder.name for folder in cohort.videos] == ["reachingvideo1"]
    assert unmatched_videos(cohort)["labeled-data folders left out (no CollectedData_Mackenzie file)"] == \
        ["reachingvideo2"]
