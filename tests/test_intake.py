import json
import os
import shutil
import time

import pytest

from posesweep.intake import register_next_cohort


def test_each_cohort_version_is_announced_once_and_only_when_quiet(tiny_cohort, tmp_path):
    root = tmp_path / "data"
    (root / "cohorts").mkdir(parents=True)
    (root / "cohorts" / "empty").mkdir()  # no videos yet: not a cohort
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "a")
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "b")
    assert register_next_cohort(root, quiet_s=3600) is None  # just copied: wait until it is quiet
    first = register_next_cohort(root, quiet_s=0)
    second = register_next_cohort(root, quiet_s=0)
    assert [first["cohort"], second["cohort"]] == ["a", "b"]
    assert register_next_cohort(root, quiet_s=0) is None  # nothing new: no second run
    video = root / "cohorts" / "a" / "videos" / "P001.mp4"
    os.utime(video, (time.time() - 100, time.time() - 100))  # a changed file is a new version
    changed = register_next_cohort(root, quiet_s=0)
    assert changed["cohort"] == "a" and changed["version"] != first["version"]
    assert register_next_cohort(root, quiet_s=0) is None


def test_files_a_mac_or_a_nas_hides_start_no_study(tiny_cohort, tmp_path):
    """Finder writes .DS_Store when someone opens the folder and a copy from a Mac leaves ._<name> companions: no
    new version (a study of hours) for either; a NAS's .snapshot folder beside the cohorts is no cohort."""
    root = tmp_path / "data"
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "a")
    (root / "cohorts" / ".snapshot" / "hourly.0" / "videos").mkdir(parents=True)
    shutil.copy(root / "cohorts" / "a" / "videos" / "P001.mp4", root / "cohorts" / ".snapshot" / "hourly.0" / "videos")
    first = register_next_cohort(root, quiet_s=0)
    assert first["cohort"] == "a" and register_next_cohort(root, quiet_s=0) is None
    (root / "cohorts" / "a" / "videos" / ".DS_Store").write_bytes(b"Bud1")
    (root / "cohorts" / "a" / "videos" / "._P001.mp4").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    assert register_next_cohort(root, quiet_s=3600) is None  # their changes still count as a copy going on
    assert register_next_cohort(root, quiet_s=0) is None
    (root / "cohorts" / "a" / "videos" / "P001.mp4").rename(root / "cohorts" / "a" / "videos" / "P004.mp4")
    assert register_next_cohort(root, quiet_s=0)["cohort"] == "a"  # a change the study reads is a new version


def test_cohorts_announced_together_are_studied_one_after_another():
    from posesweep.intake import cohorts_waiting

    # three announcements batched into one run, then what that run passes on, merged with a newer announcement
    batched = [{"cohort": "a", "version": "1"}, {"cohort": "b", "version": "1"}, {"cohort": "a", "version": "2"},
               {"cohort": "c", "version": "1"}]
    waiting = cohorts_waiting(batched)
    assert waiting == [{"cohort": "a", "version": "2"}, {"cohort": "b", "version": "1"},
                       {"cohort": "c", "version": "1"}]
    studied, passed_on = waiting[0], waiting[1:]
    assert studied["cohort"] == "a"
    next_run = cohorts_waiting([{"pending": passed_on}, {"cohort": "d", "version": "1"}])
    assert [w["cohort"] for w in next_run] == ["b", "c", "d"]
    assert cohorts_waiting([]) == [] and cohorts_waiting([{"cohort": "x", "version": "9"}]) == \
        [{"cohort": "x", "version": "9"}]


def test_a_cohort_is_remembered_only_once_its_announcement_exists(tiny_cohort, tmp_path):
    """The intake fails between finding a cohort and announcing it: the next look finds it again."""
    from posesweep.intake import next_new_cohort, record_announced

    root = tmp_path / "data"
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "a")
    found = next_new_cohort(root, quiet_s=0)
    assert found["cohort"] == "a"
    assert next_new_cohort(root, quiet_s=0) == found  # not announced yet: still new
    record_announced(root, found)
    assert next_new_cohort(root, quiet_s=0) is None


def test_a_copy_that_keeps_old_modification_times_still_waits_until_quiet(tiny_cohort, tmp_path):
    """cp -a / rsync -a give every copied file its source's modification time, a year old here: the copy is
    recognised as just arrived by its inode change time."""
    root = tmp_path / "data"
    copied = shutil.copytree(tiny_cohort / "cohorts" / "tiny", root / "cohorts" / "a")
    year_ago = time.time() - 365 * 86400
    for path in [copied, *copied.rglob("*")]:
        os.utime(path, (year_ago, year_ago))
    assert register_next_cohort(root, quiet_s=3600) is None
    assert register_next_cohort(root, quiet_s=0)["cohort"] == "a"


def test_a_folder_that_is_no_cohort_yet_is_announced_so_its_run_says_what_to_fix(tiny_cohort, tmp_path, caplog):
    from posesweep.cohort import CohortError
    from posesweep.stages import prepare_run

    root = tmp_path / "data"
    (root / "cohorts" / "empty").mkdir(parents=True)  # made for a cohort not copied yet: nothing to say
    (root / "cohorts" / "hidden").mkdir()
    (root / "cohorts" / "hidden" / ".DS_Store").write_bytes(b"\0")
    loose = root / "cohorts" / "loose"
    loose.mkdir()
    for video in (tiny_cohort / "cohorts" / "tiny" / "videos").glob("*.mp4"):
        shutil.copy(video, loose / video.name)  # beside videos/ instead of in it
    with caplog.at_level("WARNING", logger="posesweep.intake"):
        found = register_next_cohort(root, quiet_s=0)
    assert found["cohort"] == "loose"
    assert "cohort loose cannot be studied as it is" in caplog.text and "move them into" in caplog.text
    assert register_next_cohort(root, quiet_s=0) is None  # once per version, and never the empty folders
    with pytest.raises(CohortError, match="not in the cohort's videos/ folder"):
        prepare_run(root, {"cohort": "loose"}, "r1")
    (loose / "videos").mkdir()
    for video in loose.glob("*.mp4"):
        video.rename(loose / "videos" / video.name)
    fixed = register_next_cohort(root, quiet_s=0)
    assert fixed["cohort"] == "loose" and fixed["version"] != found["version"]


def test_an_announced_run_takes_the_parameters_of_the_cohorts_latest_run(tiny_cohort, tmp_path, caplog):
    """A grown cohort is studied again as the lab last studied it (engine, frame sets, iterations, seed), not with
    the paper's 250,000 iterations on 200-800 frames, which its first run had to be told to leave."""
    from posesweep.config import StudyConfig, param_specs
    from posesweep.intake import announced_run_parameters
    from posesweep.stages import prepare_run

    root = shutil.copytree(tiny_cohort, tmp_path / "data")
    defaults = {name: spec["default"] for name, spec in param_specs().items()}
    with caplog.at_level("INFO", logger="posesweep.intake"):
        first = announced_run_parameters(root, "tiny", defaults)
    assert first == {**defaults, "cohort": "tiny"} and "its first run, with the DAG's default parameters" in caplog.text
    older = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [6, 12], "max_iterations": 20,
             "snapshot_interval": 10, "allow_random_init": True}
    newer = {**older, "engine": "pytorch", "seed": 7}
    for name, conf in (("manual__older", older), ("manual__newer", newer)):
        run = prepare_run(root, conf, name)
    os.utime(run.layout.config_file.parent.parent / "manual__older" / "study_config.json", (1, 1))
    caplog.clear()
    with caplog.at_level("INFO", logger="posesweep.intake"):
        again = announced_run_parameters(root, "tiny", defaults)
    assert StudyConfig.from_mapping(again) == StudyConfig.from_mapping(newer)
    assert "the parameters of its latest run, manual__newer (" in caplog.text and "engine=pytorch" in caplog.text
    assert prepare_run(root, again, "asset_triggered__grown").study == run.study  # a run prepare_run accepts


def test_an_announced_run_that_fails_prepare_run_gives_the_whole_run_to_trigger(tiny_cohort, tmp_path):
    """The fix of an announced run's failure names the parameters it took from the cohort's latest run: a lab who
    triggers the suggested setting from the form alone would start from the DAG's defaults (the paper's 250,000
    iterations on the TensorFlow engine) and lose the engine and frames it last studied the cohort with."""
    from posesweep.config import StudyConfig, param_specs
    from posesweep.errors import InputError
    from posesweep.intake import announced_run_parameters, with_the_announced_parameters
    from posesweep.stages import prepare_run

    root = shutil.copytree(tiny_cohort, tmp_path / "data")
    defaults = {name: spec["default"] for name, spec in param_specs().items()}
    latest = {"cohort": "tiny", "frames_per_video": 6, "frame_set_sizes": [9, 18], "max_iterations": 20,
              "snapshot_interval": 10, "allow_random_init": True, "engine": "pytorch"}
    prepare_run(root, latest, "manual__latest")
    (root / "cohorts" / "tiny" / "videos" / "P001.mp4").unlink()  # a participant withdrawn: 12 frames are left
    announced = announced_run_parameters(root, "tiny", defaults)
    with pytest.raises(InputError) as failed:
        prepare_run(root, announced, "asset_triggered__shrunk")
    error = with_the_announced_parameters(failed.value, announced, defaults)
    conf = json.loads(error.fix.rsplit("trigger the new one with ", 1)[1])
    assert conf == {**latest, "frame_set_sizes": [6, 12]}
    assert "parameters of the cohort's latest run (" in error.explain() and 'engine="pytorch"' in error.fix
    assert prepare_run(root, conf, "manual__as_suggested").study == StudyConfig.from_mapping(conf)
    first = InputError("a cohort's first run", fix="do this")  # its parameters are the form's: nothing to add
    assert with_the_announced_parameters(first, {**defaults, "cohort": "tiny"}, defaults).fix == "do this"
