"""`make study`'s run from a terminal: which stopped run `--continue` names, and what it refuses."""

import json
from datetime import datetime, timezone

import pytest

from posesweep.layout import RunLayout
from posesweep.terminal_run import parse_arguments, run_id_started_at, stopped_run, what_a_stop_leaves

STARTED = datetime(2026, 12, 5, 18, 59, 25, 2274, tzinfo=timezone.utc)


def _a_stopped_run(data_root, cohort: str = "tiny") -> tuple[str, RunLayout]:
    run_id = run_id_started_at(STARTED)
    layout = RunLayout.create(data_root, cohort, run_id)
    layout.run_dir.mkdir(parents=True)
    layout.config_file.write_text(json.dumps({"cohort": cohort, "frame_set_sizes": [10, 20]}))
    return run_id, layout


def test_a_stopped_run_is_found_by_its_run_id_its_folders_name_or_its_folder_with_the_parameters_it_began_with(
        tmp_path):
    run_id, layout = _a_stopped_run(tmp_path)
    assert run_id == "manual__2026-12-05T18:59:25.002274+00:00"  # dag.test's id of a run started then
    for given in (run_id, layout.run_name, str(layout.run_dir), f"{layout.run_dir}/"):
        found = stopped_run(tmp_path, given)
        assert (found.run_id, found.started) == (run_id, STARTED), given
        assert found.conf == {"cohort": "tiny", "frame_set_sizes": [10, 20]}


def test_continue_naming_no_run_there_lists_the_runs_there_and_a_run_of_the_ui_is_told_to_be_cleared_there(
        tmp_path):
    _, layout = _a_stopped_run(tmp_path)
    with pytest.raises(SystemExit) as refused:
        stopped_run(tmp_path, "manual__2026-12-05T18:59:26.002274+00:00")  # a second later: no such run
    assert f"no run of that name under {tmp_path / 'runs'}" in str(refused.value)
    assert f"Runs there, newest last: tiny/{layout.run_name}" in str(refused.value)

    scheduled = RunLayout.create(tmp_path, "tiny", "asset_triggered__2026-12-05T18:00:00+00:00")
    scheduled.run_dir.mkdir(parents=True)
    scheduled.config_file.write_text("{}")
    with pytest.raises(SystemExit) as refused:
        stopped_run(tmp_path, "asset_triggered__2026-12-05T18:00:00+00:00")
    assert "is not a run started from the command line" in str(refused.value)
    assert "by clearing its failed tasks" in str(refused.value)


def test_continue_keeps_the_runs_own_parameters_and_refuses_others_given_with_it():
    assert parse_arguments(["--continue", "manual__x"]) == ({}, "manual__x")
    assert parse_arguments(["--conf", '{"cohort": "reach"}']) == ({"cohort": "reach"}, None)
    with pytest.raises(SystemExit) as refused:
        parse_arguments(["--continue", "manual__x", "--conf", '{"cohort": "reach"}'])
    assert "--continue goes on with the run's own parameters" in str(refused.value)


def test_ctrl_c_before_the_run_began_says_to_start_it_again_and_after_names_the_run_to_go_on_with(tmp_path):
    run_id = run_id_started_at(STARTED)
    layout = RunLayout.create(tmp_path, "tiny", run_id)
    told = what_a_stop_leaves(layout, run_id, {"cohort": "tiny"})  # in prepare_run: no run folder, nothing to go on
    assert told == "stopped (Ctrl-C) before the run began: start it again with make study CONF='{\"cohort\": \"tiny\"}'"
    _a_stopped_run(tmp_path)
    told = what_a_stop_leaves(layout, run_id, {"cohort": "tiny"})
    assert f"What the run made stays in {layout.run_dir}" in told and f"  make study CONTINUE='{run_id}'" in told
