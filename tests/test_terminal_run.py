"""`make study`'s run from a terminal: which stopped run `--continue` names, and what it refuses."""

import json
import logging
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from conftest import REPO
from posesweep.layout import RunLayout
from posesweep.locks import exclusive_writer
from posesweep.terminal_run import (CtrlC, WhatTheRunWaitsFor, held_by_this_terminal, parse_arguments,
                                    run_id_started_at, sigterm_stops_a_terminal_run, stopped_run, suggested_run,
                                    what_a_stop_leaves)

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


def test_sigterm_stops_a_terminal_run_as_ctrl_c_does_after_the_handler_a_tasks_runner_set_and_nowhere_else():
    """`kill <pid>`, a job scheduler's or a service manager's stop: Airflow's task runner sets a SIGTERM handler in
    each task (its operator's on_kill, then the task goes on), and `make study` went on, retrying what it stopped.
    Each task's on_execute_callback now chains it, in a terminal run only: that handler runs, then Ctrl-C's."""
    import signal

    import structlog

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    processors = structlog.get_config()["processors"]
    on_kill, stop = [], CtrlC()
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: on_kill.append(signum))  # a real Airflow task's
        sigterm_stops_a_terminal_run({})  # not a terminal run: Airflow's handler stays alone
        os.kill(os.getpid(), signal.SIGTERM)
        assert on_kill == [signal.SIGTERM]
        stop.install()
        signal.signal(signal.SIGTERM, lambda signum, frame: on_kill.append(signum))  # the next task's runner
        sigterm_stops_a_terminal_run({})
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert on_kill == [signal.SIGTERM] * 2 and stop.pressed and stop.signal_name == "SIGTERM"
    finally:
        CtrlC.active = None
        logging.getLogger("airflow.sdk.definitions.dag").removeFilter(stop._ends_the_run)
        structlog.configure(processors=processors)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _study(data_root, *arguments: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "dags" / "dlc_training_study.py"), *arguments],
                          env={**os.environ, "POSESWEEP_DATA_ROOT": str(data_root), **(extra_env or {})},
                          capture_output=True, text=True, timeout=300)


def test_continue_while_another_terminal_still_runs_the_run_is_refused_naming_that_process(airflow_db, tmp_path):
    """Before, a second `make study CONTINUE=...` deleted the running run's Airflow record and ran its steps a second
    time beside the first (a lab that lost its SSH window while the run went on in tmux, say)."""
    run_id, layout = _a_stopped_run(tmp_path)
    (tmp_path / "cohorts" / "tiny").mkdir(parents=True)
    with exclusive_writer(layout.run_dir, "the run in the first terminal"):  # as that terminal's run holds it
        done = _study(tmp_path, "--continue", run_id)
        assert done.returncode == 1, done.stdout + done.stderr
        assert (f"run {run_id} is still running, held by pid {os.getpid()} on {socket.gethostname()} since"
                in done.stderr), done.stderr
        assert "Ctrl-C there stops it" in done.stderr and "Traceback" not in done.stderr
        assert "continuing run" not in done.stdout  # nothing of the run was started again
    with held_by_this_terminal(layout, run_id):  # once that process has ended, the run is this one's
        with pytest.raises(SystemExit) as refused, held_by_this_terminal(layout, run_id):
            pass
        assert "is still running, held by pid" in str(refused.value)
    assert layout.config_file.exists()  # a run that began keeps its folder


def test_a_run_that_stopped_before_it_began_leaves_no_folder_behind(tmp_path):
    (tmp_path / "cohorts" / "tiny").mkdir(parents=True)
    layout = RunLayout.create(tmp_path, "tiny", run_id_started_at(STARTED))
    with held_by_this_terminal(layout, "manual__x"):
        assert layout.run_dir.is_dir()  # held from the start: a continue of it while prepare_run runs is refused
    assert not (tmp_path / "runs").exists()


def test_a_new_runs_parameters_of_the_wrong_type_or_out_of_range_are_named_before_anything_starts(airflow_db,
                                                                                                 tmp_path):
    """Before, `make study CONF=...` with a mistyped value ended in Airflow's 40-line traceback of its parameter
    validation."""
    done = _study(tmp_path, "--conf", json.dumps({"cohort": "tiny", "engine": "torch", "max_iterations": "lots",
                                                  "frame_set_sizes": [10.5, 20]}))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "invalid study parameters: 3 parameter(s) out of range",
        "  - frame_set_sizes[]=10.5 is not of type integer",
        "  - max_iterations='lots' is not of type integer",
        "  - engine='torch' is not one of ['tensorflow', 'pytorch']",
        "  What to do: correct them in CONF and start the run again (the parameters: README, \"The DAG\")",
        "  Nothing was started."], done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()


def test_what_the_run_waits_for_is_said_once_per_wait_and_nothing_as_a_failed_run_ends():
    """dag.test logs "No tasks to run. unrunnable tasks: {...}" once a second while nothing can run."""
    import logging
    from typing import NamedTuple

    class ti(NamedTuple):  # what the filter reads of Airflow's TaskInstance
        task_id: str
        state: str | None
        map_index: int = -1

    said = WhatTheRunWaitsFor(poke_interval_s=300)

    def told(*unrunnable) -> str | None:
        record = logging.LogRecord("airflow.sdk.definitions.dag", logging.WARNING, __file__, 1,
                                   "No tasks to run. unrunnable tasks: %s", (set(unrunnable),), None)
        return record.getMessage() if said.filter(record) else None

    labels = (ti("wait_for_labels", "up_for_reschedule"), ti("label_frames", None))
    assert told(*labels).startswith("the run waits for the labels named above: wait_for_labels looks again every 5 "
                                    "minutes")
    assert told(*labels) is None  # once a second for 5 minutes: said once
    retry = (ti("train_network", "up_for_retry", 1), ti("train_network", "success", 0), ti("evaluate_snapshots", None))
    assert told(*retry) == ("the run waits for the retry of train_network[1] (a retry follows a task's failure named "
                            "above after its retry delay)")
    assert told(*retry) is None
    assert told(ti("build_frame_sets", None), ti("train_network", None)) is None  # a failed run ends: said above
    plain = logging.LogRecord("airflow.sdk.definitions.dag", logging.INFO, __file__, 1, "[DAG TEST] end task", (), None)
    assert said.filter(plain)


def test_the_new_run_a_failure_suggests_has_its_settings_written_as_the_paragraphs_write_them():
    """The settings of every failure that names one, merged into the run's own parameters; none, no line."""
    from posesweep.errors import FailureParagraph

    conf = {"cohort": "reach", "frame_set_sizes": [200, 400]}
    failures = [FailureParagraph("task prepare_training failed (try 1): ...", parameters={"allow_random_init": True}),
                FailureParagraph("task x failed (try 1): ...", parameters={"frame_set_sizes": [14, 28]}),
                FailureParagraph("task y failed (try 1): ...", parameters={"bad_video_policy": "exclude"}),
                FailureParagraph("task z failed (try 1): ...")]
    assert suggested_run(conf, failures) == (
        "With the setting suggested above (allow_random_init=true, frame_set_sizes=[14, 28], bad_video_policy=exclude)"
        ", a new run: make study CONF='{\"cohort\": \"reach\", \"frame_set_sizes\": [14, 28], "
        "\"allow_random_init\": true, \"bad_video_policy\": \"exclude\"}'")
    assert suggested_run(conf, failures[3:]) is None and suggested_run(conf, []) is None
    # a study that would train for days here: the run within a day, and a first look at it in half an hour
    days = FailureParagraph("task prepare_run failed (try 1): ...", parameters={"max_iterations": 9100,
                                                                                "snapshot_interval": 910},
                            first_look_parameters={"max_iterations": 90, "snapshot_interval": 18})
    assert suggested_run(conf, [failures[0], days]).splitlines() == [
        "With the setting suggested above (allow_random_init=true, max_iterations=9100, snapshot_interval=910), a new "
        "run: make study CONF='{\"cohort\": \"reach\", \"frame_set_sizes\": [200, 400], \"allow_random_init\": true, "
        "\"max_iterations\": 9100, \"snapshot_interval\": 910}'",
        "A first look at the whole study on this machine in about half an hour, too short for the networks to learn "
        "(the report says so): make study CONF='{\"cohort\": \"reach\", \"frame_set_sizes\": [200, 400], "
        "\"allow_random_init\": true, \"max_iterations\": 90, \"snapshot_interval\": 18}'"]


def test_runs_started_in_one_second_each_write_a_log_of_their_own(tmp_path):
    """Two terminals' `make study` of two cohorts started in one second wrote one `study-<time>.log`, each truncating
    the other's lines (seen: 14 lines of two runs, interleaved mid-line). Each now has its own, named by cohort."""
    from datetime import datetime

    from posesweep.terminal_run import new_log_file

    second = datetime(2026, 12, 8, 1, 38, 50)
    knee, hip = new_log_file(tmp_path / "logs", "knee", second), new_log_file(tmp_path / "logs", "hip", second)
    again = new_log_file(tmp_path / "logs", "knee", second)  # the same cohort twice in that second
    assert [path.name for path in (knee, hip, again)] == ["study-knee-20261208T013850.log",
                                                         "study-hip-20261208T013850.log",
                                                         "study-knee-20261208T013850-2.log"]
    knee.write_text("knee's lines\n")
    assert new_log_file(tmp_path / "logs", "knee", second).name == "study-knee-20261208T013850-3.log"
    assert knee.read_text() == "knee's lines\n"  # not truncated by the later run


def test_a_study_of_days_on_this_cpu_is_offered_the_run_within_a_day_and_a_first_look_in_half_an_hour(
        airflow_db, tiny_cohort, tmp_path):
    """The new run `make study` suggested for a study of days on this CPU trained for up to a day: what a lab trying
    posesweep on its own data ran next without knowing. The first look prepare_run's paragraph proposes in its
    middle is now a command of its own, through the DAG's failure callback to the last lines."""
    import re
    import shutil

    data_root = shutil.copytree(tiny_cohort, tmp_path / "data")
    conf = {"cohort": "tiny", "frames_per_video": 60, "frame_set_sizes": [60, 120, 180], "allow_random_init": True}
    done = _study(data_root, "--conf", json.dumps(conf), extra_env={"POSESWEEP_GPUS": "none"})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    within_a_day = re.search(r"max_iterations=(\d+), snapshot_interval=(\d+) keep the 10 snapshots", output)
    first_look = re.search(r"about 30 min, too short to learn from \(the report says so\): max_iterations=(\d+), "
                           r"snapshot_interval=(\d+)\)", output)
    last = output.rstrip().splitlines()
    assert last[-4] == ("With the setting suggested above (max_iterations=%s, snapshot_interval=%s), a new run: "
                        "make study CONF='%s'" % (*within_a_day.groups(), json.dumps(
                            {**conf, "max_iterations": int(within_a_day[1]),
                             "snapshot_interval": int(within_a_day[2])})))
    assert last[-3] == ("A first look at the whole study on this machine in about half an hour, too short for the "
                        "networks to learn (the report says so): make study CONF='%s'" % json.dumps(
                            {**conf, "max_iterations": int(first_look[1]), "snapshot_interval": int(first_look[2])}))
